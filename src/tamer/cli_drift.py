"""The `tamer drift` subcommand: its arguments, and the verb's call with what it prints. Part of the face, beside
cli.py."""
from __future__ import annotations

import argparse
from typing import Any

from .config import add_config_arguments, config_from_args


def drift_arguments(p: argparse.ArgumentParser) -> None:
    from .maintenance.drift_config import DriftConfig

    p.add_argument("--reference", required=True, metavar="DATA",
                   help="the data the model was made for: .csv/.tsv table, .txt sentences (or sentence<TAB>label), .npy array")
    p.add_argument("--current", required=True, metavar="DATA", help="the data to test against it, of the same kind")
    p.add_argument("--artifact", help="compare text / arrays through this artifact's embeddings (its penultimate layer)")
    p.add_argument("--out", help="HTML file to write the drift report to (default: none written)")
    p.add_argument("--key-file", help="key file of an encrypted artifact (see `tamer keygen`)")
    p.add_argument("--passphrase-env", help="environment variable holding the passphrase of an encrypted artifact")
    add_config_arguments(p, DriftConfig)


def run(args: argparse.Namespace, progress: bool) -> tuple[dict[str, Any], str]:
    """Call the drift verb: (the --json payload, led by `drift` and `p_value`; the text for people)."""
    from . import api
    from .maintenance.drift_config import DriftConfig
    from .report import write_page

    report = api.drift(args.reference, args.current, config_from_args(DriftConfig, args), artifact=args.artifact,
                       progress=progress, key_file=args.key_file, passphrase_env=args.passphrase_env)
    text = report.summary()
    payload = {"drift": report.drift, "p_value": report.p_value, **report.to_dict(), "metrics": report.gate_metrics()}
    if args.out:
        page = write_page(args.out, [report], title="tamer drift", subtitle=f"{args.current} vs {args.reference}")
        payload["html"] = str(page)
        text += f"\nwrote {page}"
    return payload, text
