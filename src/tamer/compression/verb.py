"""The `compress` verb: distill -> prune -> quantize -> export, each step a child artifact naming its parent."""
from __future__ import annotations

from pathlib import Path

from ..artifact import Artifact
from ..device import current as here
from ..device import note, placed
from ..errors import UsageError, refuse_existing
from .config import CompressConfig
from .distill import distill_step
from .export import export_step
from .prune import prune_step
from .quantize import quantize_step
from .report import CompressReport

STEPS = {"distill": distill_step, "prune": prune_step, "quantize": quantize_step, "export": export_step}


def compress(artifact: Artifact, config: CompressConfig, out: str | Path, progress: bool = True) -> Artifact:
    """Run the steps the config asks for; intermediate steps are written beside `out` as OUT.STEP. Returns the last
    child, its CompressReport (every step) attached as `.report`."""
    steps = config.steps
    if not steps and not config.export:
        raise UsageError("compress was given nothing to do; pass --quantize int8|int4, --prune FRACTION, "
                         "--distill-into SPEC or --export onnx.")
    out = refuse_existing(out)
    chain = steps + (["export"] if config.export else [])
    asked = here()
    if asked.device.type != "cpu" or asked.precision != "fp32":
        note(f"compress ran on the CPU in fp32, not on {asked.device} in {asked.precision}: its int8 kernels, the timing "
             f"that chooses each layer's execution and ONNX Runtime are CPU ones; the child runs on {asked.device} "
             f"when a verb loads it there")
    current, results = artifact, []
    with placed("cpu", "fp32"):
        for i, step in enumerate(chain):
            target = out if i == len(chain) - 1 else out.with_name(f"{out.name}.{step}")
            current, result = STEPS[step](current, config, target, progress)
            results.append(result)
    return current.with_report(CompressReport(parent=str(artifact.path), parent_id=artifact.id,
                                              artifact=str(current.path), id=current.id, steps=results))
