"""The `tamer serve` subcommand: its arguments, making API keys, and the call to the serve verb. Part of the face,
beside cli.py."""
from __future__ import annotations

import argparse
import json
import sys

from .config import add_config_arguments, config_from_args
from .errors import UsageError


def serve_arguments(p: argparse.ArgumentParser) -> None:
    from .serving.config import ServeConfig

    p.add_argument("artifact", nargs="?", help="artifact folder to serve (or --alias NAME)")
    p.add_argument("--alias", metavar="NAME", help="serve what the registry's alias names (e.g. production) and follow "
                                                   "it: a promotion or rollback is hot-swapped in at the next poll")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--api-key-file", metavar="FILE",
                      help="hashed API keys, one per line `sha256:<hex> NAME ROLE` (make one with --make-api-key)")
    keys.add_argument("--no-auth", action="store_true", help="serve without keys (say so explicitly)")
    p.add_argument("--make-api-key", metavar="NAME", help="append a new key for NAME to --api-key-file, print it "
                                                          "once, and exit (the file keeps only its hash)")
    p.add_argument("--admin", action="store_true", help="with --make-api-key: the key may also POST /admin/reload")
    p.add_argument("--key-file", help="key file of a sealed artifact (see `tamer keygen`); decrypted in memory")
    p.add_argument("--passphrase-env", help="environment variable holding the passphrase of a sealed artifact")
    add_config_arguments(p, ServeConfig)


def run(args: argparse.Namespace) -> int:
    from . import api
    from .cli_device import placement
    from .serving import ServeConfig, make_api_key

    if args.make_api_key:
        if not args.api_key_file:
            raise UsageError("--make-api-key needs --api-key-file FILE, the file its hash is appended to.")
        key = make_api_key(args.api_key_file, args.make_api_key, "admin" if args.admin else "client")
        payload = {"key": key, "name": args.make_api_key, "role": "admin" if args.admin else "client",
                   "api_key_file": args.api_key_file}
        print(json.dumps(payload) if args.json else
              f"{key}\n(the key for {args.make_api_key}, shown once: {args.api_key_file} keeps only its hash)")
        return 0
    if bool(args.artifact) == bool(args.alias):
        raise UsageError("serve needs an ARTIFACT folder or --alias NAME (a registry alias such as production), "
                         "not both or neither (see `tamer serve --help`).")
    config = config_from_args(ServeConfig, args)

    def announce(url: str) -> None:
        auth = "no keys (--no-auth)" if args.no_auth else f"keys from {args.api_key_file}"
        what = args.artifact or f"alias {args.alias}"
        print(json.dumps({"url": url, "artifact": args.artifact, "alias": args.alias, "auth": not args.no_auth})
              if args.json else f"serving {what} on {url} ({auth}); the page is {url}/, the API docs {url}/docs", flush=True)
        if args.no_auth and not config.host.startswith("127.") and config.host not in ("localhost", "::1"):
            print(f"tamer: warning: serving without keys on {config.host}, reachable beyond this machine.",
                  file=sys.stderr, flush=True)

    api.serve(args.artifact, config, alias=args.alias, api_key_file=args.api_key_file, auth=not args.no_auth, key_file=args.key_file,
              passphrase_env=args.passphrase_env, announce=announce, **placement(args))
    return 0
