"""The verbs a recipe may name: for each, how its options are checked before anything runs and how it runs."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from .artifact import Artifact
from .errors import UsageError
from .report import Report

@dataclass
class Context:
    """What flows between stages: the task, its options, the latest artifact, the run folder."""

    task: str
    task_options: dict[str, Any]
    out: Path
    progress: bool
    artifact: Artifact | None = None
    sealed: str | None = None  # the encrypt stage's output (and its key, when the stage made one)
    remove_plaintext: bool = False  # the encrypt stage asked to delete the run's plaintext artifacts at the end
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # gate metrics measured on `artifact`
    placement: dict[str, str] = dataclasses.field(default_factory=dict)  # the running stage's device / precision, as given


@dataclass(frozen=True)
class Stage:
    """A verb a recipe may name: how to check its options and how to run it."""

    verb: str
    check: Callable[[Context, dict[str, Any]], None]
    run: Callable[[Context, dict[str, Any], Path], Report]
    # a stage whose gate must pass before it acts (promote): the metrics its gate judges, before it runs
    gate_first: Callable[[Context, dict[str, Any]], dict[str, float]] | None = None
    runs_model: bool = False  # takes `device` / `precision` (its own, else the recipe's); the run places it there
    measured: bool = False  # its verb attaches its own cost (api.on_device, train); the run measures the others


def _train_check(ctx: Context, options: dict[str, Any]) -> None:
    from .api import split_options
    from .tasks import get_task_class, make_task

    _, task_opts = split_options(get_task_class(ctx.task), options)
    make_task(ctx.task, {**ctx.task_options, **task_opts})


def _train_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import train

    ctx.artifact = train(ctx.task, out=folder / "artifact", progress=ctx.progress,
                         **{**ctx.task_options, **ctx.placement, **options})  # TrainConfig's device / precision
    return ctx.artifact.report


@dataclass(frozen=True)
class EvaluateOptions:
    data: str | None = None
    eval_batch_size: int = 256


def _evaluate_check(ctx: Context, options: dict[str, Any]) -> None:
    from .config import make_config

    make_config(EvaluateOptions, options)


def _evaluate_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import evaluate
    from .config import make_config

    opts = make_config(EvaluateOptions, options)
    if ctx.artifact is None:
        raise UsageError("the evaluate stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    return evaluate(ctx.artifact, data=opts.data, eval_batch_size=opts.eval_batch_size)


def _explain_options(options: dict[str, Any]):
    from .config import make_config
    from .explanation.config import ExplainConfig

    config = make_config(ExplainConfig, options)
    if not config.has_source:  # a recipe with no inputs explains the first test examples
        config = dataclasses.replace(config, index=tuple(range(8)))
    return config


def _explain_check(ctx: Context, options: dict[str, Any]) -> None:
    _explain_options(options)


def _explain_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import explain

    if ctx.artifact is None:
        raise UsageError("the explain stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    return explain(ctx.artifact, _explain_options(options), out=folder / "explanation", progress=ctx.progress)


def _compress_check(ctx: Context, options: dict[str, Any]) -> None:
    from .compression.config import CompressConfig
    from .config import make_config

    make_config(CompressConfig, options)


def _compress_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import compress
    from .compression.config import CompressConfig
    from .config import make_config

    if ctx.artifact is None:
        raise UsageError("the compress stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    ctx.artifact = compress(ctx.artifact, make_config(CompressConfig, options), out=folder / "artifact",
                            progress=ctx.progress)
    return ctx.artifact.report


def _robustness_check(config_name: str):
    def check(ctx: Context, options: dict[str, Any]) -> None:
        from . import robustness
        from .config import make_config

        make_config(getattr(robustness, config_name), options)

    return check


def _attack_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import attack

    if ctx.artifact is None:
        raise UsageError("the attack stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    return attack(ctx.artifact, out=folder / "attack", **options)


def _harden_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    from .api import harden

    if ctx.artifact is None:
        raise UsageError("the harden stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    ctx.artifact = harden(ctx.artifact, out=folder / "artifact", progress=ctx.progress, **options)
    return ctx.artifact.report


def _stability_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """The stability report; with `calibrate: true` the calibrated child becomes the run's latest artifact."""
    from .api import stability

    if ctx.artifact is None:
        raise UsageError("the stability stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    result = stability(ctx.artifact, out=folder / "artifact", **options)
    if isinstance(result, Artifact):
        ctx.artifact = result
        return result.report
    return result


def key_dir() -> Path:
    """Where the encrypt stage writes a key it generates: never the run folder that holds the ciphertext.
    $TAMER_KEY_DIR, else $XDG_CONFIG_HOME/tamer/keys, else ~/.config/tamer/keys (made owner-only)."""
    if os.environ.get("TAMER_KEY_DIR"):
        return Path(os.environ["TAMER_KEY_DIR"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "tamer" / "keys"


def _encrypt_options(options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    opts = {k: v for k, v in options.items() if k != "remove_plaintext"}
    remove = options.get("remove_plaintext", False)
    if not isinstance(remove, bool):
        raise UsageError(f"encrypt: remove_plaintext {remove!r} is not accepted; use true or false.")
    return opts, remove


def _encrypt_check(ctx: Context, options: dict[str, Any]) -> None:
    from .config import make_config
    from .protection.config import EncryptConfig

    opts, _ = _encrypt_options(options)
    if not (opts.get("key_file") or opts.get("passphrase_env")):
        opts["key_file"] = "generated"  # the stage writes a new key outside the run folder
    make_config(EncryptConfig, opts)


def _encrypt_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """Seal the latest artifact with the recipe's key_file / passphrase_env; without either, a new key is written
    under `key_dir()` (0600), outside the run folder, and the run's summary says where."""
    from .api import encrypt, keygen
    from .config import make_config
    from .protection.config import EncryptConfig

    if ctx.artifact is None:
        raise UsageError("the encrypt stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    opts, ctx.remove_plaintext = _encrypt_options(options)
    made_key = not (opts.get("key_file") or opts.get("passphrase_env"))
    if made_key:
        keys = key_dir()
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem = f"{ctx.out.resolve().name}-{ctx.artifact.id}"
        candidates = (keys / f"{stem}{f'-{i}' if i else ''}.key" for i in range(1000))
        opts["key_file"] = str(keygen(next(p for p in candidates if not p.exists())))
    report = encrypt(ctx.artifact, make_config(EncryptConfig, opts), out=folder / "artifact.encrypted")
    ctx.sealed = str(folder / "artifact.encrypted") + (f" (new key {opts['key_file']}, owner-only, kept outside the run "
                                                       f"folder: store it apart from the ciphertext)" if made_key else "")
    return report


def plaintext_artifacts(ctx: Context) -> list[Path]:
    """Unencrypted artifact folders this run wrote, then the input artifact when it lies outside the run."""
    found = sorted(p.parent for p in ctx.out.rglob("manifest.json") if not (p.parent / "encryption.json").exists())
    if ctx.artifact is not None and ctx.out.resolve() not in ctx.artifact.path.resolve().parents:
        found.append(ctx.artifact.path)
    return found


def _scrub_check(ctx: Context, options: dict[str, Any]) -> None:
    from .config import make_config
    from .protection.config import ScrubConfig

    opts = {k: v for k, v in options.items() if k != "input"}
    if not (options.get("input") or ctx.task_options.get("data")):
        raise UsageError("the scrub stage needs text data: give `input:` or the recipe's `options: {data: FILE}`.")
    make_config(ScrubConfig, opts)


def _scrub_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """Scrub the task's data file; later stages (train) read the scrubbed copy."""
    from .api import scrub
    from .config import make_config
    from .protection.config import ScrubConfig

    source = Path(options.get("input") or ctx.task_options["data"])
    report = scrub(source, make_config(ScrubConfig, {k: v for k, v in options.items() if k != "input"}),
                   out=folder / source.name, progress=ctx.progress)
    ctx.task_options["data"] = report.out
    return report


def _register_check(ctx: Context, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"tags"})
    if unknown:
        raise UsageError(f"register: option {unknown[0]!r} is not accepted; the register stage takes `tags: {{KEY: VALUE}}`.")
    if not isinstance(options.get("tags", {}), dict):
        raise UsageError(f"register: tags {options['tags']!r} must be a mapping like {{owner: alice}}.")


def _registry_report(ctx: Context, action: str, **more: Any) -> Report:
    from .api import add, lineage, registry
    from .maintenance.report import RegistryReport

    if ctx.artifact is None:
        raise UsageError(f"the {action} stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    row = add(ctx.artifact.path)  # recorded already by the verb that wrote it; again is a no-op (and checks it)
    with registry() as reg:
        url = reg.url
    return RegistryReport(action=action, id=row["id"], registry=url, lineage=lineage(row["id"]),
                          metrics=dict(row["metrics"]), **more)


def _register_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """Record the latest artifact (and its tags) in the registry; the report draws its lineage."""
    from .api import tag

    tags = {str(k): str(v) for k, v in (options.get("tags") or {}).items()}
    if tags and ctx.artifact is not None:
        from .api import add

        tag(add(ctx.artifact.path)["id"], [f"{k}={v}" for k, v in tags.items()])
    return _registry_report(ctx, "register", tags=tags)


def _promote_check(ctx: Context, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"to", "reason"})
    if unknown or not options.get("to"):
        raise UsageError("promote: give `to: ALIAS` (and optionally `reason: TEXT`), like `- promote: {to: production}`.")


def _promote_gate(ctx: Context, options: dict[str, Any]) -> dict[str, float]:
    """What a promote gate judges, before the alias moves: the artifact's own test metrics, then what the stages
    since it was written measured on it."""
    if ctx.artifact is None:
        return dict(ctx.metrics)
    test = ctx.artifact.metrics.get("test", {})
    own = {k: float(v) for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**own, **ctx.metrics}


def _promote_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """Point the alias `to` at the latest artifact (after its gate passed), the move logged in the registry."""
    from .api import add, promote

    if ctx.artifact is None:
        raise UsageError("the promote stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    event = promote(add(ctx.artifact.path)["id"], options["to"], options.get("reason") or f"recipe run {ctx.out.name}")
    return _registry_report(ctx, "promote", alias=options["to"], event=event)


def _drift_options(ctx: Context, options: dict[str, Any]):
    """(reference, current, DriftConfig) of a drift stage; the reference defaults to the recipe's data file."""
    from .config import make_config
    from .maintenance.drift_config import DriftConfig

    rest = {k: v for k, v in options.items() if k not in ("reference", "current")}
    reference = options.get("reference") or ctx.task_options.get("data")
    if not reference or not options.get("current"):
        raise UsageError("the drift stage needs `current: FILE` and a `reference: FILE` (default: the recipe's data).")
    return reference, options["current"], make_config(DriftConfig, rest)


def _drift_check(ctx: Context, options: dict[str, Any]) -> None:
    _drift_options(ctx, options)


def _drift_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """The drift report of `current` against `reference`, through the run's latest artifact's embeddings when there
    is one (text and arrays); gate it with `drift: false` to stop the run when the data has drifted."""
    from .api import drift

    reference, current, config = _drift_options(ctx, options)
    return drift(reference, current, config, artifact=ctx.artifact, progress=ctx.progress)


def _update_check(ctx: Context, options: dict[str, Any]) -> None:
    from .config import make_config
    from .maintenance.update import UpdateConfig

    if not make_config(UpdateConfig, options).data:
        raise UsageError("the update stage needs `data: FILE` (the new data), like `- update: {data: new.npz}`.")


def _update_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """Update an alias with new data (api.update); the artifact the alias names afterwards flows on. Gate it with
    `promoted: '>= 1'` to stop the run when the challenger was refused."""
    from .api import load, resolve, update
    from .config import make_config
    from .maintenance.update import UpdateConfig

    report = update(config=make_config(UpdateConfig, options), out=folder / "challenger", progress=ctx.progress)
    ctx.artifact = load(resolve(report.production))
    return report


def _serve_check_check(ctx: Context, options: dict[str, Any]) -> None:
    from .config import make_config
    from .serving.check import ServeCheckConfig

    make_config(ServeCheckConfig, options)


def _serve_check_run(ctx: Context, options: dict[str, Any], folder: Path) -> Report:
    """The latest artifact served on loopback and checked against predict (serving/check.py)."""
    from .api import serve_check

    if ctx.artifact is None:
        raise UsageError("the serve-check stage needs an artifact; put a train stage before it or set `artifact:` in the recipe.")
    return serve_check(ctx.artifact, **options)


STAGES: dict[str, Stage] = {
    "train": Stage("train", _train_check, _train_run, runs_model=True, measured=True),
    "evaluate": Stage("evaluate", _evaluate_check, _evaluate_run, runs_model=True, measured=True),
    "explain": Stage("explain", _explain_check, _explain_run, runs_model=True, measured=True),
    "compress": Stage("compress", _compress_check, _compress_run, runs_model=True, measured=True),
    "attack": Stage("attack", _robustness_check("AttackConfig"), _attack_run, runs_model=True, measured=True),
    "harden": Stage("harden", _robustness_check("HardenConfig"), _harden_run, runs_model=True, measured=True),
    "stability": Stage("stability", _robustness_check("StabilityConfig"), _stability_run, runs_model=True, measured=True),
    "scrub": Stage("scrub", _scrub_check, _scrub_run),
    "encrypt": Stage("encrypt", _encrypt_check, _encrypt_run),
    "register": Stage("register", _register_check, _register_run),
    "promote": Stage("promote", _promote_check, _promote_run, gate_first=_promote_gate),
    "drift": Stage("drift", _drift_check, _drift_run, runs_model=True),  # through the run's artifact when there is one
    "update": Stage("update", _update_check, _update_run, runs_model=True, measured=True),
    "serve-check": Stage("serve-check", _serve_check_check, _serve_check_run, runs_model=True, measured=True),
}
