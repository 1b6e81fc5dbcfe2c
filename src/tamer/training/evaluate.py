"""The `evaluate` verb: an artifact's metrics on its held-out test split or on a data file."""
from __future__ import annotations

from ..artifact import Artifact
from .report import EvalReport


def evaluate(artifact: Artifact, data: str | None = None, eval_batch_size: int = 256) -> EvalReport:
    """Metrics of an artifact on a data file, or on the held-out test split it was trained with."""
    task, model = artifact.load_model()
    if data is not None:
        dataset, source = task.load_eval(data), str(data)
    else:
        dataset, source = task.splits(artifact.split_seed).test, "test split"
    return EvalReport(artifact=str(artifact.path), artifact_id=artifact.id, task=task.name, data=source,
                      metrics=task.evaluate(model, dataset, eval_batch_size), labels=list(getattr(task, "labels", []) or []))
