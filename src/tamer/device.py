"""Where a verb runs and in what precision: `--device auto|cpu|cuda|cuda:N|mps`, `--precision fp32|bf16|fp16`.

One resolution function (`resolve_device`), one placement per verb (`placed`, a context the api opens around the
verb), and one autocast (`autocast`). The model is moved when an artifact loads it (`place_model`); batches follow
the model's device in `Task.to_device`, never in each caller.
"""
from __future__ import annotations

import contextlib
import functools
import contextvars
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
from torch import nn

from .config import check
from .config import field as option
from .errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps"
PRECISION_HELP = "fp32, bf16 (autocast; CPU too) or fp16 (autocast with a gradient scaler; CUDA only)"
_USE = f"use {DEVICE_HELP}"


def valid_device_name(spec: str) -> bool:
    """The syntax alone (availability is checked by `resolve_device` where the verb runs)."""
    head, _, index = str(spec).partition(":")
    if head == "cuda" and index:
        return index.isdigit()
    return spec in ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> cuda when present, else cpu; an explicit device that this machine lacks is a UsageError."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = "auto" if spec is None else str(spec).strip()
    if not valid_device_name(spec):
        raise UsageError(f"--device {spec!r} is not accepted; {_USE}.")
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec} asks for CUDA, but this machine has no CUDA device (or this torch build "
                             f"has no CUDA); use --device cpu or auto.")
        index = int(spec.partition(":")[2] or torch.cuda.current_device())
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec} names GPU {index}, but this machine has {torch.cuda.device_count()} "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
        return torch.device("cuda", index)
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps asks for Apple's Metal GPU, which this machine does not have; use --device cpu or auto.")
    return torch.device(spec)


def check_precision(precision: str, device: torch.device) -> str:
    """`precision` if `device` runs it; fp16 autocast is a CUDA feature (on CPU it would be slow and unscaled)."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not accepted; use {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device (it runs on {device.type} here); use bf16, which CPUs "
                         f"run under autocast, or fp32.")
    return precision


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic itself (x86 AVX512-BF16 or AMX, Arm's BF16 extension, read from Linux's
    /proc/cpuinfo); elsewhere autocast converts every bf16 tensor for fp32 kernels and only slows the run down."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = {word for line in f if line.startswith(("flags", "Features")) for word in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


BF16_EMULATED = ("this CPU has no bf16 arithmetic (no AVX512-BF16, AMX or Arm BF16): bf16 runs converted to fp32 kernels, "
                 "slower than fp32 (6-17x in bench/scale.py on such a CPU) with the same results; it pays on GPUs and on "
                 "CPUs that have it")


@dataclass(frozen=True)
class Placement:
    """The device and precision a verb runs at, what it had to give up there (`notes`, for the report), and the
    dtypes its model's outputs actually came out in (`computed`: what autocast did, observed in Task.forward)."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    notes: list[str] = field(default_factory=list)
    computed: set[str] = field(default_factory=set, compare=False)

    def record(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "notes": list(self.notes),
                "computed_in": sorted(self.computed)}


_CURRENT: contextvars.ContextVar[Placement | None] = contextvars.ContextVar("tamer_placement", default=None)
_THREADS: list[Placement] = []  # placements shared with threads that do not inherit context variables (for_threads)


def running() -> Placement | None:
    """The placement of the verb running now, or the one shared with this thread (for_threads, adopt); None outside."""
    return _CURRENT.get() or (_THREADS[-1] if _THREADS else None)


def current() -> Placement:
    """The placement of the verb running now; CPU and fp32 outside any (a capability called directly)."""
    return running() or Placement()


@contextlib.contextmanager
def placed(device: str | torch.device | None = None, precision: str | None = None) -> Iterator[Placement]:
    """Run what is inside on `device` at `precision` (resolved and checked here, one sentence when refused). None
    keeps the enclosing verb's (a verb that calls another, a recipe stage), else auto and fp32."""
    outer = running()
    if device is None and outer is not None:
        where = outer.device
    else:
        where = resolve_device(device)
    precision = precision or (outer.precision if outer is not None else "fp32")
    notes = [BF16_EMULATED] if where.type == "cpu" and precision == "bf16" and not cpu_has_bf16() else []
    token = _CURRENT.set(Placement(where, check_precision(precision, where), notes))
    inner = _CURRENT.get()
    try:
        yield inner
    finally:
        _CURRENT.reset(token)
        if outer is not None:  # what ran inside ran for the enclosing verb too
            outer.computed.update(inner.computed)


@contextlib.contextmanager
def for_threads() -> Iterator[Placement]:
    """The current placement also for threads started inside, which do not inherit context variables: a server's
    event loop and its model thread (`serve`, the serve-check stage). Process-wide while it lasts."""
    placement = current()
    _THREADS.append(placement)
    try:
        yield placement
    finally:
        _THREADS.remove(placement)


def adopt(device: str | torch.device | None = None, precision: str | None = None) -> Placement:
    """This process's placement from now on, in every thread: for a process that does one thing, such as a
    `tamer serve --workers K` worker (its event loop and model thread do not inherit context variables)."""
    with placed(device, precision) as placement:
        pass
    _THREADS.insert(0, placement)
    return placement


def computed(dtype: torch.dtype) -> None:
    """Record, on the placement of the verb running now, a dtype its model's output came out in (Task.forward)."""
    placement = running()
    if placement is not None and dtype.is_floating_point:
        placement.computed.add(str(dtype).removeprefix("torch."))


def note(text: str) -> None:
    """Tell the report of the verb running now something about where it ran (a layer dequantized, ...)."""
    placement = running()
    if placement is not None and text not in placement.notes:
        placement.notes.append(text)


def model_device(model: nn.Module) -> torch.device:
    """Where `model`'s weights are: its first parameter's or buffer's device (cpu for a model with neither). A
    wrapped model (`compression.compiled(model)`, a function that `functools.wraps` it) or a bound method of one is
    looked through."""
    while not isinstance(model, nn.Module) and hasattr(model, "__wrapped__"):
        model = model.__wrapped__
    model = getattr(model, "__self__", model)
    if not isinstance(model, nn.Module):
        return torch.device("cpu")
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def place_model(model: nn.Module) -> nn.Module:
    """`model` moved to the current placement's device (a no-op on CPU, where models are built)."""
    device = current().device
    return model if model_device(model) == device else model.to(device)


def autocast(device: torch.device, precision: str | None = None):
    """torch.autocast at `precision` (the current placement's when None) on `device`; nothing for fp32."""
    precision = precision or current().precision
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device):
    """A gradient scaler for fp16 (small gradients would underflow to zero), None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


@dataclass(frozen=True)
class DeviceConfig:
    """--device and --precision for the verbs that run a model (train carries the same two in TrainConfig)."""

    device: str = option("auto", DEVICE_HELP)
    precision: Literal["fp32", "bf16", "fp16"] = option("fp32", PRECISION_HELP)

    def __post_init__(self):
        check(valid_device_name(self.device), f"--device {self.device!r} is not accepted; {_USE}.")
