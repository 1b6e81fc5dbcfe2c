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
        preds = np.concatenate(self.preds) if self.preds else np.zeros(0, int)
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, int)
        n_classes = len(getattr(self.task, "labels", None) or []) or int(max(preds.max(initial=0), labels.max(initial=0)) + 1)
        confusion = confusion_counts(labels, preds, n_classes)
        return {
            "loss": self.loss_sum / max(self.count, 1),
            "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
            "macro_f1": macro_f1(confusion),
            "confusion_matrix": confusion.tolist(),
            "examples": int(self.count),
        }


def confusion_counts(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class (scikit-learn's layout), by one bincount: validation runs every
    epoch, and scikit-learn's checks cost more than the counting."""
    return np.bincount(labels.astype(np.int64) * n_classes + preds.astype(np.int64),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def macro_f1(confusion: np.ndarray) -> float:
    """Mean over classes of 2 TP / (2 TP + FP + FN), 0 for a class never true nor predicted (zero_division=0)."""
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(0) + confusion.sum(1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean()) if len(f1) else 0.0


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
