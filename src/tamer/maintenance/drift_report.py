"""DriftReport: what `tamer drift` found, as JSON (top-level `drift` and `p_value`) and an HTML section with plots:
per-column histograms and PSI bars for tables; the MMD permutation null with the observed statistic and the domain
classifier's ROC curve for text and arrays."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from ..report import Report, figure_html, table_html

SHOWN_COLUMNS = 12


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


@dataclass
class DriftReport(Report):
    reference: str
    current: str
    kind: str  # tabular | text | array
    features: str  # columns | words | raw | embeddings of artifact ID
    rows_reference: int
    rows_current: int
    drift: bool  # the verdict: the deciding p-value <= alpha
    p_value: float  # the deciding p-value (see `rule`)
    alpha: float
    rule: str  # how p_value is made from the tests, in words
    correction: str
    tests: list[dict[str, Any]] = field(default_factory=list)  # one row per test: name, statistic, p_value, drift
    columns: list[dict[str, Any]] = field(default_factory=list)  # tables: one row per column
    mmd: dict[str, Any] = field(default_factory=dict)
    domain: dict[str, Any] = field(default_factory=dict)
    artifact: str = ""
    seconds: float = 0.0
    title = "drift"

    def gate_metrics(self) -> dict[str, float]:
        out = {"drift": float(self.drift), "p_value": self.p_value, "seconds": self.seconds}
        if self.columns:
            out["max_psi"] = max(c["psi"] for c in self.columns)
            out["drifted_columns"] = float(sum(c["drift"] for c in self.columns))
        if self.mmd:
            out["mmd2"] = self.mmd["statistic"]
        if self.domain:
            out["auc"] = self.domain["auc"]
        return out

    def summary(self) -> str:
        verdict = "DRIFT" if self.drift else "no drift"
        lines = [f"{verdict}: p = {self.p_value:.4g} at alpha {self.alpha:g} ({self.kind}, {self.rows_reference} "
                 f"reference vs {self.rows_current} current rows, {self.features}; {self.seconds:.1f} s)"]
        for t in self.tests:
            lines.append(f"  {t['name']:<28} statistic {t['statistic']:<10.4g} p {t['p_value']:<10.4g}"
                         + (f" adjusted {t['adjusted_p_value']:.4g}" if "adjusted_p_value" in t else "")
                         + (f" psi {t['psi']:.3f}" if "psi" in t else "") + ("  drift" if t["drift"] else ""))
        lines.append(f"  p_value: {self.rule}")
        return "\n".join(lines)

    def _columns_figure(self) -> str:
        p = _plt()
        cols = sorted(self.columns, key=lambda c: c["adjusted_p_value"])[:SHOWN_COLUMNS]
        per_row = min(4, len(cols) + 1)
        lines = -(-(len(cols) + 1) // per_row)
        fig, grid = p.subplots(lines, per_row, figsize=(3.2 * per_row, 2.9 * lines), squeeze=False)
        axes = grid.reshape(1, -1)
        for ax in axes[0, len(cols) + 1:]:
            ax.axis("off")
        psi = axes[0, 0]
        psi.barh([c["column"] for c in cols][::-1], [c["psi"] for c in cols][::-1],
                 color=["tab:red" if c["drift"] else "tab:gray" for c in cols][::-1])
        for x in (0.1, 0.25):
            psi.axvline(x, color="black", lw=0.6, ls=":")
        psi.set_title("PSI (0.1 moderate, 0.25 major)", fontsize=8)
        for ax, c in zip(axes[0, 1:], cols):
            bins = c.get("bins") or {}
            labels = bins.get("labels", [])
            xs = range(len(labels))
            ax.bar([x - 0.2 for x in xs], bins.get("reference", []), width=0.4, label="reference")
            ax.bar([x + 0.2 for x in xs], bins.get("current", []), width=0.4, label="current")
            ax.set_xticks(list(xs), labels, rotation=60, fontsize=6, ha="right")
            ax.set_title(f"{c['column']} ({c['test']}, p adj {c['adjusted_p_value']:.2g})", fontsize=8)
        axes[0, 1 if len(cols) else 0].legend(fontsize=7)
        fig.tight_layout()
        return figure_html(fig, "per-column distributions and PSI")

    def _kernel_figure(self) -> str:
        p = _plt()
        fig, (a, b) = p.subplots(1, 2, figsize=(9, 3.2))
        if self.mmd:
            a.hist(self.mmd["null"], bins=40, color="tab:gray", label="permutation null")
            a.axvline(self.mmd["statistic"], color="tab:red", label=f"observed (p {self.mmd['p_value']:.3g})")
            a.set_xlabel("unbiased MMD^2"); a.legend(fontsize=7)
            a.set_title(f"MMD, Gaussian kernel sigma {self.mmd['bandwidth']:.3g}", fontsize=9)
        if self.domain:
            b.plot(self.domain["roc"]["fpr"], self.domain["roc"]["tpr"], color="tab:blue")
            b.plot([0, 1], [0, 1], color="black", lw=0.6, ls=":")
            b.set_xlabel("false positive rate"); b.set_ylabel("true positive rate")
            b.set_title(f"domain classifier ROC, held-out AUC {self.domain['auc']:.3f}", fontsize=9)
        return figure_html(fig, "MMD permutation null and domain classifier ROC")

    def html(self) -> str:
        head = table_html([("verdict", "drift" if self.drift else "no drift"), ("p_value", self.p_value),
                           ("alpha", self.alpha), ("rule", self.rule), ("features", self.features),
                           ("rows", f"{self.rows_reference} reference, {self.rows_current} current"),
                           ("time", f"{self.seconds:.1f} s")], ["what", "value"])
        rows = [(t["name"], t["statistic"], t["p_value"], t.get("adjusted_p_value", "—"), t.get("psi", "—"),
                 "drift" if t["drift"] else "") for t in self.tests]
        tests = table_html(rows, ["test", "statistic", "p", "adjusted p", "PSI", ""])
        figure = self._columns_figure() if self.columns else self._kernel_figure()
        return (f"<section><h2>Drift · {html.escape(self.kind)} · {html.escape(self.current)} vs "
                f"{html.escape(self.reference)}</h2>{head}{tests}<div class=figs>{figure}</div></section>")
