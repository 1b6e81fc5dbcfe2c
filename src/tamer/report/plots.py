"""Plots shared by several reports (matplotlib, headless)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .base import figure_html  # noqa: E402


def learning_curves(history: Sequence[dict], metric: str) -> str:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    a.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=.3)
    b.plot(epochs, [h[f"val_{metric}"] for h in history], marker="o", color="tab:green")
    b.set_xlabel("epoch"); b.set_ylabel(f"validation {metric}"); b.grid(alpha=.3)
    fig.suptitle("learning curves")
    return figure_html(fig, "learning curves")


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    m = np.asarray(matrix)
    size = max(3.0, 0.45 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 10 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    top = m.max() if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > top / 2 else "black")
    ax.set_title("confusion matrix")
    return figure_html(fig, "confusion matrix")
