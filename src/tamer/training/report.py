"""The reports of `train` and `evaluate`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..report import Report, table_html

_SCALARS = ("accuracy", "macro_f1", "perplexity", "mse", "loss")


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, metrics[k]) for k in _SCALARS if k in metrics]


@dataclass
class TrainReport(Report):
    task: str
    artifact: str
    artifact_id: str
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    examples_per_second: float
    metric: str
    history: list[dict[str, Any]]
    test: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    parameters: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    title = "train"

    @classmethod
    def from_artifact(cls, artifact) -> "TrainReport":
        """Everything a training run found is in its artifact's manifest."""
        m = artifact.manifest
        t, run = m.get("training", {}), m.get("run", {})
        return cls(task=artifact.task, artifact=str(artifact.path), artifact_id=artifact.id,
                   epochs_run=len(t.get("learning_curve", [])), best_epoch=t.get("best_epoch", 0),
                   stopped_early=t.get("stopped_early", False), seconds=run.get("seconds", 0.0),
                   examples_per_second=run.get("examples_per_second", 0.0), metric=t.get("metric", "accuracy"),
                   history=t.get("learning_curve", []), test=m.get("metrics", {}).get("test", {}),
                   labels=list(m["model_config"].get("labels", [])), parameters=m.get("parameters", 0),
                   sizes=t.get("sizes", {}))

    def gate_metrics(self) -> dict[str, Any]:
        return {k: v for k, v in self.test.items() if not isinstance(v, (list, dict))}

    def summary(self) -> str:
        test = ", ".join(f"{k} {v:.4f}" for k, v in _metric_rows(self.test) if k != "loss")
        stop = " (stopped early)" if self.stopped_early else ""
        return (f"trained {self.task} for {self.epochs_run} epochs{stop} in {self.seconds:.1f} s; best epoch {self.best_epoch}; "
                f"test {test}\nartifact {self.artifact} (id {self.artifact_id})")

    def html(self) -> str:
        from ..report.plots import confusion, learning_curves

        figs = [learning_curves(self.history, self.metric)]
        if "confusion_matrix" in self.test:
            figs.append(confusion(self.test["confusion_matrix"], self.labels or [str(i) for i in range(len(self.test["confusion_matrix"]))]))
        facts = [("artifact", f"{self.artifact} ({self.artifact_id})"), ("parameters", f"{self.parameters:,}"),
                 ("examples train / val / test", " / ".join(str(self.sizes.get(k, "?")) for k in ("train", "val", "test"))),
                 ("epochs run (best)", f"{self.epochs_run} ({self.best_epoch})"), ("early stop", self.stopped_early),
                 ("wall time", f"{self.seconds:.1f} s"), ("throughput", f"{self.examples_per_second:,.0f} examples/s")]
        return (f"<section><h2>Train · {self.task}</h2>{table_html(facts)}"
                f"<h3>Test split</h3>{table_html(_metric_rows(self.test), ['metric', 'value'])}"
                f"<div class=figs>{''.join(figs)}</div></section>")


@dataclass
class EvalReport(Report):
    artifact: str
    artifact_id: str
    task: str
    data: str
    metrics: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    title = "evaluate"

    def gate_metrics(self) -> dict[str, Any]:
        return {k: v for k, v in self.metrics.items() if not isinstance(v, (list, dict))}

    def summary(self) -> str:
        body = ", ".join(f"{k} {v:.4f}" for k, v in _metric_rows(self.metrics))
        return f"evaluated {self.artifact_id} ({self.task}) on {self.data}: {body}"

    def html(self) -> str:
        from ..report.plots import confusion

        fig = ""
        if "confusion_matrix" in self.metrics:
            labels = self.labels or [str(i) for i in range(len(self.metrics["confusion_matrix"]))]
            fig = confusion(self.metrics["confusion_matrix"], labels)
        return (f"<section><h2>Evaluate · {self.task} on {self.data}</h2>"
                f"<p class=muted>artifact {self.artifact} ({self.artifact_id})</p>"
                f"{table_html(_metric_rows(self.metrics), ['metric', 'value'])}<div class=figs>{fig}</div></section>")
