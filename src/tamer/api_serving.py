"""The serving verbs of the composing layer: the FastAPI app of an artifact (opened through `load`, sealed ones in
memory), `tamer serve` on uvicorn, and a worker process's app; `--alias` follows a registry alias. api.py re-exports
them; serve_check, which compares served answers with `predict`, stays in api.py."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .api_base import load
from .config import make_config
from .errors import UsageError


def serve_app(artifact: str | Path, config=None, *, source=None, api_key_file: str | None = None, auth: bool = True,
              key_file: str | None = None, passphrase_env: str | None = None, pin_file: str | None = None, **options):
    """The FastAPI app serving `artifact` (or whatever `source()` names now: a callable re-read on every poll and
    reload, e.g. a registry alias's target), opened through `load` (sealed ones in memory). Keys from
    `api_key_file` (hashed); `auth=False` serves without keys, and must be said."""
    import functools

    from .serving import KeyRing, Pin, ServeConfig, create_app

    config = config or make_config(ServeConfig, options)
    if auth == bool(api_key_file is None):
        raise UsageError("give --api-key-file FILE (make a key with `tamer serve --make-api-key NAME --api-key-file "
                         "FILE`) or serve without keys with --no-auth, not both or neither.")
    keys = KeyRing.load(api_key_file) if auth else None
    opener = functools.partial(load, key_file=key_file, passphrase_env=passphrase_env)
    return create_app(opener, source or (lambda: str(artifact)), config, keys, Pin(pin_file))


def alias_source(alias: str):
    """The source of `serve --alias NAME`: the folder the registry's alias names now, re-read on every poll, so the
    server follows a promotion or a rollback (`tamer update`, `tamer rollback`) without a restart."""
    from .api_maintenance import resolve

    return lambda: str(resolve(alias))


def serve(artifact: str | Path | None = None, config=None, *, alias: str | None = None, api_key_file: str | None = None,
          auth: bool = True, key_file: str | None = None, passphrase_env: str | None = None, announce=None,
          device: str | None = None, precision: str | None = None, **options) -> None:
    """`tamer serve`: open the artifact (or the one the registry's `alias` names) once (a bad path, alias or key
    fails here, exit 2), then serve it until SIGTERM, which drains. With an alias the server polls the registry and
    hot-swaps when the alias moves. With workers > 1 each worker process builds the app from TAMER_SERVE_SETTINGS
    (paths and names, never a secret) and follows reloads through a shared pin file. `announce(url)` is called once
    listening. The model runs on `device` at `precision` (tamer.device; auto and fp32 by default) in every worker."""
    if (artifact is None) == (alias is None):
        raise UsageError("give an artifact folder or --alias NAME (a registry alias such as production), not both or neither.")
    source = alias_source(alias) if alias else None
    artifact = source() if source else artifact
    import json
    import os
    import tempfile

    from .device import for_threads, placed
    from .serving import ServeConfig, run_server
    from .serving.server import bind

    config = config or make_config(ServeConfig, options)
    load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    settings = {"artifact": str(artifact), "config": dataclasses.asdict(config), "api_key_file": api_key_file,
                "auth": auth, "key_file": key_file, "passphrase_env": passphrase_env, "alias": alias}
    with placed(device, precision) as where, for_threads(), tempfile.TemporaryDirectory(prefix="tamer-serve-") as state:
        settings["placement"] = [str(where.device), where.precision]
        settings["pin_file"] = os.path.join(state, "pin")
        app = serve_app(artifact, config, source=source,
                        **{k: v for k, v in settings.items() if k not in ("artifact", "config", "alias", "placement")})
        if config.workers > 1:
            os.environ["TAMER_SERVE_SETTINGS"] = json.dumps(settings)
            app = "tamer.api_serving:serve_worker_app"
        run_server(app, config, bind(config), announce, factory=config.workers > 1)


def serve_worker_app():
    """The app of one `tamer serve --workers K` process, from the settings its parent left in the environment."""
    import json
    import os

    from .device import adopt
    from .serving import ServeConfig

    settings = json.loads(os.environ["TAMER_SERVE_SETTINGS"])
    alias = settings.pop("alias", None)
    adopt(*settings.pop("placement"))  # the parent's --device and --precision, for this worker's threads
    return serve_app(settings.pop("artifact"), make_config(ServeConfig, settings.pop("config")),
                     source=alias_source(alias) if alias else None, **settings)
