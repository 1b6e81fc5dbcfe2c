"""What compression is judged by: file size, latency at batch 1 and 32, task metrics, per-layer error."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..tasks.base import Task


def calibration_batches(task: Task, dataset, samples: int, seed: int, batch_size: int = 32) -> list[dict]:
    """`samples` examples drawn by seed from `dataset`, collated into batches."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[: min(samples, len(dataset))].tolist()
    return list(DataLoader(Subset(dataset, idx), batch_size=batch_size, shuffle=False, collate_fn=task.collate))


@torch.inference_mode()
def run_batches(task: Task, model: nn.Module, batches: list[dict]) -> None:
    for batch in batches:
        task.forward(model, batch)


def latency_batch(task: Task, dataset, size: int) -> dict:
    """A batch of `size` examples (repeating the set if it is smaller)."""
    examples = [dataset[i % len(dataset)] for i in range(size)]
    return task.collate(examples)


@torch.inference_mode()
def compare_latency(task: Task, models: dict[str, nn.Module], batch: dict, reps: int = 5) -> dict[str, float]:
    """Median ms per model over interleaved runs on the same batch (the machine is shared: compare within a run)."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        task.forward(m, batch)
    for _ in range(reps):
        for k, m in models.items():
            t = time.perf_counter()
            task.forward(m, batch)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def headline(task: Task, metrics: dict[str, Any]) -> float | None:
    """The task's main metric (accuracy / perplexity) as a number, if present."""
    value = metrics.get(task.metric)
    return float(value) if isinstance(value, (int, float)) else None


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return int(sum(t.numel() * t.element_size() for t in state.values()))


@torch.inference_mode()
def output_agreement(task: Task, a: nn.Module, b: nn.Module, batches: list[dict]) -> float:
    """Cosine similarity of the two models' outputs over the batches (1 = identical direction)."""
    xs, ys = [], []
    for batch in batches:
        xs.append(task.forward(a, batch).float().reshape(-1))
        ys.append(task.forward(b, batch).float().reshape(-1))
    return float(torch.nn.functional.cosine_similarity(torch.cat(xs), torch.cat(ys), dim=0))
