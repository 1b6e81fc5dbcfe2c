"""--device and --precision on every subcommand that runs a model (train takes them from TrainConfig), and the
keyword arguments they become for the api's verbs. Part of the face, beside cli.py."""
from __future__ import annotations

import argparse
from typing import Any

# the verbs that run a model besides train (which takes them from TrainConfig, --private included)
MODEL_VERBS = ("evaluate", "predict", "compress", "explain", "attack", "harden", "stability", "serve", "update", "federate")


def device_arguments(p: argparse.ArgumentParser) -> None:
    from .config import add_config_arguments
    from .device import DeviceConfig

    add_config_arguments(p, DeviceConfig)


def placement(args: argparse.Namespace) -> dict[str, Any]:
    """device= and precision= for an api verb (checked there: one sentence when this machine lacks the device)."""
    from .config import config_from_args
    from .device import DeviceConfig

    config = config_from_args(DeviceConfig, args)
    return {"device": config.device, "precision": config.precision}
