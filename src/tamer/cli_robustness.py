"""The robustness subcommands of the `tamer` command (attack, harden, stability): their arguments, and the verb's
call with what it prints. Part of the face, beside cli.py (which stays one screenful per verb)."""
from __future__ import annotations

import argparse
from typing import Any

from .config import add_config_arguments, config_from_args


def _artifact_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("artifact", help="artifact folder")
    p.add_argument("--out", help=out_help)
    p.add_argument("--key-file", help="key file of an encrypted artifact (see `tamer keygen`)")
    p.add_argument("--passphrase-env", help="environment variable holding the passphrase of an encrypted artifact")


def attack_arguments(p: argparse.ArgumentParser) -> None:
    from .robustness.config import AttackConfig

    _artifact_arguments(p, "folder for attack.html and attack.json (default: none written)")
    add_config_arguments(p, AttackConfig)


def harden_arguments(p: argparse.ArgumentParser) -> None:
    from .robustness.config import HardenConfig

    _artifact_arguments(p, "child artifact folder to write (default: artifacts/TASK-TIME)")
    add_config_arguments(p, HardenConfig)


def stability_arguments(p: argparse.ArgumentParser) -> None:
    from .robustness.config import StabilityConfig

    _artifact_arguments(p, "with --calibrate: the calibrated child artifact folder (default: artifacts/TASK-TIME)")
    add_config_arguments(p, StabilityConfig, skip=("against",))
    p.add_argument("--against", nargs="+", action="extend", metavar="OTHER",
                   help="other artifacts (a reseeded or compressed model) to measure agreement with")


def run(args: argparse.Namespace, progress: bool) -> tuple[dict[str, Any], str]:
    """Call the verb named by `args.verb`: (the --json payload, the text for people)."""
    from . import api
    from .robustness.config import AttackConfig, HardenConfig, StabilityConfig

    from .cli_device import placement

    sealed = {"key_file": args.key_file, "passphrase_env": args.passphrase_env, **placement(args)}
    if args.verb == "attack":
        report = api.attack(args.artifact, config_from_args(AttackConfig, args), out=args.out, **sealed)
        return {**report.to_dict(), "metrics": report.gate_metrics()}, report.summary()
    if args.verb == "harden":
        child = api.harden(args.artifact, config_from_args(HardenConfig, args), out=args.out, progress=progress, **sealed)
        report = child.report
        return ({"artifact": str(child.path), "id": child.id, **report.after, **report.to_dict(),
                 "metrics": report.gate_metrics()}, report.summary())
    result = api.stability(args.artifact, config_from_args(StabilityConfig, args), out=args.out, **sealed)
    report = getattr(result, "report", result)
    child = {"artifact": str(result.path), "id": result.id} if report is not result else {}
    return {**child, **report.to_dict(), "metrics": report.gate_metrics()}, report.summary()
