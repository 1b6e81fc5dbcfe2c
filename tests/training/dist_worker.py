"""A torchrun worker for the distributed tests: trains a dropout-free digits model through `tamer.train`.

Dropout masks depend on the rank, so equivalence with one process needs a model without dropout.
Usage: torchrun ... dist_worker.py '{"out": "...", "options": {...}, "fail_at_step": null, "ids": null}'
With "ids": FOLDER each rank writes what `tamer.train` returned to it (the artifact's id, path and whether it carries
its TrainReport) to FOLDER/rank<N>.json.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from torch import nn

import tamer
from tamer.tasks import register_task
from tamer.tasks.digits import DigitsTask

SMALL = {"channels": 4, "hidden": 16}


@register_task
class NoDropDigits(DigitsTask):
    name = "digits-nodrop"

    def build_model(self, model_config):
        model = super().build_model(model_config)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return model


def small_task() -> NoDropDigits:
    return NoDropDigits(NoDropDigits.Config(**SMALL))


def run(out: str, options: dict, fail_at_step: int | None = None):
    task = small_task()
    if fail_at_step is not None:  # every rank stops at the same training step, as if the job were killed
        calls = {"n": 0}
        loss = task.loss

        def failing_loss(outputs, batch):
            if outputs.requires_grad:
                calls["n"] += 1
                if calls["n"] > fail_at_step:
                    raise SystemExit(3)
            return loss(outputs, batch)

        task.loss = failing_loss
    return tamer.train(task, out=out, progress=False, **options)


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    artifact = run(spec["out"], spec["options"], spec.get("fail_at_step"))
    if spec.get("ids"):
        got = None if artifact is None else {"id": artifact.id, "path": str(artifact.path),
                                             "report": type(artifact.report).__name__}
        (Path(spec["ids"]) / f"rank{os.environ['RANK']}.json").write_text(json.dumps(got))
