"""The lineage drawn as a graph: artifacts as boxes in columns by generation (parents left of children), an arrow
per parent -> child with the verb that made the child, the aliases naming each box, and the alias moves. Plain SVG
text, so the report page stays self-contained and no plotting library is needed."""
from __future__ import annotations

import html
from typing import Any

_W, _H, _GAP_X, _GAP_Y, _PAD = 190, 58, 70, 26, 16
_VERB_COLOURS = {"train": "#dbe8ff", "compress": "#e3f5e1", "harden": "#fde8d7", "stability": "#f3e5f5",
                 "federate": "#e0f4f7"}


def generations(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: the length of the longest parent chain above it (a cycle cannot occur: ids are content
    hashes, a child's id covers its parents' ids)."""
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for p, c in edges:
        parents.setdefault(c, []).append(p)
    depth: dict[str, int] = {}

    def visit(node: str, trail: frozenset) -> int:
        if node not in depth:
            above = [visit(p, trail | {node}) for p in parents.get(node, []) if p not in trail]
            depth[node] = 1 + max(above) if above else 0
        return depth[node]

    for i in ids:
        visit(i, frozenset())
    return depth


def _metric(node: dict[str, Any]) -> str:
    metrics = node.get("metrics") or {}
    for name in ("accuracy", "perplexity"):
        if isinstance(metrics.get(name), (int, float)):
            return f"{name} {metrics[name]:.4g}"
    return ""


def lineage_svg(lineage: dict[str, Any]) -> str:
    """An <svg> of `Registry.lineage(...)`'s result; the artifact it was asked about has a thick border."""
    nodes = {n["id"]: n for n in lineage["nodes"]}
    edges = [tuple(e) for e in lineage["edges"]]
    depth = generations(sorted(nodes), edges)
    columns: dict[int, list[str]] = {}
    for node in sorted(nodes, key=lambda i: (depth[i], nodes[i].get("registered_at") or "", i)):
        columns.setdefault(depth[node], []).append(node)
    named: dict[str, list[str]] = {}
    for alias, aid in sorted(lineage.get("aliases", {}).items()):
        named.setdefault(aid, []).append(alias)
    place = {node: (_PAD + col * (_W + _GAP_X), _PAD + 14 + row * (_H + _GAP_Y))
             for col, members in columns.items() for row, node in enumerate(members)}
    width = _PAD * 2 + len(columns) * _W + max(0, len(columns) - 1) * _GAP_X
    height = _PAD * 2 + 14 + max(len(m) for m in columns.values()) * (_H + _GAP_Y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="system-ui,sans-serif" '
             f'font-size="11" role="img" aria-label="lineage of {html.escape(lineage["id"])}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#556"/></marker></defs>']
    for parent, child in edges:
        (x1, y1), (x2, y2) = place[parent], place[child]
        verb = html.escape(str(nodes[child].get("verb") or ""))
        parts.append(f'<line x1="{x1 + _W}" y1="{y1 + _H / 2}" x2="{x2}" y2="{y2 + _H / 2}" stroke="#556" '
                     f'stroke-width="1.3" marker-end="url(#arrow)"/>')
        parts.append(f'<text x="{(x1 + _W + x2) / 2}" y="{(y1 + y2 + _H) / 2 - 4}" text-anchor="middle" '
                     f'fill="#556">{verb}</text>')
    for node, (x, y) in place.items():
        n = nodes[node]
        registered = n.get("registered", True)
        fill = _VERB_COLOURS.get(str(n.get("verb")), "#f3f5fa") if registered else "#ffffff"
        border = 'stroke="#1d2433" stroke-width="2.6"' if node == lineage["id"] else 'stroke="#889" stroke-width="1"'
        dash = '' if registered else ' stroke-dasharray="4 3"'
        parts.append(f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{fill}" {border}{dash}/>')
        parts.append(f'<text x="{x + 8}" y="{y + 17}" font-family="ui-monospace,monospace" font-weight="600">'
                     f'{html.escape(node)}</text>')
        line2 = " · ".join(str(v) for v in (n.get("verb"), n.get("format")) if v) if registered else "not registered"
        parts.append(f'<text x="{x + 8}" y="{y + 33}">{html.escape(line2)}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 48}" fill="#445">{html.escape(_metric(n))}</text>')
        if node in named:
            parts.append(f'<text x="{x + 2}" y="{y - 4}" fill="#137333" font-weight="600">'
                         f'{html.escape(", ".join(named[node]))}</text>')
    parts.append("</svg>")
    return "".join(parts)
