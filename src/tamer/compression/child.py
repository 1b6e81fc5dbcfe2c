"""Writing one compress step's child artifact: every step (quantize, prune, distill, export) records its parent,
the compress seed and the parent's split seed the same way."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..artifact import WEIGHTS, Artifact, save_artifact
from .config import CompressConfig


def compress_seed(artifact: Artifact) -> int:
    """The seed of the data split the parent was trained and measured on; every step measures on the same split."""
    return artifact.split_seed


def _options(config: CompressConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items()}


def write_child(out: Path, parent: Artifact, task, model, model_config, config, step: str, fmt: str,
           metrics: dict, extra: dict | None = None, files=None, run: dict | None = None) -> Artifact:
    """Save one step's child: `metrics` are its test-split metrics (kept as `metrics.test`), `options` record the
    compress seed and the parent's split seed; `run` (timings, and the data files' absolute paths, outside the id)
    is per-run."""
    def write_files(folder: Path) -> None:
        task.write_files(folder)
        if files is not None:
            files(folder)

    return save_artifact(out, model.state_dict(), task=task.to_manifest(), model_config=model_config, verb="compress",
                         options={**_options(config), "step": step, "split_seed": compress_seed(parent)},
                         metrics={"test": metrics}, parents=[parent.id], fmt=fmt,
                         extra={**(extra or {}), "run": {**(run or {}), "data_files": task.data_files}},
                         write_files=write_files)


def weights_bytes(artifact: Artifact) -> int:
    return artifact.size(WEIGHTS)
