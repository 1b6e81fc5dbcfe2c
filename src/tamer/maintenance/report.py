"""RegistryReport: what a recipe's register or promote stage did, with the artifact's lineage drawn as a graph
(parents, compress children, aliases) and the alias moves among them."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from ..report import Report, table_html
from .graph import lineage_svg


@dataclass
class RegistryReport(Report):
    action: str  # register | promote
    id: str
    registry: str
    lineage: dict[str, Any]
    alias: str | None = None
    event: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the artifact's test metrics (what a gate judges)
    tags: dict[str, str] = field(default_factory=dict)
    title = "registry"

    def gate_metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def summary(self) -> str:
        if self.action == "promote" and self.event:
            moved = (f"{self.alias}: {self.event.get('from_id') or '(new)'} -> {self.id}" if self.event.get("changed")
                     else f"{self.alias} already pointed at {self.id}")
            return f"{moved} (registry {self.registry})"
        return f"registered {self.id} in {self.registry}" + (f", tags {self.tags}" if self.tags else "")

    def html(self) -> str:
        facts = [("artifact", self.id), ("registry", self.registry)]
        if self.alias:
            facts.append(("alias", f"{self.alias} ({'moved' if (self.event or {}).get('changed') else 'unchanged'})"))
        facts += [(f"tag {k}", v) for k, v in sorted(self.tags.items())]
        moves = [(e["seq"], e["at"][:19], e["who"], e["action"], e["alias"], e.get("from_id") or "—", e["to_id"],
                  e.get("reason") or "") for e in self.lineage.get("moves", [])]
        return (f"<section><h2>Registry · {html.escape(self.action)} · {html.escape(self.id)}</h2>"
                f"{table_html(facts)}<h3>lineage</h3><div class=figs>{lineage_svg(self.lineage)}</div>"
                + (f"<h3>promotions and rollbacks</h3>"
                   f"{table_html(moves, ['#', 'when', 'who', 'what', 'alias', 'from', 'to', 'why'])}" if moves else "")
                + "</section>")
