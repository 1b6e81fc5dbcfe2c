"""TrainConfig: the options of `tamer train` (one name across Python, CLI and recipes)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..config import check, field
from ..device import DEVICE_HELP, PRECISION_HELP, valid_device_name


@dataclass(frozen=True)
class TrainConfig:
    """Fields left at None take the task's default (see `Task.train_defaults`)."""

    epochs: int | None = field(None, "passes over the training split (task default)")
    batch_size: int | None = field(None, "examples per step (task default)")
    lr: float | None = field(None, "peak learning rate (task default)")
    optimizer: Literal["adamw", "sgd"] = field("adamw", "adamw or sgd (momentum 0.9)")
    weight_decay: float = field(0.01, "decoupled weight decay (adamw) or L2 (sgd)")
    l1: float = field(0.0, "L1 penalty on weights added to the loss")
    scheduler: Literal["cosine", "constant"] = field("cosine", "learning-rate schedule after warm-up")
    warmup: float = field(0.0, "fraction of steps spent warming the learning rate up linearly")
    grad_clip: float = field(0.0, "clip the global gradient norm to this value (0 = off)")
    patience: int = field(5, "stop after this many epochs without a better validation metric (0 = never)")
    seed: int = field(0, "seed for the split, initialisation, shuffling and dropout")
    eval_batch_size: int = field(256, "examples per evaluation step")
    checkpoint_dir: str | None = field(None, "where epoch checkpoints go (default: OUT.checkpoints)")
    resume: bool = field(False, "continue from the last checkpoint in the checkpoint folder")
    checkpoint_every: int = field(0, "also checkpoint every this many optimizer steps (0 = at each epoch's end only)")
    nproc: int = field(1, "worker processes on this machine; > 1 launches through torchrun")
    nnodes: int = field(1, "machines taking part; > 1 needs --rdzv and --node-rank")
    node_rank: int = field(0, "this machine's index among --nnodes (0 hosts the rendezvous)")
    rdzv: str | None = field(None, "HOST:PORT where the machines meet (needed with --nnodes > 1)")
    strategy: Literal["ddp", "fsdp"] = field("ddp", "ddp (replicated) or fsdp (FSDP2, sharded) when several processes train")
    accumulate: int = field(1, "micro-batches per optimizer step; gradients sync only on the last")
    max_restarts: int = field(0, "times torchrun restarts failed workers, resuming from the last checkpoint")
    timeout: float = field(300.0, "seconds a process waits for a missing peer before the job fails")
    augment: str | None = field(None, "on-the-fly augmentation: 'default' or NAME=STRENGTH,... (images: flip, rotate, scale, "
                                      "translate; text: delete, swap, char)")
    device: str = field("auto", DEVICE_HELP + "; under torchrun each rank takes its local GPU")
    precision: Literal["fp32", "bf16", "fp16"] = field("fp32", PRECISION_HELP)
    activation_checkpointing: bool = field(False, "recompute each transformer block's activations in the backward "
                                                  "pass instead of keeping them (less memory, ~1/3 more compute)")
    allocator: Literal["auto", "tcmalloc", "jemalloc", "system"] = field(
        "auto", "memory allocator of the workers --nproc starts: auto (tcmalloc, else jemalloc, where installed: lower "
                "CPU memory than glibc's, steps no slower), tcmalloc, jemalloc or system")
    offload: bool = field(False, "keep FSDP2's parameter shards, gradients and optimizer state in CPU memory "
                                 "(--strategy fsdp on GPUs)")

    def __post_init__(self):
        check(self.epochs is None or self.epochs >= 1, f"--epochs {self.epochs} is out of range; use a whole number >= 1.")
        check(self.batch_size is None or self.batch_size >= 1, f"--batch-size {self.batch_size} is out of range; use a whole number >= 1.")
        check(self.lr is None or self.lr > 0, f"--lr {self.lr} is out of range; use a positive number.")
        check(self.weight_decay >= 0, f"--weight-decay {self.weight_decay} is out of range; use a number >= 0.")
        check(self.l1 >= 0, f"--l1 {self.l1} is out of range; use a number >= 0.")
        check(0 <= self.warmup < 1, f"--warmup {self.warmup} is out of range; use a fraction in [0, 1).")
        check(self.grad_clip >= 0, f"--grad-clip {self.grad_clip} is out of range; use a number >= 0.")
        check(self.patience >= 0, f"--patience {self.patience} is out of range; use a whole number >= 0.")
        check(self.checkpoint_every >= 0, f"--checkpoint-every {self.checkpoint_every} is out of range; use a whole number >= 0.")
        check(1 <= self.nproc <= 1024, f"--nproc {self.nproc} is out of range; use a whole number in 1..1024.")
        check(1 <= self.nnodes <= 1024, f"--nnodes {self.nnodes} is out of range; use a whole number in 1..1024.")
        check(0 <= self.node_rank < self.nnodes, f"--node-rank {self.node_rank} is out of range; use 0..{self.nnodes - 1} (--nnodes {self.nnodes}).")
        check(self.nnodes == 1 or self.rdzv is not None, f"--nnodes {self.nnodes} needs --rdzv HOST:PORT (where the machines meet).")
        check(self.rdzv is None or _is_endpoint(self.rdzv), f"--rdzv {self.rdzv!r} is not accepted; use HOST:PORT, e.g. 10.0.0.1:29500.")
        check(1 <= self.accumulate <= 4096, f"--accumulate {self.accumulate} is out of range; use a whole number in 1..4096.")
        check(0 <= self.max_restarts <= 100, f"--max-restarts {self.max_restarts} is out of range; use a whole number in 0..100.")
        check(self.timeout > 0, f"--timeout {self.timeout} is out of range; use a positive number of seconds.")
        if self.augment is not None:
            from .augment import parse_augment

            parse_augment(self.augment)  # raises ValueError naming the bad part
        check(valid_device_name(self.device), f"--device {self.device!r} is not accepted; use {DEVICE_HELP}.")
        check(not self.offload or self.strategy == "fsdp", "--offload moves FSDP2's shards to CPU memory, so it "
              "needs --strategy fsdp (and several processes on GPUs); drop --offload or add --strategy fsdp.")
        check(self.eval_batch_size >= 1, f"--eval-batch-size {self.eval_batch_size} is out of range; use a whole number >= 1.")


# how a run was launched and placed does not change its weights' recipe (precision does): kept under `run`, outside
# the artifact's id
PLACEMENT_ONLY = ("checkpoint_dir", "resume", "nnodes", "node_rank", "rdzv", "max_restarts", "timeout", "device",
                  "allocator", "activation_checkpointing", "offload")


def recipe_options(config: TrainConfig) -> dict:
    """The options an artifact records as the recipe of its weights (part of its id): all but PLACEMENT_ONLY."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in PLACEMENT_ONLY}


def _is_endpoint(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536
