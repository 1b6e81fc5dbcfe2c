"""The update decision: a challenger retrained on new data against the champion on the same held-out data, through
gates, promoted only when every gate passes (UpdateConfig, Gate, decide, UpdateReport). The retraining itself is
composed in the api layer (tamer/api_update.py) from the one training loop; this module judges and reports."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import check
from ..config import field as option
from ..gates import OPS
from ..report import Report, figure_html, table_html

@dataclass(frozen=True)
class UpdateConfig:
    """The options of `tamer update` (one name across Python, CLI and recipes)."""

    alias: str = option("production", "the alias whose artifact is the champion, and which moves when the challenger wins")
    data: str | None = option(None, "the new data file (the task's format); split into train / validation / test by --seed")
    recipe: str | None = option(None, "a recipe whose gates (accuracy, size_mb, robust_accuracy, ...) the challenger must also pass")
    when: Literal["drift", "always"] = option("always", "retrain always, or only when the new data drifted from the old")
    epochs: int | None = option(None, "fine-tuning epochs over the new data (default: the task's, at most 5)")
    lr: float | None = option(None, "fine-tuning learning rate (default: half the task's)")
    replay: float = option(0.5, "fraction of the champion's own training split mixed into the challenger's training data")
    significance: float = option(0.2, "classifiers: the challenger must be right where the champion is wrong more "
                                      "often than the reverse, one-sided exact McNemar p <= this (1 = off; 0.05 for "
                                      "the textbook level, which a few hundred held-out examples rarely reach)")
    min_gain: float = option(0.0, "the challenger's metric on all held-out data must exceed the champion's by this much")
    max_forgetting: float = option(0.02, "the most the challenger may lose on the champion's old test split")
    seed: int = option(0, "seed for the new data's split, the replay sample and training")
    reason: str | None = option(None, "why, recorded in the registry's event log beside the decision")

    def __post_init__(self):
        check(0 <= self.replay <= 1, f"--replay {self.replay} is out of range; use a fraction in [0, 1].")
        check(self.epochs is None or self.epochs >= 1, f"--epochs {self.epochs} is out of range; use a whole number >= 1.")
        check(self.lr is None or self.lr > 0, f"--lr {self.lr} is out of range; use a positive number.")
        check(0 < self.significance <= 1, f"--significance {self.significance} is out of range; use a value in (0, 1].")
        check(0 <= self.max_forgetting <= 1, f"--max-forgetting {self.max_forgetting} is out of range; use a value in [0, 1].")
        check(self.alias.strip() != "", "--alias '' is not accepted; name the alias to update, e.g. production.")


@dataclass
class Gate:
    """One rule the challenger must pass: `metric op threshold`, and where the threshold came from."""

    metric: str
    op: str
    threshold: float
    source: str
    value: float | None = None
    passed: bool = False

    def judge(self, metrics: dict[str, Any]) -> Gate:
        value = metrics.get(self.metric)
        self.value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        self.passed = self.value is not None and OPS[self.op](self.value, self.threshold)
        return self

    def sentence(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.4g}"
        return f"{self.metric} {shown} {'passes' if self.passed else 'fails'} {self.op} {self.threshold:.4g} ({self.source})"


def mcnemar_p(champion_right, challenger_right) -> float:
    """One-sided exact McNemar test (paired, same examples): the probability of at least as many examples the
    challenger alone gets right, among those where the two disagree, if either were as likely (binomial, p = 1/2)."""
    import numpy as np
    from scipy.stats import binomtest

    a, b = np.asarray(champion_right, bool), np.asarray(challenger_right, bool)
    wins, losses = int((b & ~a).sum()), int((a & ~b).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def standing_gates(metric: str, higher_is_better: bool, champion: dict[str, dict[str, Any]],
                   config: UpdateConfig, paired: bool = False) -> list[Gate]:
    """The gates every update passes: strictly better than the champion on all held-out data (old and new test
    splits together; a tie keeps the champion), and no more than `max_forgetting` worse on the old test split; for
    classifiers (`paired`), better beyond chance on the same examples (McNemar), so a challenger that learned
    nothing real does not win by noise."""
    sign = 1 if higher_is_better else -1
    both, old = champion["all"][metric], champion["old"][metric]
    return [Gate(metric, ">" if higher_is_better else "<", both + sign * config.min_gain,
                 f"champion's {metric} on all held-out data" + (f" + {config.min_gain:g}" if config.min_gain else "")),
            Gate(f"old.{metric}", ">=" if higher_is_better else "<=", old - sign * config.max_forgetting,
                 f"champion's {metric} on the old test split - {config.max_forgetting:g} (forgetting)")] + (
        [Gate("mcnemar_p_value", "<=", config.significance, "better beyond chance: one-sided exact McNemar test, "
                                                             "champion vs challenger on the same held-out examples")]
        if paired and config.significance < 1 else [])


@dataclass
class UpdateReport(Report):
    alias: str
    task: str
    data: str
    champion: str
    champion_path: str
    challenger: str | None = None
    challenger_path: str | None = None
    drift: bool | None = None
    drift_p_value: float | None = None
    drift_summary: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # {champion|challenger: {split: metrics}}
    gates: list[dict[str, Any]] = field(default_factory=list)
    promoted: bool = False
    decision: str = ""
    production: str = ""  # the artifact id the alias names after the update
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    title = "update"

    def gate_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"promoted": float(self.promoted)}
        for who in ("champion", "challenger"):
            for split, metrics in self.scores.get(who, {}).items():
                value = metrics.get(self.metric)
                if isinstance(value, (int, float)):
                    out[f"{who}.{split}.{self.metric}"] = value
        return out

    def summary(self) -> str:
        lines = [f"update of {self.alias!r} ({self.task}) with {self.data}"]
        if self.drift is not None:
            lines.append(f"drift: {'yes' if self.drift else 'no'} (p = {self.drift_p_value:.3g})")
        for who in ("champion", "challenger"):
            scores = self.scores.get(who)
            if scores:
                row = ", ".join(f"{split} {m.get(self.metric, float('nan')):.4f}" for split, m in scores.items())
                lines.append(f"{who} {getattr(self, who)}: {self.metric} {row}")
        lines += [("  pass  " if g["passed"] else "  FAIL  ") + g["sentence"] for g in self.gates]
        lines.append(self.decision)
        return "\n".join(lines)

    def html(self) -> str:
        splits = list(self.scores.get("champion", {}))
        rows = [(split, *(self.scores.get(w, {}).get(split, {}).get(self.metric) for w in ("champion", "challenger")))
                for split in splits]
        gates = [(g["metric"], "—" if g["value"] is None else f"{g['value']:.4g}", f"{g['op']} {g['threshold']:.4g}",
                  g["source"], f'<span class="{"pass" if g["passed"] else "fail"}">{"pass" if g["passed"] else "fail"}</span>')
                 for g in self.gates]
        drift = ("" if self.drift is None else
                 f"<p>Drift between the champion's data and the new data: <b>{'yes' if self.drift else 'no'}</b> "
                 f"(p = {self.drift_p_value:.3g}).</p>")
        verdict = "pass" if self.promoted else "fail"
        return (f"<section><h2>Update: champion vs challenger ({html.escape(self.alias)})</h2>"
                f"<p class='muted'>new data {html.escape(self.data)}; champion <code>{html.escape(self.champion)}</code>"
                f"{'; challenger <code>' + html.escape(self.challenger) + '</code>' if self.challenger else ''}</p>{drift}"
                f"{figure_html(self._figure(splits), 'champion vs challenger') if rows and self.challenger else ''}"
                f"{table_html(rows, ['held-out split', f'champion {self.metric}', f'challenger {self.metric}'])}"
                f"{table_html(gates, ['gate', 'challenger', 'rule', 'from', 'verdict']) if gates else ''}"
                f"<p class='{verdict}'>{html.escape(self.decision)}</p></section>")

    def _figure(self, splits: list[str]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(5.5, 3))
        x = np.arange(len(splits))
        for i, who in enumerate(("champion", "challenger")):
            values = [self.scores.get(who, {}).get(s, {}).get(self.metric) or 0 for s in splits]
            ax.bar(x + (i - 0.5) * 0.38, values, 0.38, label=who, color=("#9aa5b1", "#2563eb")[i])
        ax.set_xticks(x, splits)
        ax.set_ylabel(self.metric)
        ax.legend(frameon=False, fontsize=8)
        ax.set_title("held-out data, old and new", fontsize=10)
        fig.tight_layout()
        return fig
