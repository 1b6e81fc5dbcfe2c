"""CompressReport: size, latency, metric against the parent, per-layer error and fallbacks, a size-vs-metric plot."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from ..report import Report, figure_html, table_html


@dataclass
class StepResult:
    step: str                      # distill | prune | quantize | export
    artifact: str
    id: str
    detail: str
    parent_bytes: int = 0
    child_bytes: int = 0
    metric: str = "accuracy"
    parent_metric: float | None = None
    child_metric: float | None = None
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # batchN -> {parent, child}
    agreement: float | None = None  # cosine of outputs, child vs parent
    layers: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: dict[str, str] = field(default_factory=dict)
    rtn_metric: float | None = None  # quantize with GPTQ: the round-to-nearest metric, for comparison
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float | None:
        return self.child_bytes / self.parent_bytes if self.parent_bytes else None

    def latency_ratio(self, batch: str) -> float | None:
        t = self.latency_ms.get(batch)
        return t["child"] / t["parent"] if t and t.get("parent") else None


def _num(x, fmt="{:.4g}") -> str:
    return "—" if x is None else fmt.format(x)


@dataclass
class CompressReport(Report):
    parent: str
    parent_id: str
    artifact: str
    id: str
    steps: list[StepResult]
    title = "compress"

    def overall(self) -> dict[str, float]:
        """The last child against the first parent (the artifact compress was given), whatever the chain between:
        size and metric measured, latency as the product of each step's measured ratio."""
        first, last = self.steps[0], self.steps[-1]
        out: dict[str, float] = {}
        if first.parent_bytes:
            out["size_ratio"] = last.child_bytes / first.parent_bytes
        for batch, key in (("batch1", "latency_ratio_b1"), ("batch32", "latency_ratio_b32")):
            ratios = [s.latency_ratio(batch) for s in self.steps]
            if ratios and all(r is not None for r in ratios):
                out[key] = float(math.prod(ratios))
        if last.child_metric is not None:
            out[last.metric] = last.child_metric
        if first.parent_metric is not None:
            out[f"parent_{first.metric}"] = first.parent_metric
            if last.child_metric is not None:
                out[f"{first.metric}_change"] = last.child_metric - first.parent_metric
        return out

    def gate_metrics(self) -> dict[str, float]:
        """Per step as `STEP.KEY` (that step's child against its own parent); unprefixed, the chain's result
        against the first parent (`overall`), so a gate on `accuracy_change` after prune -> quantize sees what both
        steps together cost. Agreement and other step facts unprefixed are the last step's."""
        out: dict[str, float] = {}
        for s in self.steps:
            values = {"size_ratio": s.size_ratio, "latency_ratio_b1": s.latency_ratio("batch1"),
                      "latency_ratio_b32": s.latency_ratio("batch32"), s.metric: s.child_metric,
                      f"parent_{s.metric}": s.parent_metric, "agreement": s.agreement}
            if s.parent_metric is not None and s.child_metric is not None:
                values[f"{s.metric}_change"] = s.child_metric - s.parent_metric
            values.update({k: v for k, v in s.extra.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            for k, v in values.items():
                if v is not None:
                    out[k] = float(v)
                    out[f"{s.step}.{k}"] = float(v)
        out.update({k: float(v) for k, v in self.overall().items()})
        return out

    def summary(self) -> str:
        lines = [f"compressed {self.parent} -> {self.artifact} (id {self.id})"]
        for s in self.steps:
            parts = [f"{s.step} [{s.detail}]"]
            if s.size_ratio is not None:
                parts.append(f"size {s.size_ratio:.3f}x")
            for b in ("batch1", "batch32"):
                if s.latency_ratio(b) is not None:
                    parts.append(f"{b} {s.latency_ratio(b):.2f}x")
            if s.child_metric is not None:
                parts.append(f"{s.metric} {_num(s.parent_metric)} -> {_num(s.child_metric)}")
            if s.rtn_metric is not None:
                parts.append(f"(round-to-nearest {_num(s.rtn_metric)})")
            if s.fallbacks:
                parts.append(f"{len(s.fallbacks)} layer(s) run fp32")
            parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.extra.items() if not isinstance(v, (dict, list))]
            lines.append("  " + ", ".join(parts))
        if len(self.steps) > 1:
            o, m = self.overall(), self.steps[0].metric
            parts = [f"size {o['size_ratio']:.3f}x"] if "size_ratio" in o else []
            if f"parent_{m}" in o and m in o:
                parts.append(f"{m} {_num(o[f'parent_{m}'])} -> {_num(o[m])} ({o[m] - o[f'parent_{m}']:+.4g})")
            lines.append("  against the first parent: " + ", ".join(parts))
        return "\n".join(lines)

    def _plot(self) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        points = [(s.step, s.child_bytes / 1e6, s.child_metric) for s in self.steps if s.child_metric is not None]
        first = next((s for s in self.steps if s.parent_metric is not None), None)
        if not points or first is None:
            return ""
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        ax.scatter([first.parent_bytes / 1e6], [first.parent_metric], color="black", label="parent")
        for name, mb, m in points:
            ax.scatter([mb], [m], label=name)
        for s in self.steps:
            if s.rtn_metric is not None:
                ax.scatter([s.child_bytes / 1e6], [s.rtn_metric], marker="x", label="round-to-nearest")
        ax.set_xlabel("weights (MB)"); ax.set_ylabel(first.metric); ax.grid(alpha=.3); ax.legend(fontsize=8)
        ax.set_title("size versus " + first.metric)
        return figure_html(fig, "size versus metric")

    def html(self) -> str:
        rows = []
        for s in self.steps:
            rows.append((s.step, s.detail, _num(s.size_ratio, "{:.3f}x"), _num(s.latency_ratio("batch1"), "{:.2f}x"),
                         _num(s.latency_ratio("batch32"), "{:.2f}x"), _num(s.parent_metric), _num(s.child_metric),
                         _num(s.rtn_metric), _num(s.agreement, "{:.5f}")))
        if len(self.steps) > 1:  # gates read this row: the chain against the artifact compress was given
            o, m = self.overall(), self.steps[0].metric
            rows.append(("all steps", "against the first parent", _num(o.get("size_ratio"), "{:.3f}x"),
                         _num(o.get("latency_ratio_b1"), "{:.2f}x"), _num(o.get("latency_ratio_b32"), "{:.2f}x"),
                         _num(o.get(f"parent_{m}")), _num(o.get(m)), "—", "—"))
        parts = [f"<section><h2>Compress · {html.escape(self.id)}</h2>",
                 f"<p class=muted>{html.escape(self.parent)} → {html.escape(self.artifact)}</p>",
                 table_html(rows, ["step", "what", "size vs parent", "batch-1 latency", "batch-32 latency",
                                   "parent metric", "child metric", "round-to-nearest", "output cosine"]),
                 self._plot()]
        for s in self.steps:
            if s.layers:
                parts.append(f"<h3>{html.escape(s.step)}: per-layer error and execution</h3>")
                parts.append(table_html([(r["layer"], r["exec"], r["bits"], r["granularity"],
                                          _num(r.get("weight_rel_error")), _num(r.get("output_rel_error")),
                                          _num(r.get("smooth_alpha"), "{:.1f}"), r["reason"]) for r in s.layers],
                                        ["layer", "runs as", "bits", "scales", "relative weight error",
                                         "int8 output error (calibration)", "SmoothQuant alpha", "why"]))
        parts.append("</section>")
        return "".join(parts)
