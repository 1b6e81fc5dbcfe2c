"""What a verb cost: wall time, CPU seconds, peak resident and accelerator memory, FLOPs per example and energy.

`measure()` opens a meter around a verb (the api does it for every verb that runs a model); `flop_probe` counts the
first forward (`Task.forward`) and the first training step (the loop) it sees with torch's FlopCounterMode. Energy
comes only from counters the machine exposes: Intel RAPL power-capping files (whole CPU packages, every process)
and NVIDIA's NVML (whole GPUs, through pynvml when installed); otherwise it is reported unavailable, with the reason.
torch is imported lazily: a light verb can be measured without loading it.
"""
from __future__ import annotations

import contextlib
import contextvars
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

RAPL_ROOT = Path("/sys/class/powercap")
FLOPS_NOTE = ("matrix multiplications, convolutions and attention that torch.utils.flop_counter knows, one multiply-add "
              "= 2 FLOPs; int8 GEMMs of a compressed model are not counted")


def rapl_read(root: Path = RAPL_ROOT) -> tuple[dict[str, tuple[int, int]] | None, str]:
    """{zone: (energy in uJ, wrap-around range in uJ)} of the top-level RAPL zones (one per CPU package), or None and
    why not."""
    zones = sorted(p for p in Path(root).glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        return None, f"no RAPL power-capping counters under {root}"
    out = {}
    for zone in zones:
        try:
            energy = int((zone / "energy_uj").read_text())
        except PermissionError:
            return None, f"the RAPL counters under {root} are readable only by root on this machine"
        except (OSError, ValueError) as exc:
            return None, f"the RAPL counter {zone / 'energy_uj'} cannot be read ({type(exc).__name__})"
        try:
            span = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            span = 0
        out[zone.name] = (energy, span)
    return out, ""


def rapl_joules(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """Joules between two RAPL readings, summed over zones; a counter that wrapped around adds its range."""
    total = 0
    for zone, (end, span) in after.items():
        start = before.get(zone, (end, span))[0]
        total += end - start if end >= start else end + span - start
    return total / 1e6


def _nvml_read() -> tuple[float | None, str]:
    """Millijoules used by every visible NVIDIA GPU since the driver loaded (NVML, Volta or newer), or None and why."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None, "no CUDA device on this machine (NVML reads NVIDIA GPUs)"
    try:
        import pynvml
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py reads the GPUs' energy counters)"
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        return float(sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
                         for i in range(count))), ""
    except pynvml.NVMLError as exc:
        return None, f"NVML has no energy counter here ({exc})"


def _peak_rss_reset() -> bool:
    """Reset this process's peak resident set size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_now() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory: since the outermost meter reset it (Linux), else since it started."""
    peak = _peak_rss_now()
    return peak if peak is not None else _maxrss_bytes(resource.RUSAGE_SELF)


def _maxrss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, kB on Linux


def _cuda_in_use():
    torch = sys.modules.get("torch")
    return torch if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized() else None


class CostMeter:
    """Stamps taken when a verb starts; `result()` turns them into the cost record."""

    def __init__(self, outermost: bool = True):
        self.flops: dict[str, float] = {}
        self.probing = False
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rss_scope = "this verb" if outermost and _peak_rss_reset() else "this process so far"
        self.rapl0, self.rapl_reason = rapl_read()
        self.nvml0, self.nvml_reason = _nvml_read()
        torch = _cuda_in_use()
        if torch is not None and outermost:
            torch.cuda.reset_peak_memory_stats()
        self.record: dict[str, Any] | None = None

    def result(self) -> dict[str, Any]:
        """The cost record (taken once; later calls return the same)."""
        if self.record is not None:
            return self.record
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (children.ru_utime - self.children0.ru_utime) + (children.ru_stime - self.children0.ru_stime)
        rec: dict[str, Any] = {"wall_s": round(time.perf_counter() - self.t0, 4),
                               "cpu_s": round(time.process_time() - self.cpu0 + child_cpu, 4),
                               "cpu_s_children": round(child_cpu, 4)}
        peak = _peak_rss_now() if self.rss_scope == "this verb" else None
        rec["peak_rss_bytes"] = peak if peak is not None else _maxrss_bytes(resource.RUSAGE_SELF)
        rec["peak_rss_scope"] = self.rss_scope if peak is not None else "this process so far"
        if child_cpu > 0:  # torchrun workers, ...: the largest child's peak
            rec["peak_rss_children_bytes"] = _maxrss_bytes(resource.RUSAGE_CHILDREN)
        torch = _cuda_in_use()
        if torch is not None:
            rec["peak_accelerator_bytes"] = int(torch.cuda.max_memory_allocated())
        else:
            rec["peak_accelerator_bytes"] = None
            rec["peak_accelerator_reason"] = ("no CUDA device on this machine" if sys.modules.get("torch") is None
                                              or not sys.modules["torch"].cuda.is_available()
                                              else "this verb used no CUDA device")
        rec["flops_per_example"] = {k: float(v) for k, v in self.flops.items()}
        rec["flops_note"] = FLOPS_NOTE if self.flops else "no model forward ran under this meter"
        rec.update(self._energy())
        self.record = rec
        return rec

    def _energy(self) -> dict[str, Any]:
        joules, sources, reasons = 0.0, [], []
        if self.rapl0 is not None:
            after, why = rapl_read()
            if after is not None:
                joules += rapl_joules(self.rapl0, after)
                sources.append("RAPL (whole CPU packages, every process)")
            else:
                reasons.append(why)
        else:
            reasons.append(self.rapl_reason)
        if self.nvml0 is not None:
            after_mj, why = _nvml_read()
            if after_mj is not None:
                joules += (after_mj - self.nvml0) / 1e3
                sources.append("NVML (whole GPUs, every process)")
            else:
                reasons.append(why)
        else:
            reasons.append(self.nvml_reason)
        if sources:
            return {"energy_j": round(joules, 3), "energy_source": " + ".join(sources)}
        return {"energy_j": None, "energy_source": "unavailable", "energy_reason": "; ".join(reasons)}


_ACTIVE: contextvars.ContextVar[CostMeter | None] = contextvars.ContextVar("tamer_cost", default=None)


def active() -> CostMeter | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def measure() -> Iterator[CostMeter]:
    """Measure what runs inside; `meter.result()` (after the block) is the cost record. A meter opened inside
    another does not reset the peaks the outer one is watching."""
    meter = CostMeter(outermost=_ACTIVE.get() is None)
    token = _ACTIVE.set(meter)
    try:
        yield meter
    finally:
        _ACTIVE.reset(token)
        meter.result()


def examples_in(batch: dict) -> int:
    """The batch size: the first dimension of its first tensor (0 when it holds none)."""
    for value in batch.values():
        if hasattr(value, "shape") and len(value.shape):
            return int(value.shape[0])
    return 0


def flop_counter():
    """torch.utils.flop_counter.FlopCounterMode counting the whole block without its per-module tracker, whose
    backward hooks make any torch.autograd.grad call inside the block fail (PGD and TRADES take input gradients
    within a training step)."""
    from torch.utils.flop_counter import FlopCounterMode

    class WholeBlockFlopCounter(FlopCounterMode):
        def __enter__(self):
            super().__enter__()
            self.mod_tracker.__exit__()  # its hooks off; every count goes to "Global", the total
            return self

    return WholeBlockFlopCounter(display=False)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of running `fn()` once, by torch.utils.flop_counter.FlopCounterMode (forward, and backward if it runs)."""
    counter = flop_counter()
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def flop_probe(examples: int, kind: str = "forward") -> Iterator[None]:
    """Count the FLOPs of the block per example, once per kind ("forward", "train_step") under the active meter;
    nothing when no meter is open, one is already counting, or this kind is known."""
    meter = _ACTIVE.get()
    if meter is None or meter.probing or kind in meter.flops or examples <= 0:
        yield
        return
    counter = flop_counter()
    meter.probing = True
    try:
        with counter:
            yield
    finally:
        meter.probing = False
    meter.flops[kind] = counter.get_total_flops() / examples


def attach(result: Any, record: dict[str, Any]) -> Any:
    """Put the cost record on a verb's report (`result.report`, or `result` when it is the report)."""
    report = getattr(result, "report", None) or result
    if report is not None and hasattr(report, "to_dict"):
        report.cost = record
    return result


SUMMED = ("wall_s", "cpu_s", "cpu_s_children", "energy_j")
PEAKS = ("peak_rss_bytes", "peak_accelerator_bytes")


def add_up(records: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The run's total over its stages ({stage: cost record}): times and energy summed, peaks the largest, energy
    None when any stage could not measure it."""
    present = [r for r in records.values() if r]
    total: dict[str, Any] = {}
    for key in SUMMED:
        values = [r.get(key) for r in present]
        total[key] = round(sum(values), 4) if values and all(v is not None for v in values) else None
    for key in PEAKS:
        values = [r[key] for r in present if r.get(key) is not None]
        total[key] = max(values) if values else None
    total["stages_measured"] = len(present)
    return total


def per_example(record: dict[str, Any], n: int, unit: str = "example") -> dict[str, Any]:
    """A cost record of `n` examples as the cost of one (times and energy divided; peaks and FLOPs as they are)."""
    out = {**record, "per": unit, "count": n}
    for key in SUMMED:
        if out.get(key) is not None and n:
            out[key] = out[key] / n
    return out
