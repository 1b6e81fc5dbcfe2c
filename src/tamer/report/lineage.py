"""LineageReport: what an artifact's manifest says it is (id, verb, parents, format, test metrics), as a page section."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .base import Report, table_html


@dataclass
class LineageReport(Report):
    artifact: str
    id: str
    task: str
    verb: str
    format: str
    parents: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    title = "artifact"

    @classmethod
    def from_artifact(cls, artifact) -> "LineageReport":
        m = artifact.manifest
        return cls(artifact=str(artifact.path), id=artifact.id, task=artifact.task, verb=m.get("verb", "?"),
                   format=m.get("format", "fp32"), parents=list(m.get("parents", [])), options=dict(m.get("options", {})),
                   test=dict(m.get("metrics", {}).get("test", {})))

    def summary(self) -> str:
        return f"artifact {self.id} ({self.task}, {self.format}) written by {self.verb}" + (
            f" from {', '.join(self.parents)}" if self.parents else "")

    def html(self) -> str:
        facts = [("id", self.id), ("task", self.task), ("written by", self.verb), ("format", self.format),
                 ("parents", ", ".join(self.parents) or "none")]
        scalars = [(k, v) for k, v in self.test.items() if not isinstance(v, (list, dict))]
        options = [(k, v) for k, v in sorted(self.options.items()) if v is not None]
        return (f"<section><h2>Artifact · {html.escape(self.id)}</h2><p class=muted>{html.escape(self.artifact)}</p>"
                f"{table_html(facts)}<h3>test metrics (manifest)</h3>{table_html(scalars, ['metric', 'value'])}"
                f"<h3>options</h3>{table_html(options, ['option', 'value'])}</section>")
