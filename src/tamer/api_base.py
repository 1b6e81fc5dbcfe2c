"""The base of the composing layer: opening an artifact (sealed ones in memory), where a verb writes by default, and the
wrappers that place a verb on its device and measure what it cost. api.py and its sibling modules (api_maintenance,
api_update, api_serving) build on it and it imports none of them."""
from __future__ import annotations

import datetime as _dt
import functools
from pathlib import Path

from .artifact import Artifact
from .errors import ArtifactError


def on_device(verb):
    """A verb that runs a model takes `device` (auto|cpu|cuda|cuda:N|mps) and `precision` (fp32|bf16|fp16): it runs
    inside tamer.device.placed, and what it cost (tamer.cost.measure) is attached to its report as `cost`. None (the
    default) keeps the placement of the verb or recipe stage that calls it, else auto and fp32."""
    @functools.wraps(verb)
    def run(*args, device: str | None = None, precision: str | None = None, **kwargs):
        from .cost import attach, measure
        from .device import placed

        with placed(device, precision) as where, measure() as meter:
            result = verb(*args, **kwargs)
        return attach(result, {**where.record(), **meter.result()})

    run.__doc__ = (verb.__doc__ or "") + ("\n\n    device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps; "
                                          "precision: fp32, bf16 or fp16 (CUDA). What it cost is the report's `cost`.")
    return run


def costed_train(verb):
    """train (and its torchrun launch) measured; device and precision are TrainConfig options, so they travel to the
    workers, whose FLOP count the artifact records."""
    @functools.wraps(verb)
    def run(*args, **kwargs):
        from .cost import attach, measure

        with measure() as meter:
            artifact = verb(*args, **kwargs)
        if artifact is None:
            return None
        record, ran = dict(meter.result()), artifact.manifest.get("run", {})
        if not record["flops_per_example"] and ran.get("flops_per_example"):
            record["flops_per_example"] = ran["flops_per_example"]  # counted in the torchrun workers
        placement = {"device": ran.get("device", "cpu"), "precision": artifact.manifest.get("options", {}).get("precision", "fp32"),
                     "notes": list(ran.get("notes", [])), "computed_in": list(ran.get("computed_in", []))}
        return attach(artifact, {**placement, **record})

    return run


def load(path: str | Path, key_file: str | None = None, passphrase_env: str | None = None) -> Artifact:
    """Open an artifact folder, verifying its hashes. Given a key, only a sealed artifact opens (decrypted in
    memory): a plain folder is refused, since it may have been swapped in for the sealed one."""
    if key_file or passphrase_env:
        from .protection import is_encrypted, open_encrypted, secret_from_options

        secret = secret_from_options(key_file, passphrase_env)
        if Path(path).is_dir() and not is_encrypted(path):
            raise ArtifactError(f"{str(path)!r} is not a sealed artifact, but a key was given; refusing to open it as "
                                f"plaintext, since a plain folder may have been swapped in for a sealed one (drop the "
                                f"key to open a plain artifact).")
        return open_encrypted(path, secret)
    return Artifact.load(path)


def default_out(task: str, root: str = "artifacts") -> Path:
    return Path(root) / f"{task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
