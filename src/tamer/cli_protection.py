"""The protection subcommands of the `tamer` command (keygen, encrypt, decrypt, scrub): their arguments, and the
verb's call with what it prints. Part of the face, beside cli.py; federate (a training verb) stays there."""
from __future__ import annotations

import argparse
from typing import Any

from .config import add_config_arguments, config_from_args


def keygen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="key file to write (never overwritten)")


def crypt_arguments(verb: str):
    def add(p: argparse.ArgumentParser) -> None:
        from .protection.config import EncryptConfig

        p.add_argument("artifact", help="artifact folder")
        p.add_argument("--out", required=True, help="folder to write")
        add_config_arguments(p, EncryptConfig, skip=("chunk_size",) if verb == "decrypt" else ())

    return add


def scrub_arguments(p: argparse.ArgumentParser) -> None:
    from .protection.config import ScrubConfig

    p.add_argument("input", help="text file: .txt, .tsv, .csv or .jsonl")
    p.add_argument("--out", help="file to write (default: INPUT.scrubbed.EXT)")
    p.add_argument("--restore", metavar="MAPPING", help="undo --mode pseudonymize using its encrypted mapping file")
    add_config_arguments(p, ScrubConfig)


def run(args: argparse.Namespace, progress: bool) -> tuple[dict[str, Any], str]:
    """Call the verb named by `args.verb`: (the --json payload, the text for people)."""
    from . import api

    if args.verb == "keygen":
        path = api.keygen(args.out)
        return {"key_file": str(path)}, f"wrote key {path} (keep it secret; whoever holds it can decrypt)"
    if args.verb == "scrub":
        from .protection.config import ScrubConfig

        result = api.scrub(args.input, config_from_args(ScrubConfig, args), out=args.out, restore=args.restore,
                           progress=progress)
        if args.restore:
            return {"restored": str(result)}, f"restored pseudonyms into {result}"
        return {**result.to_dict(), "lines_per_second": result.lines_per_second}, result.summary()
    from .protection.config import EncryptConfig

    config = config_from_args(EncryptConfig, args, skip=("chunk_size",) if args.verb == "decrypt" else ())
    report = (api.encrypt if args.verb == "encrypt" else api.decrypt)(args.artifact, config, out=args.out)
    return report.to_dict(), report.summary()
