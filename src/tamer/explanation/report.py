"""ExplainReport: attributions with their completeness and faithfulness, as JSON, pictures (SVG for text, PNG for
images) and an HTML section (tokens coloured by attribution, heatmaps over the digit images, the curves)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..report import Report, figure_html, table_html, write_page
from . import svg

SHOWN = 12  # items drawn on the page; the JSON holds all


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure(svg_text: str, caption: str) -> str:
    return f'<figure style="margin:0">{svg_text}<figcaption class=muted>{html.escape(caption)}</figcaption></figure>'


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("inf")


@dataclass
class ExplainReport(Report):
    task: str
    kind: str
    artifact: str
    artifact_id: str
    method: str
    baseline: str
    examples: int
    items: list[dict[str, Any]]
    completeness: dict[str, Any] | None = None
    faithfulness: dict[str, Any] | None = None
    sanity: dict[str, Any] | None = None
    global_view: dict[str, Any] | None = None
    seconds: float = 0.0
    out: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    title = "explain"

    # -- numbers ------------------------------------------------------------------------
    def gate_metrics(self) -> dict[str, float]:
        m: dict[str, float] = {"examples": float(self.examples), "seconds": self.seconds}
        if self.completeness:
            m["completeness_max_error"] = self.completeness["max_error"]
            m["completeness_within_tolerance"] = self.completeness["within_tolerance"]
        f = self.faithfulness or {}
        if "deletion_auc" in f:
            m.update({k: f[k] for k in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")})
            m["deletion_auc_ratio"] = _ratio(f["deletion_auc"], f["random_deletion_auc"])
        if "comprehensiveness" in f:
            m.update({k: f[k] for k in ("comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency")})
            m["comprehensiveness_ratio"] = _ratio(f["comprehensiveness"], f["random_comprehensiveness"])
        if self.sanity:
            m["sanity_change"] = self.sanity["change"]
            m["sanity_spearman_abs"] = self.sanity["spearman_abs"]
            if self.sanity.get("verdict") in ("pass", "fail"):
                m["sanity_passed"] = float(self.sanity["verdict"] == "pass")
        return m

    def summary(self) -> str:
        lines = [f"explained {self.examples} input(s) of {self.task} with {self.method} (baseline {self.baseline}) in {self.seconds:.1f} s"]
        for r in self.items[:5]:
            top = ""
            if self.kind == "text":
                best = sorted(zip(r["words"], r["attributions"]), key=lambda p: -p[1])[:3]
                top = "  top words: " + ", ".join(f"{w} ({v:+.3f})" for w, v in best)
            lines.append(f"  {r['name']}: target {r['target_label']} p={r['probability']:.3f}{top}")
        c = self.completeness
        if c:
            lines.append(f"completeness: max error {c['max_error']:.2e} (tolerance {c['tolerance']:g}), up to {c['max_steps_used']} steps")
        g = self.gate_metrics()
        if "deletion_auc" in g:
            lines.append(f"deletion AUC {g['deletion_auc']:.3f} vs random {g['random_deletion_auc']:.3f} "
                         f"({g['deletion_auc_ratio']:.2f}x); insertion AUC {g['insertion_auc']:.3f} vs random {g['random_insertion_auc']:.3f}")
        if "comprehensiveness" in g:
            lines.append(f"comprehensiveness {g['comprehensiveness']:.3f} vs random {g['random_comprehensiveness']:.3f} "
                         f"({g['comprehensiveness_ratio']:.2f}x); sufficiency {g['sufficiency']:.3f} vs random {g['random_sufficiency']:.3f}")
        if self.sanity:
            lines.append(f"sanity check ({self.sanity['mode']} randomization): {self._verdict()}")
        if self.out:
            lines.append(f"written to {self.out}")
        return "\n".join(lines)

    def _verdict(self) -> str:
        s = self.sanity
        word = {"pass": "passes", "fail": "FAILS", "undecided": "is undecided"}.get(s.get("verdict"), "")
        return f"{self.method} {word} on this model: {s.get('meaning', '')}"

    # -- pictures -----------------------------------------------------------------------
    def figures(self) -> list[tuple[str, str, Callable]]:
        """(file name, caption, function making the picture) for every picture: a matplotlib figure for a .png, the
        SVG text for a .svg (the text charts, drawn by hand in a few milliseconds)."""
        figs: list[tuple[str, str, Callable]] = []
        if self.kind == "image":
            figs.append(("heatmaps.png", "attributions over the digits", self._heatmaps))
        else:
            figs.append(("attributions.svg", "word attributions", lambda: svg.word_bars(self.items[:4])))
        f = self.faithfulness or {}
        if "deletion" in f:
            figs.append(("curves.png", "deletion and insertion curves", self._curves))
        if "comprehensiveness" in f:
            figs.append(("eraser.svg", "comprehensiveness and sufficiency", lambda: svg.eraser_bars(f, self.method)))
        if self.sanity and len(self.sanity["steps"]) > 1:
            figs.append(("sanity.png", "cascading randomization", self._sanity))
        if self.global_view and self.global_view["kind"] == "image":
            figs.append(("global.png", "mean |attribution| per class", self._global_maps))
        return figs

    def _heatmaps(self):
        plt = _plt()
        rows = self.items[:SHOWN]
        fig, axes = plt.subplots(1, len(rows), figsize=(1.6 * len(rows) + 0.5, 2.1), squeeze=False)
        for ax, r in zip(axes[0], rows):
            shape = r["shape"]
            a = np.asarray(r["attributions"]).reshape(shape)
            lim = float(np.abs(a).max()) or 1.0
            ax.imshow(np.asarray(r["pixels"]).reshape(shape), cmap="gray_r")
            ax.imshow(a, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.6)
            ax.set_title(f"{r['target_label']} p={r['probability']:.2f}", fontsize=8)
            ax.axis("off")
        fig.suptitle(f"{self.method}: red pushes toward the class, blue away", fontsize=9)
        return fig

    def _curves(self):
        plt = _plt()
        f = self.faithfulness
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, name in zip(axes, ("deletion", "insertion")):
            ax.plot(f["fractions"], f[name], marker="o", label=f"{self.method} (AUC {f[name + '_auc']:.3f})")
            ax.plot(f["fractions"], f["random_" + name], ls="--", label=f"random (AUC {f['random_' + name + '_auc']:.3f})")
            ax.set_xlabel(f"fraction of pixels {'removed' if name == 'deletion' else 'shown'}")
            ax.set_ylabel("probability of the target")
            ax.set_title(name); ax.legend(fontsize=8); ax.grid(alpha=.3)
        return fig

    def _sanity(self):
        plt = _plt()
        steps = self.sanity["steps"]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(range(len(steps)), [s["spearman_abs"] for s in steps], marker="o")
        ax.set_xticks(range(len(steps)), [s["randomized"] for s in steps], rotation=30, fontsize=7, ha="right")
        ax.set_ylabel("rank correlation with original"); ax.set_ylim(-0.2, 1.05); ax.grid(alpha=.3)
        ax.set_title("randomized from the output layer down")
        return fig

    def _global_maps(self):
        plt = _plt()
        g = self.global_view
        classes = g["classes"]
        fig, axes = plt.subplots(2, len(classes), figsize=(1.3 * len(classes) + 0.5, 2.9), squeeze=False)
        for j, c in enumerate(classes):
            axes[0, j].imshow(np.asarray(c["mean_image"]).reshape(g["shape"]), cmap="gray_r")
            axes[1, j].imshow(np.asarray(c["map"]).reshape(g["shape"]), cmap="magma")
            axes[0, j].set_title(f"{c['class']} (n={c['count']})", fontsize=8)
            axes[0, j].axis("off"); axes[1, j].axis("off")
        fig.suptitle("mean image (top) and mean |attribution| (bottom) per class", fontsize=9)
        return fig

    # -- html ---------------------------------------------------------------------------
    @staticmethod
    def _tokens_html(words: list[str], values: list[float]) -> str:
        lim = max((abs(v) for v in values), default=0.0) or 1.0
        spans = []
        for w, v in zip(words, values):
            alpha = min(1.0, abs(v) / lim) * 0.85
            color = f"rgba(220,38,38,{alpha:.2f})" if v > 0 else f"rgba(37,99,235,{alpha:.2f})"
            spans.append(f'<span title="{v:+.4f}" style="background:{color};padding:1px 3px;border-radius:3px">{html.escape(w)}</span>')
        return " ".join(spans)

    def _items_html(self) -> str:
        if self.kind == "image":
            return ""
        rows = []
        for r in self.items[:SHOWN]:
            extra = f" · error {r['completeness_error']:.1e}, {r['n_steps']} steps" if "completeness_error" in r else ""
            rows.append(f"<p><b>{html.escape(r['name'])}</b> → {html.escape(r['target_label'])} (p={r['probability']:.3f}{extra})<br>"
                        f"{self._tokens_html(r['words'], r['attributions'])}</p>")
        more = f"<p class=muted>{len(self.items) - SHOWN} more in explanation.json</p>" if len(self.items) > SHOWN else ""
        return "<p class=muted>red: pushes toward the target; blue: away; hover for the value</p>" + "".join(rows) + more

    def _global_html(self) -> str:
        g = self.global_view
        if not g or g["kind"] != "text":
            return ""
        rows = [(c["class"], c["count"], ", ".join(f"{w} ({v:+.3f})" for w, v, _ in c["top"])) for c in g["classes"]]
        return f"<h3>Global view: words driving each class ({g['examples']} test examples)</h3>" + table_html(rows, ["class", "examples", "top words"])

    def html(self) -> str:
        g = self.gate_metrics()
        head = [("task", self.task), ("method", self.method), ("baseline", self.baseline), ("inputs", self.examples),
                ("time", f"{self.seconds:.1f} s")]
        if self.completeness:
            c = self.completeness
            head += [("completeness max error", f"{c['max_error']:.2e} (tolerance {c['tolerance']:g})"),
                     ("steps used (max)", c["max_steps_used"])]
        for key in ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc", "comprehensiveness",
                    "random_comprehensiveness", "sufficiency", "random_sufficiency", "sanity_spearman_abs", "sanity_change"):
            if key in g:
                head.append((key.replace("_", " "), float(g[key])))
        verdict = ""
        if self.sanity and "verdict" in self.sanity:
            cls = {"pass": "pass", "fail": "fail"}.get(self.sanity["verdict"], "muted")
            verdict = (f"<p class={cls}>sanity check ({html.escape(self.sanity['mode'])} model randomization, "
                       f"Adebayo et al. 2018): {html.escape(self._verdict())}</p>")
        pngs = getattr(self, "_pngs", {})
        figs = "".join(_figure(make(), caption) if name.endswith(".svg") else
                       _img(pngs[name], caption) if name in pngs else figure_html(make(), caption)
                       for name, caption, make in self.figures())
        return (f"<section><h2>Explain · {html.escape(self.task)} · {html.escape(self.method)}</h2>"
                f"{table_html(head, ['what', 'value'])}{verdict}{self._items_html()}<div class=figs>{figs}</div>{self._global_html()}</section>")

    def write_files(self, folder: Path) -> list[str]:
        names, self._pngs = [], {}
        for name, _, make in self.figures():
            if name.endswith(".svg"):
                (folder / name).write_text(make(), encoding="utf-8")
                names.append(name)
                continue
            fig = make()
            fig.savefig(folder / name, dpi=110, bbox_inches="tight")
            _plt().close(fig)
            self._pngs[name] = (folder / name).read_bytes()
            names.append(name)
        self.files = names + ["explanation.html", "explanation.json"]
        write_page(folder / "explanation.html", [self], title=f"tamer explain · {self.task}", subtitle=f"artifact {self.artifact_id}")
        (folder / "explanation.json").write_text(self.to_json())
        return self.files
