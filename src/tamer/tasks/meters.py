"""Metrics accumulated over batches: accuracy / macro-F1 / confusion, perplexity, MSE."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from .base import Task


class Meter(ABC):
    """Accumulates a task's outputs over batches and summarizes them as metrics."""

    def __init__(self, task: Task):
        self.task = task

    @abstractmethod
    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        ...

    @abstractmethod
    def result(self) -> dict[str, Any]:
        ...


class ClassificationMeter(Meter):
    def __init__(self, task):
        super().__init__(task)
        self.preds: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.loss_sum = 0.0
        self.count = 0

    def update(self, outputs, batch, loss):
        n = len(batch["labels"])
        self.preds.append(outputs.argmax(-1).cpu().numpy())
        self.labels.append(batch["labels"].cpu().numpy())
        self.loss_sum += float(loss) * n
        self.count += n

    def result(self) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix, f1_score

        preds = np.concatenate(self.preds) if self.preds else np.zeros(0, int)
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, int)
        n_classes = len(getattr(self.task, "labels", None) or []) or int(max(preds.max(initial=0), labels.max(initial=0)) + 1)
        classes = list(range(n_classes))
        return {
            "loss": self.loss_sum / max(self.count, 1),
            "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
            "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
            "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
            "examples": int(self.count),
        }


class LanguageModelMeter(Meter):
    """Perplexity = exp(mean next-token negative log-likelihood), weighted by tokens."""

    def __init__(self, task):
        super().__init__(task)
        self.nll = 0.0
        self.tokens = 0

    def update(self, outputs, batch, loss):
        n = int((batch["labels"][:, 1:] != -100).sum())
        self.nll += float(loss) * n
        self.tokens += n

    def result(self) -> dict[str, Any]:
        mean = self.nll / max(self.tokens, 1)
        return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "tokens": self.tokens}


class RegressionMeter(Meter):
    def __init__(self, task):
        super().__init__(task)
        self.se = 0.0
        self.count = 0

    def update(self, outputs, batch, loss):
        diff = outputs.squeeze(-1).float() - batch["labels"].float()
        self.se += float((diff ** 2).sum())
        self.count += len(diff)

    def result(self) -> dict[str, Any]:
        mse = self.se / max(self.count, 1)
        return {"loss": mse, "mse": mse, "examples": self.count}
