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
    title = "harden"

    def gate_metrics(self) -> dict[str, float]:
        return {**{f"parent_{k}": v for k, v in self.before.items()}, **self.after, "seconds": self.seconds}

    def summary(self) -> str:
        b, a = self.before, self.after
        return (f"hardened {self.task} with {self.method} ({self.epochs} epochs, epsilon {self.epsilon:g}) in {self.seconds:.1f} s\n"
                f"clean accuracy {b['clean_accuracy']:.3f} -> {a['clean_accuracy']:.3f}; robust accuracy "
                f"{b['robust_accuracy']:.3f} -> {a['robust_accuracy']:.3f}\nwritten to {self.artifact}")

    def html(self) -> str:
        rows = [(k.replace("_", " "), self.before.get(k, float("nan")), v) for k, v in self.after.items()]
        return (f"<section><h2>Harden · {html.escape(self.task)} · {html.escape(self.method)}</h2>"
                f"<p class=muted>child {html.escape(self.artifact)} of {html.escape(self.parent)}, "
                f"{self.epochs} epochs, epsilon {self.epsilon:g}</p>{table_html(rows, ['metric', 'parent', 'hardened'])}</section>")
