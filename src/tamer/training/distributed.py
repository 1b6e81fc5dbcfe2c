"""The process group a training run lives in, and wrapping a model for DDP or FSDP2 (torch.distributed)."""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..device import DTYPES, resolve_device
from ..errors import UsageError
from .memory import checkpoint_blocks, transformer_blocks


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    device: torch.device = torch.device("cpu")
    restart: int = 0  # how many times torchrun has restarted the workers

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def under_torchrun() -> bool:
    """True inside a process started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(timeout_s: float, device: str = "auto") -> World:
    """Join (or reuse) the process group torchrun describes: gloo on CPU, nccl on CUDA (each rank its local GPU).
    One process: no group, on `device` (tamer.device.resolve_device: auto is CUDA when present)."""
    where = resolve_device(device)
    if not under_torchrun():
        return World(device=where)
    if where.type == "mps":
        raise UsageError("--device mps trains in one process; drop --nproc or use --device cpu.")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    if where.type == "cuda":
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))
    if size > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=size, timeout=timeout))
        # torchrun's store outlives a restart: without a per-attempt prefix a restarted rank can read the
        # address a killed peer published and fail to connect to it
        dist.init_process_group(backend, store=dist.PrefixStore(f"tamer/attempt-{restart}", store), rank=rank,
                                world_size=size, timeout=timeout, **({"device_id": device} if backend == "nccl" else {}))
    return World(rank, size, local_rank, local_size, device, restart)


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def agree(world: World, value):
    """Rank 0's value of a picklable object, on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def each_rank(world: World, value) -> list:
    """Every rank's value of a picklable object, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    box = [None] * world.size
    dist.all_gather_object(box, value)
    return box


def blocks(model: nn.Module) -> list[nn.Module]:
    """The units FSDP shards one by one: the transformer blocks (the items of the outermost ModuleLists, the units
    activation checkpointing wraps; a list nested inside a block, such as a mixture of experts, stays in its block,
    since FSDP2 shards bottom-up), else the root's children."""
    found = transformer_blocks(model)
    if found:
        return found
    return [c for c in model.children() if any(True for _ in c.parameters())]


def wrap(model: nn.Module, strategy: str, world: World, precision: str = "fp32", checkpointing: bool = False,
         offload: bool = False) -> nn.Module:
    """DDP (every rank holds everything) or FSDP2 (each block's parameters, gradients and optimizer state sharded),
    after activation checkpointing of the transformer blocks when asked. On GPUs FSDP2 runs at `precision` through
    its MixedPrecisionPolicy (fp32 master weights and gradient reduction) and, with `offload`, keeps shards, gradients
    and optimizer state in CPU memory (CPUOffloadPolicy)."""
    sharded = world.distributed and strategy == "fsdp"
    if offload and not (sharded and world.device.type == "cuda"):
        where = "one process" if not world.distributed else f"--strategy {strategy} on {world.device.type}"
        raise UsageError(f"--offload moves FSDP2's GPU shards to CPU memory, but this run trains with {where}; use "
                         f"--strategy fsdp with --nproc >= 2 on GPUs, or drop --offload.")
    if checkpointing:
        checkpoint_blocks(model)
    if not offload:
        model.to(world.device)
    if not world.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        extra = {}
        if world.device.type == "cuda" and precision != "fp32":  # low-precision compute, fp32 reduction and master weights
            extra["mp_policy"] = MixedPrecisionPolicy(param_dtype=DTYPES[precision], reduce_dtype=torch.float32)
        if offload:
            extra["offload_policy"] = CPUOffloadPolicy()
        for block in blocks(model):
            fully_shard(block, **extra)
        return fully_shard(model, **extra)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)


def plain(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 modifies the module in place)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool):
    """Skip the all-reduce / reduce-scatter of gradients on the inner steps of gradient accumulation."""
    if enabled:
        yield
        return
    if hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def sum_all(world: World, *values: float) -> list[float]:
    """Sum numbers over ranks (loss totals, example counts)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return t.tolist()


def replica_spread(model: nn.Module, world: World) -> float:
    """How far apart the DDP replicas are: max - min over ranks of a weight checksum (0.0 when identical)."""
    with torch.no_grad():
        total = sum(p.detach().double().square().sum() + p.detach().double().sum() for p in model.parameters())
    hi, lo = total.clone().to(world.device), total.clone().to(world.device)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float(hi - lo)


def full_state(model: nn.Module, world: World) -> dict[str, torch.Tensor] | None:
    """The whole model's weights as plain CPU tensors on rank 0 (a collective under FSDP); None on other ranks."""
    if not world.distributed:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().clone() for k, v in state.items()} if world.main else None
