"""The one training loop. Capabilities hand in what they own and the loop keeps the order of operations, in the
spirit of Opacus' `make_private` (wrap the user's model, optimizer and data, keep their loop) and Lightning's
callbacks:

- the loss: `loss(model, batch) -> tensor` (`task_loss` is the task's own: cross-entropy, MSE or next-token;
  distillation hands in KL + hidden-state matching);
- wrappers `(model, optimizer, data) -> (model, optimizer, data)`, applied by `prepare` (DDP / FSDP2 from
  training/, Opacus' `make_private` from protection/), so this module imports neither;
- batch transforms `(batch, Where) -> batch`, applied on the fly to every piece (augmentation, device moves,
  per-step seeds; an adversarial perturbation next);
- callbacks at epoch start (which may stop the run), step end and epoch end (validation, checkpoints, early
  stopping, epsilon, progress), and an `empty_step` for a batch that drew no example (Poisson sampling).

A step is one or more pieces (micro-batches under gradient accumulation, or slices of a global batch per rank):
zero the gradients, per piece forward + loss + backward (under `sync(last)`), `after_backward` hooks (L1,
clipping), optimizer step, scheduler step, `after_step` hooks (pruning masks). Mixed precision: the forward runs
under autocast in `Task.forward` (the verb's precision); with a `scaler` (fp16) the loss is scaled before backward,
the gradients unscaled before the `after_backward` hooks, and the step skipped when they overflowed. The first
piece's FLOPs are counted for the cost record (tamer/cost.py).
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .cost import flop_probe

Loss = Callable[[nn.Module, dict], torch.Tensor]


def task_loss(task) -> Loss:
    """The task's own loss on the model's output (cross-entropy for classes, MSE for regression, next token for LMs)."""
    return lambda model, batch: task.loss(task.forward(model, batch), batch)


@dataclass
class Piece:
    """One forward and backward of a step: the batch (None: drew no example), the factor on its loss before the
    backward pass (its share of the step), where it starts in the step's global batch of `total` examples, and
    whether it is the last piece (gradients are synchronised on that one)."""

    batch: dict | None
    weight: float = 1.0
    offset: int = 0
    total: int = 0
    micro: int = 0
    last: bool = True


@dataclass(frozen=True)
class Where:
    """Where a piece sits in the run, for transforms that draw per step (augmentation, dropout seeds)."""

    epoch: int
    step: int
    piece: Piece


@dataclass
class LoopState:
    """The loop's position and record; what a checkpoint saves (`saved()`) and a resumed run starts from."""

    epoch: int = 1  # the epoch running (1-based)
    step: int = 0  # steps done in this epoch
    global_step: int = 0
    loss_sum: float = 0.0  # this epoch's settled sum of example losses
    count: float = 0.0  # and its example count
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict | None = None
    waited: int = 0  # epochs since the best one
    seen: float = 0.0  # examples over finished epochs
    stop: str = ""  # why the run stopped before its last epoch
    pending_loss: float = 0.0  # this process's loss sum and count not yet settled (summed over ranks)
    pending_count: float = 0.0

    SAVED = ("epoch", "step", "global_step", "loss_sum", "count", "history", "best_value", "best_epoch",
             "best_state", "waited", "seen")

    def saved(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.SAVED}

    def restore(self, saved: dict[str, Any]) -> None:
        for k in self.SAVED:
            if k in saved:
                setattr(self, k, saved[k])

    def next_epoch(self) -> dict[str, Any]:
        """What `saved()` will be once this epoch is closed: the point a run resumed after it starts from."""
        return {**self.saved(), "epoch": self.epoch + 1, "step": 0, "loss_sum": 0.0, "count": 0.0}


class Callback:
    """Hooks at epoch start (set `loop.state.stop` to stop before the epoch), step end and epoch end."""

    def before_epoch(self, loop: "Loop") -> None: ...

    def on_step_end(self, loop: "Loop") -> None: ...

    def on_epoch_end(self, loop: "Loop") -> None: ...


def examples(batch: dict) -> int:
    labels = batch.get("labels")
    if labels is None:
        labels = next(iter(batch.values()))
    return len(labels)


def _sum_here(*values: float) -> list[float]:
    return list(values)


@dataclass
class Loop:
    """The training loop (see the module docstring). `optimizer` may be a factory `model -> optimizer`, built
    after the wrappers (FSDP2 replaces parameters); `data` is an iterable reused every epoch or a function
    `(epoch, first_step) -> iterable` of batches or lists of `Piece`s."""

    model: nn.Module
    optimizer: Any
    data: Any
    loss: Loss
    epochs: int
    scheduler: Any = None
    wrappers: Sequence[Callable] = ()
    transforms: Sequence[Callable[[dict, Where], dict]] = ()
    callbacks: Sequence[Callback] = ()
    after_backward: Sequence[Callable[[], Any]] = ()
    after_step: Sequence[Callable[[], Any]] = ()
    empty_step: Callable[[], None] | None = None
    sync: Callable[[bool], Any] | None = None  # gradient sync on the last piece only (DDP no_sync, FSDP2)
    reduce: Callable[..., list[float]] = _sum_here  # sums numbers over ranks
    scaler: Any = None  # torch.amp.GradScaler under fp16 (tamer.device.grad_scaler)
    state: LoopState = field(default_factory=LoopState)
    prepared: bool = False

    def prepare(self) -> "Loop":
        """Apply the wrappers and build the optimizer (once)."""
        if not self.prepared:
            model, optimizer, data = self.model, self.optimizer, self.data
            for wrapper in self.wrappers:
                model, optimizer, data = wrapper(model, optimizer, data)
            if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
                optimizer = optimizer(model)
            self.model, self.optimizer, self.data, self.prepared = model, optimizer, data, True
        return self

    def settle(self) -> None:
        """Add this process's running loss (summed over ranks) to the epoch's: once per checkpoint or epoch."""
        s = self.state
        total, count = self.reduce(s.pending_loss, s.pending_count)
        s.loss_sum += total
        s.count += count
        s.pending_loss = s.pending_count = 0.0

    def batches(self, epoch: int, first: int) -> Iterable:
        if callable(self.data) and not hasattr(self.data, "__iter__"):
            return self.data(epoch, first)
        return itertools.islice(self.data, first, None) if first else self.data

    def run(self) -> LoopState:
        self.prepare()
        s, model, optimizer = self.state, self.model, self.optimizer
        sync = self.sync or (lambda last: contextlib.nullcontext())
        while s.epoch <= self.epochs and not s.stop:
            for cb in self.callbacks:
                cb.before_epoch(self)
            if s.stop:
                break
            model.train()
            for item in self.batches(s.epoch, s.step):
                optimizer.zero_grad(set_to_none=True)
                pieces = item if isinstance(item, list) else [Piece(item)]
                if all(p.batch is None for p in pieces):
                    self.empty_step()  # the mechanism's step for a batch that drew no example
                else:
                    loss_sum, count = 0.0, 0
                    for p in pieces:
                        batch, where = p.batch, Where(s.epoch, s.step, p)
                        with flop_probe(examples(batch), "train_step"):
                            for transform in self.transforms:
                                batch = transform(batch, where)
                            n = examples(batch)
                            with sync(p.last):
                                loss = self.loss(model, batch)
                                weighted = loss if p.weight == 1.0 else loss * p.weight
                                (weighted if self.scaler is None else self.scaler.scale(weighted)).backward()
                        loss_sum += loss.item() * n
                        count += n
                    if self.scaler is not None:
                        self.scaler.unscale_(optimizer)  # the hooks (clipping, L1) see the true gradients
                    for hook in self.after_backward:
                        hook()
                    if self.scaler is None:
                        optimizer.step()
                    else:
                        self.scaler.step(optimizer)  # skipped when a gradient overflowed
                        self.scaler.update()
                    if self.scheduler is not None:
                        self.scheduler.step()
                    for hook in self.after_step:
                        hook()
                    s.pending_loss += loss_sum
                    s.pending_count += count
                s.step += 1
                s.global_step += 1
                for cb in self.callbacks:
                    cb.on_step_end(self)
            self.settle()
            s.seen += s.count
            for cb in self.callbacks:
                cb.on_epoch_end(self)
            s.epoch, s.step, s.loss_sum, s.count = s.epoch + 1, 0, 0.0, 0.0
        return s


class ProgressBar(Callback):
    """A step's progress on a `tamer.progress` bar, with the running loss."""

    def __init__(self, bar, job, label: Callable[[LoopState], str] | None = None):
        self.bar, self.job, self.label = bar, job, label

    def on_step_end(self, loop: Loop) -> None:
        s = loop.state
        if self.label is None:
            self.bar.update(self.job, advance=1)
        else:
            self.bar.update(self.job, advance=1, description=self.label(s))
