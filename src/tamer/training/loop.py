"""The train verb on the one loop (tamer/loop.py), one process or many (DDP / FSDP2): seeded, validated every
epoch, early-stopped, checkpointed."""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..artifact import Artifact, save_artifact
from ..cost import active as active_meter
from ..cost import peak_rss_bytes
from ..device import check_precision, current, grad_scaler, place_model, placed
from ..errors import DataError, UsageError, refuse_existing
from ..loop import Callback, Loop, Piece, ProgressBar, Where, task_loss
from ..tasks.base import Splits, Task
from .allocator import check_one_process, in_use
from .augment import augmenter_for
from .checkpoint import clear, load_checkpoint, save_checkpoint
from .config import TrainConfig, recipe_options
from .distributed import (World, agree, barrier, each_rank, full_state, gradient_sync, join, leave, plain, replica_spread,
                          sum_all, under_torchrun, wrap)
from ..progress import progress_bar


def resolve(config: TrainConfig, task: Task) -> TrainConfig:
    """Fill the options left at None with the task's defaults."""
    defaults = task.train_defaults()
    return dataclasses.replace(config, **{k: v for k, v in defaults.items()
                                          if hasattr(config, k) and getattr(config, k) is None})


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # no decay on biases and norm weights (the usual transformer recipe)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    other = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=config.lr)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    warm = int(config.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.scheduler == "constant":
            return 1.0
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.dim() > 1)


def add_l1_gradient(model: nn.Module, strength: float) -> None:
    """d/dp of strength * |p|, added after the gradient sync (works on DDP replicas and FSDP shards alike)."""
    for p in model.parameters():
        if p.requires_grad and p.dim() > 1 and p.grad is not None:
            p.grad.add_(p.detach().sign(), alpha=strength)


def train_loader(task: Task, dataset, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """Shuffled by a generator seeded per epoch, so a resumed run sees the same order."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g, collate_fn=task.collate)


def global_batches(n: int, batch_size: int, seed: int, epoch: int, parts: int = 1) -> list[list[int]]:
    """The epoch's global batches: the same permutation as `train_loader`; a last batch too small to give
    every rank and micro-batch one example (`parts`) is dropped. Independent of the world size."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < parts:
        batches.pop()
    return batches


def cut(n: int, parts: int, index: int) -> tuple[int, int]:
    """[start, end) of piece `index` when n items are cut into `parts` contiguous, near-equal pieces."""
    size, extra = divmod(n, parts)
    start = index * size + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def step_seed(*parts: int) -> int:
    """A seed for one (run seed, epoch, step, ...) so dropout and augmentation need no RNG state to resume."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 6364136223846793005 + int(part) + 1442695040888963407) % 2**63
    return value


def seed_device(seed: int, device: torch.device) -> None:
    """Seed the generators this step uses. `torch.manual_seed` also seeds every accelerator type, which on a
    CPU-only build records a stack trace per call: 14% of a small model's step time."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


@dataclass
class Fitted:
    model: nn.Module | None  # None on every rank but 0
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    seconds: float
    examples_per_second: float
    epoch_seconds: list[float]
    world_size: int = 1
    replica_spread: float = 0.0  # DDP: largest difference of a weight checksum between ranks (0 = identical)
    device: torch.device = torch.device("cpu")  # where rank 0 trained
    computed_in: tuple[str, ...] = ()  # the dtypes the model's outputs came out in (autocast's doing, Task.forward)


@dataclass(frozen=True)
class Start:
    """Where a warm-started fit begins: an artifact's model config and its (fp32) weights."""

    model_config: dict[str, Any]
    state: dict[str, torch.Tensor]


class BestEpoch(Callback):
    """Validation, the best epoch's weights, early stopping (--patience) and checkpoints (every
    --checkpoint-every steps and at every epoch end), on every rank alike."""

    def __init__(self, task: Task, config: TrainConfig, world: World, eval_model: nn.Module, val, checkpoint_dir,
                 steps_per_epoch: int):
        self.task, self.config, self.world, self.eval_model, self.val = task, config, world, eval_model, val
        self.checkpoint_dir, self.steps_per_epoch = checkpoint_dir, steps_per_epoch
        self.sign = 1.0 if task.higher_is_better else -1.0
        self.spread, self.epoch_seconds, self.t0 = 0.0, [], 0.0

    def checkpoint(self, loop: Loop, saved: dict[str, Any]) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, loop.state.global_step, loop.model, loop.optimizer, loop.scheduler,
                            self.world, **{**saved, "best_state": saved["best_state"] if self.world.main else None})

    def before_epoch(self, loop: Loop) -> None:
        if self.config.patience and loop.state.waited >= self.config.patience:
            loop.state.stop = f"no better validation {self.task.metric} for {self.config.patience} epochs"
        self.t0 = time.perf_counter()

    def on_step_end(self, loop: Loop) -> None:
        s, every = loop.state, self.config.checkpoint_every
        if every and s.global_step % every == 0 and s.step < self.steps_per_epoch:
            loop.settle()
            self.checkpoint(loop, s.saved())

    def on_epoch_end(self, loop: Loop) -> None:
        s, task, world = loop.state, self.task, self.world
        val = task.evaluate(self.eval_model, self.val, self.config.eval_batch_size)
        s.history.append({"epoch": s.epoch, "train_loss": s.loss_sum / max(s.count, 1), "val_loss": val["loss"],
                          f"val_{task.metric}": val[task.metric], "lr": loop.scheduler.get_last_lr()[0]})
        self.epoch_seconds.append(round(time.perf_counter() - self.t0, 3))
        improved = s.best_value is None or self.sign * val[task.metric] > self.sign * s.best_value
        if sum_all(world, float(improved))[0] > 0:  # every rank takes the same branch (a collective follows)
            s.best_value, s.best_epoch, s.best_state, s.waited = val[task.metric], s.epoch, full_state(loop.model, world), 0
        else:
            s.waited += 1
        if world.distributed and self.config.strategy == "ddp":
            self.spread = max(self.spread, replica_spread(plain(loop.model), world))
        self.checkpoint(loop, s.next_epoch())
        if self.config.patience and s.waited >= self.config.patience:
            s.stop = f"no better validation {task.metric} for {self.config.patience} epochs"


def fit(task: Task, splits: Splits, config: TrainConfig, checkpoint_dir: Path | None = None,
        show_progress: bool = True, world: World | None = None, start: Start | None = None) -> Fitted:
    """Train `task`'s model on `splits.train` (on every rank of `world`), choosing the epoch with the best
    validation metric. `config.batch_size` is the global batch: each rank takes a slice of it. `start` warm-starts
    from an artifact's model config and weights instead of the task's fresh model."""
    for part in ("train", "val"):
        if len(getattr(splits, part)) == 0:
            raise DataError(f"the {part} split is empty; give more data or change the split fractions.")
    config = resolve(config, task)
    world = world or join(config.timeout, config.device)
    check_precision(config.precision, world.device)
    if config.precision == "fp16" and world.distributed and config.strategy == "fsdp":
        raise UsageError("--precision fp16 with --strategy fsdp is not supported (its gradient scaler would decide "
                         "per shard whether to skip a step); use --precision bf16 with FSDP2.")
    parts = world.size * config.accumulate
    if config.batch_size < parts:
        raise UsageError(f"--batch-size {config.batch_size} is too small for {world.size} process(es) x --accumulate "
                         f"{config.accumulate}; use a global batch of at least {parts}.")
    try:
        augment = augmenter_for(config.augment, task, task.collate([splits.train[0]]))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    seed_everything(config.seed)
    steps_per_epoch = len(global_batches(len(splits.train), config.batch_size, config.seed, 1, parts))

    def pieces(epoch: int, first: int):
        """Each step's global batch, cut into this rank's slice and that into `accumulate` micro-batches."""
        batches = global_batches(len(splits.train), config.batch_size, config.seed, epoch, parts)
        for indices in batches[first:]:
            lo, hi = cut(len(indices), world.size, world.rank)
            step = []
            for micro in range(config.accumulate):
                m_lo, m_hi = cut(hi - lo, config.accumulate, micro)
                # mean over the global batch once DDP / FSDP average the gradients over ranks
                step.append(Piece(task.collate([splits.train[i] for i in indices[lo + m_lo: lo + m_hi]]),
                                  weight=(m_hi - m_lo) * world.size / len(indices), offset=lo + m_lo,
                                  total=len(indices), micro=micro, last=micro == config.accumulate - 1))
            yield step

    transforms = []
    if augment is not None:
        transforms.append(lambda batch, at: augment(batch, step_seed(config.seed, at.epoch, at.step),
                                                    at.piece.offset, at.piece.total))
    transforms.append(lambda batch, at: task.to_device(batch, world.device))

    def seed_dropout(batch: dict, at: Where) -> dict:
        seed_device(step_seed(config.seed, at.epoch, at.step, world.rank, at.piece.micro), world.device)
        return batch

    transforms.append(seed_dropout)
    model_config = start.model_config if start is not None else task.model_config()
    first = task.build_model(model_config)
    if start is not None:
        first.load_state_dict(start.state)
    loop = Loop(first, lambda model: make_optimizer(model, config), pieces,
                task_loss(task), config.epochs,
                wrappers=[lambda m, o, d: (wrap(m, config.strategy, world, config.precision, config.activation_checkpointing,
                                                config.offload), o, d)],
                transforms=transforms, reduce=lambda *values: sum_all(world, *values),
                scaler=grad_scaler(config.precision, world.device)).prepare()
    model, optimizer = loop.model, loop.optimizer
    loop.sync = lambda last: gradient_sync(model, last)
    if config.l1:
        loop.after_backward = [*loop.after_backward, lambda: add_l1_gradient(model, config.l1)]
    if config.grad_clip:
        loop.after_backward = [*loop.after_backward, lambda: nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)]
    loop.scheduler = make_scheduler(optimizer, config, steps_per_epoch * config.epochs)
    resuming = config.resume or world.restart > 0
    state = (load_checkpoint(checkpoint_dir, model, optimizer, loop.scheduler, world)
             if resuming and checkpoint_dir else None)
    if config.resume and state is None and world.restart == 0:
        raise UsageError(f"--resume found no checkpoint in {str(checkpoint_dir)!r}; run without --resume first.")
    if state is not None:
        loop.state.restore(state)
    elif checkpoint_dir is not None:
        clear(checkpoint_dir, world)
    s = loop.state
    best = BestEpoch(task, config, world, plain(model) if config.strategy == "ddp" else model, splits.val, checkpoint_dir,
                     steps_per_epoch)
    started = time.perf_counter()
    with progress_bar(show_progress and world.main) as bar:
        job = bar.add_task("train", total=steps_per_epoch * (config.epochs - s.epoch + 1) - s.step)
        loop.callbacks = [best, ProgressBar(bar, job, lambda s: f"epoch {s.epoch}/{config.epochs} loss "
                                                               f"{s.pending_loss / max(s.pending_count, 1):.4f}")]
        with placed(world.device, config.precision) as where:  # Task.forward autocasts at the run's precision
            loop.run()
    spread, epoch_seconds = best.spread, best.epoch_seconds
    seconds = time.perf_counter() - started
    stopped_early = len(s.history) < config.epochs
    final = None
    if world.main:
        final = task.build_model(model_config)
        final.load_state_dict(s.best_state)
        final.eval()
    return Fitted(final, s.history, s.best_epoch, stopped_early, seconds, s.seen / max(seconds, 1e-9), epoch_seconds,
                  world.size, spread, world.device, tuple(sorted(where.computed)))


def train(task: Task, config: TrainConfig, out: str | Path, show_progress: bool = True) -> Artifact | None:
    """Prepare the task's data, fit, test on the held-out split, and write an artifact that records it all.

    With --nproc / --nnodes / --max-restarts this process launches torchrun and waits; under torchrun every
    rank trains, rank 0 alone writes the (consolidated) artifact, and every rank returns it (see `written_by_rank0`).
    """
    out = refuse_existing(out)
    if not under_torchrun() and (config.nproc > 1 or config.nnodes > 1 or config.max_restarts > 0):
        from .launch import launch

        return launch(task, config, out, show_progress)
    check_one_process(config.allocator)  # this process is already running on its allocator
    world = join(config.timeout, config.device)
    try:
        out = Path(agree(world, str(out)))  # ranks may each have made up a default --out; rank 0's wins
        resolved = resolve(config, task)
        splits = task.prepare(resolved.seed)
        ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else out.with_name(out.name + ".checkpoints")
        fitted = fit(task, splits, config, ckpt, show_progress, world)
        peaks = each_rank(world, (peak_rss_bytes(), torch.cuda.max_memory_allocated(world.device)
                                  if world.device.type == "cuda" else None, in_use()))  # every rank's, over the fit
        artifact = None
        if world.main:
            with placed(world.device, resolved.precision):  # the test split at the device and precision trained at
                artifact = _write(task, resolved, splits, fitted, out, peaks)
            if not config.checkpoint_dir:  # the default checkpoint folder has served its purpose
                shutil.rmtree(ckpt, ignore_errors=True)
        barrier(world)
        manifest = agree(world, artifact.manifest if artifact is not None else None)
    finally:
        leave(world)
    return artifact if artifact is not None else written_by_rank0(out, manifest)


def written_by_rank0(out: Path, manifest: dict) -> Artifact:
    """On a rank other than 0, the artifact rank 0 wrote: loaded from `out` (every hash checked) where this machine
    sees rank 0's folder, else (another machine, no shared disk) its manifest alone, the files being on rank 0's."""
    if (out / "manifest.json").is_file():
        loaded = Artifact.load(out)
        if loaded.id == manifest["id"]:
            return loaded
    return Artifact(path=out, manifest=manifest)


def _write(task: Task, resolved: TrainConfig, splits: Splits, fitted: Fitted, out: Path,
           peaks: list[tuple[int, int | None, str]]) -> Artifact:
    test = task.evaluate(place_model(fitted.model), splits.test, resolved.eval_batch_size)
    fitted.model.cpu()
    meter = active_meter()
    options = recipe_options(resolved)
    return save_artifact(
        out, fitted.model.state_dict(), task=task.to_manifest(), model_config=task.model_config(), verb="train",
        options=options, metrics={"test": test}, write_files=task.write_files,
        extra={"training": {"learning_curve": fitted.history, "best_epoch": fitted.best_epoch,
                            "stopped_early": fitted.stopped_early, "metric": task.metric,
                            "sizes": {k: len(getattr(splits, k)) for k in ("train", "val", "test")}},
               "run": {"seconds": fitted.seconds, "examples_per_second": fitted.examples_per_second,
                       "epoch_seconds": fitted.epoch_seconds, "world_size": fitted.world_size,
                       "strategy": resolved.strategy if fitted.world_size > 1 else "single",
                       "replica_spread": fitted.replica_spread, "data_files": task.data_files,
                       "device": str(fitted.device), "activation_checkpointing": resolved.activation_checkpointing,
                       "offload": resolved.offload, "computed_in": sorted({*fitted.computed_in, *current().computed}),
                       "notes": list(current().notes),  # what the placement gave up (bf16 without bf16 arithmetic)
                       "flops_per_example": dict(meter.flops) if meter else {},
                       "peak_rss_bytes": peak_rss_bytes(),  # rank 0's process, since its meter opened
                       "peak_accelerator_bytes": (torch.cuda.max_memory_allocated(fitted.device)
                                                  if fitted.device.type == "cuda" else None),
                       "allocator": in_use(),  # rank 0's: tcmalloc or jemalloc when preloaded, else system
                       "allocator_per_rank": [name for _, _, name in peaks],  # nodes may differ
                       "peak_rss_bytes_per_rank": [rss for rss, _, _ in peaks],  # each rank's, up to the end of the fit
                       "peak_accelerator_bytes_per_rank": [acc for _, acc, _ in peaks]}},
    )
