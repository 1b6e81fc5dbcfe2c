"""The registry subcommands of the `tamer` command (`tamer registry list | show | lineage | history | promote |
rollback | tag | add`, and `tamer rollback ALIAS`): their arguments, and the call with what it prints. Part of the
face, beside cli.py."""
from __future__ import annotations

import argparse
from typing import Any

ACTIONS = {
    "list": "every registered artifact, newest first, with its aliases",
    "show": "one artifact (an id, a unique id prefix or an alias): record, parents, children, aliases, tags, copies",
    "lineage": "an artifact's ancestors and descendants, with the aliases and promotions among them",
    "history": "the append-only event log, oldest first (one alias's moves when named)",
    "promote": "point an alias at an artifact (one transaction: the alias moves and the event is logged together)",
    "rollback": "point an alias back at the artifact it named before (twice: two steps back)",
    "tag": "set KEY=VALUE tags on an artifact",
    "add": "record an artifact folder (plain or sealed) written earlier or elsewhere",
}


def _flags(p: argparse.ArgumentParser) -> None:
    """--json / --debug / --quiet after the action too (SUPPRESS: a flag given before it is not reset)."""
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object on stdout")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of errors")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")


def _rollback(p: argparse.ArgumentParser) -> None:
    p.add_argument("alias", help="the alias to move back, e.g. production")
    p.add_argument("--reason", help="why, kept in the event log")


def registry_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    adders = {
        "list": lambda q: None,
        "show": lambda q: q.add_argument("name", metavar="ID_OR_ALIAS"),
        "lineage": lambda q: q.add_argument("name", metavar="ID_OR_ALIAS"),
        "history": lambda q: q.add_argument("alias", nargs="?", help="only this alias's promotions and rollbacks"),
        "promote": lambda q: (q.add_argument("name", metavar="ID_OR_ALIAS"),
                              q.add_argument("--to", required=True, metavar="ALIAS", help="alias to point at it"),
                              q.add_argument("--reason", help="why, kept in the event log")),
        "rollback": _rollback,
        "tag": lambda q: (q.add_argument("name", metavar="ID_OR_ALIAS"),
                          q.add_argument("pairs", nargs="+", metavar="KEY=VALUE")),
        "add": lambda q: q.add_argument("path", help="artifact folder"),
    }
    for action, text in ACTIONS.items():
        q = sub.add_parser(action, help=text, description=text)
        _flags(q)
        adders[action](q)


def rollback_arguments(p: argparse.ArgumentParser) -> None:
    _rollback(p)


def _metric(row: dict[str, Any]) -> str:
    metrics = row.get("metrics") or {}
    for name in ("accuracy", "perplexity", "robust_accuracy"):
        if isinstance(metrics.get(name), (int, float)):
            return f"{name} {metrics[name]:.4g}"
    return ""


def _event_line(e: dict[str, Any]) -> str:
    move = f"{e['from_id'] or '-'} -> {e['to_id']}" if e["action"] in ("promote", "rollback") else (e["to_id"] or "")
    alias = f" {e['alias']}:" if e.get("alias") else ""
    why = f"  ({e['reason']})" if e.get("reason") else ""
    return f"{e['seq']:>5}  {e['at'][:19]}  {e['who']:<10} {e['action']:<8}{alias} {move}{why}"


def _lineage_text(data: dict[str, Any]) -> str:
    children: dict[str, list[str]] = {}
    has_parent = {c for _, c in data["edges"]}
    for parent, child in data["edges"]:
        children.setdefault(parent, []).append(child)
    nodes = {n["id"]: n for n in data["nodes"]}
    named: dict[str, list[str]] = {}
    for alias, aid in data["aliases"].items():
        named.setdefault(aid, []).append(alias)
    lines: list[str] = []

    def draw(aid: str, depth: int, seen: set[str]) -> None:
        n = nodes.get(aid, {})
        facts = ", ".join(x for x in (n.get("verb"), n.get("format"), _metric(n)) if x) or "not registered"
        mark = " <" if aid == data["id"] else ""
        tags = f"  [{', '.join(sorted(named[aid]))}]" if aid in named else ""
        lines.append(f"{'  ' * depth}{aid} ({facts}){tags}{mark}")
        for child in sorted(children.get(aid, [])):
            if child not in seen:
                draw(child, depth + 1, seen | {child})

    for root in sorted(set(nodes) - has_parent):
        draw(root, 0, {root})
    moves = [_event_line(e) for e in data["moves"]]
    return "\n".join(lines + (["", "promotions and rollbacks:"] + moves if moves else []))


def update_arguments(p: argparse.ArgumentParser) -> None:
    from .config import add_config_arguments
    from .maintenance.update import UpdateConfig

    p.add_argument("--out", help="the challenger artifact folder (default: artifacts/TASK-update-TIME)")
    add_config_arguments(p, UpdateConfig)


def run(args: argparse.Namespace, progress: bool = False) -> tuple[dict[str, Any], str]:
    """Call the registry verb named by `args`: (the --json payload, the text for people)."""
    from . import api

    if args.verb == "update":
        from .cli_device import placement
        from .config import config_from_args
        from .maintenance.update import UpdateConfig

        report = api.update(config=config_from_args(UpdateConfig, args), out=args.out, progress=progress,
                            **placement(args))
        return {**report.to_dict(), "metrics": report.gate_metrics()}, report.summary()
    action = "rollback" if args.verb == "rollback" else args.action
    if action == "list":
        rows = api.catalogue()
        text = "\n".join(f"{r['id']}  {r['task']:<20} {r['format']:<6} {r['verb']:<10} {_metric(r):<18} "
                         f"{','.join(r['aliases'])}" for r in rows) or "the registry holds no artifact yet"
        return {"artifacts": rows}, text
    if action == "show":
        row = api.show(args.name)
        keys = ("id", "task", "format", "verb", "metrics", "parents", "children", "aliases", "tags", "created_at")
        shown = lambda v: (", ".join(f"{k}={x:.4g}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items())  # noqa: E731
                           if isinstance(v, dict) else ", ".join(v) if isinstance(v, list) else v) or "—"
        text = "\n".join(f"{k:<12}{shown(row[k])}" for k in keys) + "\n" + "\n".join(
            f"{'copy':<12}{c['uri']}{' (sealed)' if c['sealed'] else ''}" for c in row["locations"])
        return row, text
    if action == "lineage":
        data = api.lineage(args.name)
        return data, _lineage_text(data)
    if action == "history":
        rows = api.history(args.alias)
        return {"events": rows}, "\n".join(_event_line(e) for e in rows) or "the event log is empty"
    if action in ("promote", "rollback"):
        e = api.promote(args.name, args.to, args.reason) if action == "promote" else api.rollback(args.alias, args.reason)
        if not e["changed"]:
            return e, f"{e['alias']} already points at {e['to_id']}; nothing changed"
        return e, f"{e['alias']}: {e['from_id'] or '(new)'} -> {e['to_id']}"
    if action == "tag":
        rows = api.tag(args.name, args.pairs)
        return {"events": rows}, "\n".join(f"{e['to_id']}: {e['reason']}" for e in rows)
    row = api.add(args.path)
    return row, f"{'registered' if row['new'] else 'already registered'} {row['id']} at {args.path}"
