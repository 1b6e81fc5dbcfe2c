"""Sharded checkpoints with torch.distributed.checkpoint (DCP): every rank writes its own shard.

Layout of the checkpoint folder:
  step-00000120/   DCP files (model + optimizer, keyed by parameter name, resharded on load) and
                   loop.pt (scheduler, loop position, history, best weights so far; written by rank 0)
  latest           the name of the newest complete step folder, replaced atomically after it is written
Because DCP keys tensors by name and reshards on load, a checkpoint written by 2 ranks (DDP or FSDP)
loads into 1 or 3 ranks, and the other way round. The folder must be visible to every machine.
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from .distributed import World, barrier

LATEST = "latest"
KEEP = 2


def latest_step_folder(folder: Path | None) -> Path | None:
    if folder is None or not (Path(folder) / LATEST).is_file():
        return None
    sub = Path(folder) / (Path(folder) / LATEST).read_text().strip()
    return sub if (sub / "loop.pt").is_file() else None


def clear(folder: Path, world: World) -> None:
    """Forget the checkpoints of an earlier run before a fresh (not resumed) one starts."""
    if world.main and Path(folder).is_dir():
        for sub in Path(folder).glob("step-*"):
            shutil.rmtree(sub, ignore_errors=True)
        (Path(folder) / LATEST).unlink(missing_ok=True)
    barrier(world)


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, world: World, /, **loop_state: Any) -> Path:
    """Collective: every rank writes its shard of model and optimizer; rank 0 writes the loop state and `latest`."""
    folder = Path(folder)
    sub = folder / f"step-{step:08d}"
    model_state, optim_state = get_state_dict(model, optimizer)
    with warnings.catch_warnings():  # one process: DCP warns that it assumes a single process, which is right
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(sub), no_dist=not world.distributed)
    if world.main:
        tmp = sub / "loop.pt.tmp"
        torch.save({"scheduler": scheduler.state_dict(), "world_size": world.size, **loop_state}, tmp)
        os.replace(tmp, sub / "loop.pt")
        pointer = folder / (LATEST + ".tmp")
        pointer.write_text(sub.name)
        os.replace(pointer, folder / LATEST)
        for old in sorted(folder.glob("step-*"))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(world)
    return sub


def load_checkpoint(folder: Path | None, model, optimizer, scheduler, world: World) -> dict[str, Any] | None:
    """Load the newest checkpoint into the (already wrapped) model and optimizer; None when there is none."""
    sub = latest_step_folder(folder)
    if sub is None:
        return None
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(sub), no_dist=not world.distributed)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    extra = torch.load(sub / "loop.pt", weights_only=False)  # our own file: holds the loop's python state
    scheduler.load_state_dict(extra.pop("scheduler"))
    return extra
