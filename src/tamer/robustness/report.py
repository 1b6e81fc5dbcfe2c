"""AttackReport and HardenReport: what an attack found (accuracies, success rate, perturbation size, example pairs)
and what adversarial training gained, as JSON and an HTML section (images side by side, edits highlighted)."""
from __future__ import annotations

import difflib
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..report import Report, figure_html, table_html, write_page

SHOWN = 10


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def marked(before: str, after: str) -> str:
    """`after` with the words that differ from `before` highlighted."""
    a, b = before.split(), after.split()
    out = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        words = " ".join(html.escape(w) for w in b[j1:j2])
        if words:
            out.append(words if op == "equal" else f'<mark style="background:#fde68a">{words}</mark>')
        elif op == "delete":
            out.append('<mark style="background:#fecaca">[removed]</mark>')
    return " ".join(out)


@dataclass
class AttackReport(Report):
    task: str
    kind: str
    artifact: str
    artifact_id: str
    method: str
    norm: str
    epsilon: float
    examples: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float
    mean_perturbation: float
    pairs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    out: str = ""
    files: list[str] = field(default_factory=list)
    title = "attack"

    def gate_metrics(self) -> dict[str, float]:
        return {"clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "success_rate": self.success_rate, "mean_perturbation": self.mean_perturbation,
                "examples": float(self.examples), "seconds": self.seconds}

    def size_name(self) -> str:
        return "edits per sentence" if self.kind == "text" else f"{self.norm} distance"

    def summary(self) -> str:
        ball = f"budget {self.options.get('budget')}" if self.kind == "text" else f"{self.norm} epsilon {self.epsilon:g}"
        lines = [f"{self.method} on {self.examples} {self.task} examples ({ball}) in {self.seconds:.1f} s",
                 f"clean accuracy {self.clean_accuracy:.3f} -> robust accuracy {self.robust_accuracy:.3f}; "
                 f"success rate {self.success_rate:.3f} of the examples first right; mean {self.size_name()} "
                 f"{self.mean_perturbation:.4g}"]
        if self.out:
            lines.append(f"written to {self.out}")
        return "\n".join(lines)

    def _pairs_figure(self):
        p = plt()
        rows = self.pairs[:SHOWN]
        fig, axes = p.subplots(2, len(rows), figsize=(1.5 * len(rows) + 0.5, 3.4), squeeze=False)
        for j, r in enumerate(rows):
            for i, (key, pred) in enumerate((("original", "clean_label"), ("adversarial", "adversarial_label"))):
                axes[i, j].imshow(np.asarray(r[key])[0] if np.asarray(r[key]).ndim == 3 else np.asarray(r[key]),
                                  cmap="gray_r", vmin=0, vmax=1)
                axes[i, j].set_title(f"{r[pred]}", fontsize=8, color="black" if r[pred] == r["label"] else "red")
                axes[i, j].axis("off")
        fig.suptitle("original (top) and adversarial (bottom), with the predictions (red: wrong)", fontsize=9)
        return fig

    def _pairs_html(self) -> str:
        if not self.pairs:
            return ""
        if self.kind == "image":
            return figure_html(self._pairs_figure(), "original and adversarial images")
        rows = [(html.escape(r["label"]), f"{html.escape(r['original'])}<br>{marked(r['original'], r['adversarial'])}",
                 f"{r['clean_label']} → {r['adversarial_label']}", ", ".join(r["edits"])) for r in self.pairs[:SHOWN]]
        body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{html.escape(c)}</td><td>{html.escape(d)}</td></tr>"
                       for a, b, c, d in rows)
        return f"<table><tr><th>label</th><th>original / adversarial</th><th>prediction</th><th>edits</th></tr>{body}</table>"

    def html(self) -> str:
        head = [("task", self.task), ("method", self.method), ("examples", self.examples),
                ("clean accuracy", self.clean_accuracy), ("robust accuracy", self.robust_accuracy),
                ("success rate", self.success_rate), (f"mean {self.size_name()}", self.mean_perturbation),
                ("time", f"{self.seconds:.1f} s")]
        if self.kind != "text":
            head.insert(2, ("ball", f"{self.norm}, epsilon {self.epsilon:g} (pixels in [0, 1])"))
        return (f"<section><h2>Attack · {html.escape(self.task)} · {html.escape(self.method)}</h2>"
                f"{table_html(head, ['what', 'value'])}{self._pairs_html()}</section>")

    def write_files(self, folder: Path) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        self.files = ["attack.html", "attack.json"]
        write_page(folder / "attack.html", [self], title=f"tamer attack · {self.task}", subtitle=f"artifact {self.artifact_id}")
        (folder / "attack.json").write_text(self.to_json())
        return self.files


@dataclass
class HardenReport(Report):
    task: str
    artifact: str
    parent: str
    method: str
    epsilon: float
    epochs: int
    before: dict[str, float]
    after: dict[str, float]
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "image"
    title = "harden"

    def how(self) -> str:
        if self.kind == "text":
            return f"perturbed copies ({self.options.get('budget')} random edits each, {self.epochs} epochs)"
        return f"{self.method} ({self.epochs} epochs, epsilon {self.epsilon:g})"

    def gate_metrics(self) -> dict[str, float]:
        return {**{f"parent_{k}": v for k, v in self.before.items()}, **self.after, "seconds": self.seconds}

    def summary(self) -> str:
        b, a = self.before, self.after
        return (f"hardened {self.task} with {self.how()} in {self.seconds:.1f} s\n"
                f"clean accuracy {b['clean_accuracy']:.3f} -> {a['clean_accuracy']:.3f}; robust accuracy "
                f"{b['robust_accuracy']:.3f} -> {a['robust_accuracy']:.3f}\nwritten to {self.artifact}")

    def html(self) -> str:
        rows = [(k.replace("_", " "), self.before.get(k, float("nan")), v) for k, v in self.after.items()]
        return (f"<section><h2>Harden · {html.escape(self.task)} · {html.escape(self.method)}</h2>"
                f"<p class=muted>child {html.escape(self.artifact)} of {html.escape(self.parent)}, "
                f"{html.escape(self.how())}</p>{table_html(rows, ['metric', 'parent', 'hardened'])}</section>")


@dataclass
class StabilityReport(Report):
    task: str
    kind: str
    artifact: str
    artifact_id: str
    examples: int
    accuracy: float
    flip_rates: list[dict[str, float]]
    agreement: list[dict[str, Any]]
    ece: float
    reliability: list[dict[str, float]]
    calibration: dict[str, Any] | None = None
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    title = "stability"

    def gate_metrics(self) -> dict[str, float]:
        m = {"accuracy": self.accuracy, "ece": self.ece, "seconds": self.seconds}
        m.update({f"flip_rate_{r['noise']:g}": r["flip_rate"] for r in self.flip_rates})
        if self.flip_rates:
            m["flip_rate"] = max(r["flip_rate"] for r in self.flip_rates)
        if self.agreement:
            m["agreement"] = min(a["agreement"] for a in self.agreement)
        if self.calibration:
            m["ece_calibrated"] = self.calibration["ece_after"]
            m["temperature"] = self.calibration["temperature"]
        return m

    def summary(self) -> str:
        unit = "word fraction edited" if self.kind == "text" else "noise std"
        lines = [f"stability of {self.task} on {self.examples} examples in {self.seconds:.1f} s: accuracy {self.accuracy:.3f}, "
                 f"ECE {self.ece:.4f}",
                 "flip rate: " + ", ".join(f"{r['flip_rate']:.3f} at {unit} {r['noise']:g}" for r in self.flip_rates)]
        lines += [f"agreement with {a['artifact']}: {a['agreement']:.3f}" for a in self.agreement]
        c = self.calibration
        if c:
            lines.append(f"temperature {c['temperature']:.3f} fitted on the validation split: ECE {c['ece_before']:.4f} -> "
                         f"{c['ece_after']:.4f}; calibrated child {c['artifact']}")
        return "\n".join(lines)

    def _figure(self):
        p = plt()
        fig, axes = p.subplots(1, 2, figsize=(9, 3.4))
        bins = [b for b in self.reliability if b["count"]]
        ax = axes[0]
        ax.plot([0, 1], [0, 1], ls="--", color="gray")
        ax.bar([b["confidence"] for b in bins], [b["accuracy"] for b in bins], width=1 / max(len(self.reliability), 1),
               alpha=0.6, edgecolor="k", label=f"model (ECE {self.ece:.3f})")
        if self.calibration:
            cal = [b for b in self.calibration["reliability"] if b["count"]]
            ax.plot([b["confidence"] for b in cal], [b["accuracy"] for b in cal], marker="o", color="tab:red",
                    label=f"T={self.calibration['temperature']:.2f} (ECE {self.calibration['ece_after']:.3f})")
        ax.set_xlabel("confidence"); ax.set_ylabel("accuracy"); ax.set_title("reliability diagram"); ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot([r["noise"] for r in self.flip_rates], [r["flip_rate"] for r in self.flip_rates], marker="o")
        ax.set_xlabel("word fraction edited" if self.kind == "text" else "Gaussian noise std (pixels)")
        ax.set_ylabel("prediction flip rate"); ax.set_title("flips under noise"); ax.grid(alpha=.3)
        return fig

    def html(self) -> str:
        rows = [(k.replace("_", " "), v) for k, v in self.gate_metrics().items()]
        return (f"<section><h2>Stability · {html.escape(self.task)}</h2>{table_html(rows, ['what', 'value'])}"
                f"{figure_html(self._figure(), 'reliability diagram and flip rate')}</section>")
