"""The public verbs behind the CLI and recipes: each takes a task or artifact and options, returns an Artifact or a Report."""
from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact import Artifact
from .config import make_config
from .errors import ArtifactError, UsageError, refuse_existing

if TYPE_CHECKING:
    from .tasks.base import Task
    from .training import EvalReport, TrainConfig

# Each verb imports its capability (and torch) when it is called: `import tamer` and the light verbs (keygen,
# encrypt, decrypt, scrub) never load torch.


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


def list_tasks() -> list[dict[str, Any]]:
    """The registered tasks with their kind, metric and options (the `tamer tasks` command)."""
    from .tasks import get_task_class, task_names

    out = []
    for name in task_names():
        cls = get_task_class(name)
        out.append({"name": name, "description": cls.description, "kind": cls.kind, "metric": cls.metric,
                    "options": {f.name: f.default for f in dataclasses.fields(cls.Config)}})
    return out


def split_options(task_cls: type[Task], options: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """Options naming TrainConfig fields configure training; the rest configure the task."""
    from .training import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    task_fields = {f.name for f in dataclasses.fields(task_cls.Config)}
    train_opts, task_opts = {}, {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name in train_fields:
            train_opts[name] = value
        elif name in task_fields:
            task_opts[name] = value
        else:
            known = sorted(train_fields | task_fields)
            raise UsageError(f"unknown option {key!r} for train {task_cls.name}; accepted: {', '.join(known)}.")
    return make_config(TrainConfig, train_opts), task_opts


def default_out(task: str, root: str = "artifacts") -> Path:
    return Path(root) / f"{task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


def train(task: str | Task = "digits", config: TrainConfig | None = None, *, out: str | Path | None = None,
          progress: bool = True, **options: Any) -> Artifact:
    """Train a task's model and write an artifact. Options are TrainConfig fields and the task's own (e.g. data=...).

    `private=True` (with epsilon, delta, max_grad_norm) trains with DP-SGD instead (protection/privacy.py)."""
    from .protection.config import PrivacyConfig
    from .tasks import Task, get_task_class, make_task
    from .training import TrainConfig
    from .training import train as _train

    privacy_fields = {f.name for f in dataclasses.fields(PrivacyConfig)}
    privacy = make_config(PrivacyConfig, {k: options.pop(k) for k in list(options) if k.replace("-", "_") in privacy_fields})
    if privacy.private:
        return _train_private(task, privacy, out, progress, options)
    if isinstance(task, Task):
        train_config, task_opts = split_options(type(task), options)
        if task_opts:
            raise UsageError(f"options {sorted(task_opts)} configure the task; pass them when you build {type(task).__name__}.")
    else:
        train_config, task_opts = split_options(get_task_class(task), options)
        task = make_task(task, task_opts)
    if config is not None:
        train_config = dataclasses.replace(config, **{k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    return _with_train_report(_train(task, train_config, out or default_out(task.name), show_progress=progress))


def _with_train_report(artifact: Artifact | None) -> Artifact | None:
    """The trained artifact with its TrainReport (PrivacyReport for DP-SGD) attached (on every torchrun rank); None
    only where this process launched torchrun and the artifact was written on another machine."""
    if artifact is None:
        return None
    if "privacy" in artifact.manifest:
        from .protection.privacy import PrivacyReport

        return artifact.with_report(PrivacyReport.from_artifact(artifact))
    from .training import TrainReport

    return artifact.with_report(TrainReport.from_artifact(artifact))


def _train_private(task: str | Task, privacy, out, progress: bool, options: dict[str, Any]) -> Artifact:
    from .protection.privacy import train_private
    from .tasks import Task, make_task
    from .training import TrainConfig

    if isinstance(task, Task):
        train_opts = dict(options)
    else:
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        train_opts = {k: v for k, v in options.items() if k.replace("-", "_") in train_fields}
        task = make_task(task, {k: v for k, v in options.items() if k not in train_opts})
    given = dataclasses.asdict(make_config(TrainConfig, train_opts))  # the same checks and coercion as train
    return _with_train_report(train_private(task, {k: given[k.replace("-", "_")] for k in train_opts}, privacy,
                                            out or default_out(task.name), show_progress=progress))


def evaluate(artifact: str | Path | Artifact, data: str | None = None, eval_batch_size: int = 256,
             key_file: str | None = None, passphrase_env: str | None = None) -> EvalReport:
    """Accuracy, macro-F1 and confusion matrix (classifiers) or perplexity (language models)."""
    from .training import evaluate as _evaluate

    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    return _evaluate(artifact, data, eval_batch_size)


def predict(artifact: str | Path | Artifact, inputs: Any = None, *, index: int | None = None, max_new_tokens: int = 20,
            key_file: str | None = None, passphrase_env: str | None = None) -> list[dict[str, Any]]:
    """One-line inference: labels and probabilities (classifiers) or generated text (causal-lm) for raw `inputs`, or
    for test example `index` of the split the artifact was measured on (its true label added as `expected`)."""
    if (inputs is None) == (index is None):
        raise UsageError("predict takes either inputs (--input TEXT or --input-file FILE) or --index N, not both or neither.")
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    if inputs is not None:
        return artifact.predict(inputs, max_new_tokens)
    task, model = artifact.load_model()
    test = task.splits(artifact.split_seed).test
    if not 0 <= index < len(test):
        raise UsageError(f"--index {index} is outside the test split, which has {len(test)} examples (0 to {len(test) - 1}).")
    batch = task.collate([test[index]])
    if task.kind == "language-model":  # the first half of the test block is the prompt
        half = max(1, int(batch["attention_mask"][0].sum()) // 2)
        batch = {"input_ids": batch["input_ids"][:, :half], "attention_mask": batch["attention_mask"][:, :half]}
    result = task.predict(model, batch, max_new_tokens)
    if task.kind == "classification":
        names = list(getattr(task, "labels", None) or [])
        label = int(batch["labels"][0])
        result[0]["expected"] = names[label] if label < len(names) else str(label)
    return result


# -- protect: keys, encrypted artifacts --------------------------------------------------------------------------
def keygen(out: str | Path) -> Path:
    """Write a new random AES-256 key file (owner-only permissions)."""
    from .protection import write_key_file

    return write_key_file(out)


def encrypt(artifact: str | Path | Artifact, config=None, *, out: str | Path, **options: Any):
    """Seal every file of an artifact with streamed AES-256-GCM; the manifest stays readable, authenticated."""
    from .protection import EncryptConfig, encrypt_artifact, secret_from_options

    config = config or make_config(EncryptConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = Artifact.load(artifact)
    return encrypt_artifact(artifact, out, secret_from_options(config.key_file, config.passphrase_env), config.chunk_size)


def decrypt(path: str | Path, config=None, *, out: str | Path, **options: Any):
    """Restore an encrypted artifact folder exactly; any change, a wrong key or truncation is refused, nothing written."""
    from .protection import EncryptConfig, decrypt_artifact, secret_from_options

    config = config or make_config(EncryptConfig, options)
    return decrypt_artifact(path, out, secret_from_options(config.key_file, config.passphrase_env))


def scrub(path: str | Path, config=None, *, out: str | Path | None = None, restore: str | Path | None = None,
          progress: bool = True, **options: Any):
    """Replace PII in a TXT/TSV/CSV/JSONL file (streamed) and count it; with `restore=MAPPING`, undo pseudonyms."""
    from .protection.config import ScrubConfig
    from .protection.scrub import restore_file, scrub_file

    config = config or make_config(ScrubConfig, options)
    if restore is not None:
        from .protection import secret_from_options

        return restore_file(path, restore, secret_from_options(config.key_file, config.passphrase_env), out)
    return scrub_file(path, out, config, show_progress=progress)


def explain(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None, progress: bool = True,
            key_file: str | None = None, passphrase_env: str | None = None, **options: Any):
    """Attributions (ig, saliency, gradxinput, occlusion, shap, lime) with completeness, faithfulness vs random, a
    weight-randomization sanity check and a per-class global view; writes HTML, JSON and PNGs to `out`.
    A sealed artifact opens with its key_file / passphrase_env."""
    from .explanation import ExplainConfig
    from .explanation import explain as _explain

    config = config or make_config(ExplainConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    return _explain(artifact, config, out or default_out(artifact.task, "explanations"), progress=progress)


def federate(task: str | Task = "digits", config=None, *, out: str | Path | None = None, progress: bool = True,
             **options: Any) -> Artifact:
    """Federated averaging over simulated clients (FederateConfig fields), optionally with client-level DP
    (private, epsilon, delta; each client's update clipped to max_update_norm); other options configure the task."""
    from .protection.config import PrivacyConfig
    from .protection.federated import FederateConfig
    from .protection.federated import federate as _federate
    from .tasks import Task, make_task

    names = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    pick = lambda cls: {k: options.pop(k) for k in list(options) if k.replace("-", "_") in names(cls)}  # noqa: E731
    if "max_grad_norm" in {k.replace("-", "_") for k in options}:
        raise UsageError("federate clips each client's update, not each example's gradient: pass max_update_norm "
                         "(--max-update-norm) instead of max_grad_norm.")
    privacy = make_config(PrivacyConfig, pick(PrivacyConfig))
    fed = pick(FederateConfig)
    config = dataclasses.replace(config, **fed) if config is not None else make_config(FederateConfig, fed)
    if not isinstance(task, Task):
        task = make_task(task, options)
    elif options:
        raise UsageError(f"options {sorted(options)} configure the task; pass them when you build {type(task).__name__}.")
    from .protection.federated import FederateReport

    artifact = _federate(task, config, out or default_out(task.name), privacy, show_progress=progress)
    return artifact.with_report(FederateReport.from_artifact(artifact))


def compress(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None, progress: bool = True,
             key_file: str | None = None, passphrase_env: str | None = None, **options: Any):
    """Quantize (int8 / int4), prune, distill and/or export an artifact (CompressConfig fields as options).

    Returns the last child artifact written, what each step measured attached as `.report` (a CompressReport). With
    key_file / passphrase_env the input may be sealed and every child is sealed with the same secret (a key given
    means sealed output): they are written to a private temporary folder beside `out`, sealed, and removed."""
    from .compression import CompressConfig
    from .compression import compress as _compress

    config = config or make_config(CompressConfig, options)
    return _child_verb(_compress, artifact, config, out, progress, key_file, passphrase_env)


def _child_verb(verb, artifact, config, out, progress: bool, key_file: str | None, passphrase_env: str | None) -> Artifact:
    """Run a verb that writes a child of `artifact` (opened with the secret when it is sealed); a key given means
    the child is sealed too: written to a private temporary folder beside `out`, sealed, and removed."""
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    out = Path(out or default_out(artifact.task))
    if not (key_file or passphrase_env):
        return verb(artifact, config, out, progress=progress)
    return _sealed_children(lambda target: verb(artifact, config, target, progress=progress), out, key_file,
                            passphrase_env)


def _sealed_children(write, out: Path, key_file: str | None, passphrase_env: str | None):
    """Run `write(folder)` (it writes `folder` and maybe siblings `folder.STEP`) in a private temporary folder, then
    seal each artifact it wrote to the same name beside `out`; the plaintext is removed whatever happens (SIGTERM
    included, through the CLI's handler)."""
    import shutil
    import tempfile

    from .protection import encrypt_artifact, secret_from_options

    secret = secret_from_options(key_file, passphrase_env)
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tamer-sealing-", dir=out.parent))  # owner-only
    try:
        report = write(work / out.name).report
        written = sorted(p for p in work.iterdir() if (p / "manifest.json").is_file())
        targets = [out.with_name(p.name) for p in written]
        for target in targets:
            refuse_existing(target)
        for folder, target in zip(written, targets):
            encrypt_artifact(Artifact.load(folder), target, secret)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.artifact = str(out)
    return load(out, key_file=key_file, passphrase_env=passphrase_env).with_report(report)


# -- robustness: attack, harden, stability --------------------------------------------------------------------------
def attack(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None, key_file: str | None = None,
           passphrase_env: str | None = None, **options: Any):
    """Adversarial examples against an artifact (fgsm, pgd, square, noise on images; charflip, wordswap on texts):
    an AttackReport with clean_accuracy, robust_accuracy, success_rate and mean_perturbation; with `out`, its HTML
    and JSON are written there."""
    from .robustness import AttackConfig
    from .robustness import attack as _attack

    config = config or make_config(AttackConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    return _attack(artifact, config, out)


def harden(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None, progress: bool = True,
           key_file: str | None = None, passphrase_env: str | None = None, **options: Any) -> Artifact:
    """Adversarial fine-tuning (pgd: Madry et al. 2018; trades: Zhang et al. 2019) through the training loop: a child
    artifact naming its parent, clean and robust accuracy in its metrics, a HardenReport attached."""
    from .robustness import HardenConfig
    from .robustness import harden as _harden

    config = config or make_config(HardenConfig, options)
    return _child_verb(_harden, artifact, config, out, progress, key_file, passphrase_env)


def stability(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None,
              key_file: str | None = None, passphrase_env: str | None = None, **options: Any):
    """Flip rate under noise, agreement with `against` artifacts, expected calibration error: a StabilityReport; with
    calibrate=True, the temperature-scaled child artifact written to `out` (default artifacts/TASK-TIME), its report
    attached."""
    from .robustness import StabilityConfig
    from .robustness import stability as _stability

    config = config or make_config(StabilityConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    others = [load(p) for p in config.against]
    if not config.calibrate:
        return _stability(artifact, config, others)
    out = Path(out or default_out(artifact.task))
    if not (key_file or passphrase_env):
        return _stability(artifact, config, others, out)
    child = _sealed_children(lambda target: _stability(artifact, config, others, target), out, key_file, passphrase_env)
    child.report.calibration["artifact"], child.report.artifact = str(out), str(artifact.path)
    return child  # sealed with the input's secret, as compress does


# -- serving ----------------------------------------------------------------------------------------------------------
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


def serve(artifact: str | Path, config=None, *, api_key_file: str | None = None, auth: bool = True,
          key_file: str | None = None, passphrase_env: str | None = None, announce=None, **options) -> None:
    """`tamer serve`: open the artifact once (a bad path or key fails here, exit 2), then serve it until SIGTERM,
    which drains. With workers > 1 each worker process builds the app from TAMER_SERVE_SETTINGS (paths and names,
    never a secret) and follows reloads through a shared pin file. `announce(url)` is called once listening."""
    import json
    import os
    import tempfile

    from .serving import ServeConfig, run_server
    from .serving.server import bind

    config = config or make_config(ServeConfig, options)
    load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    settings = {"artifact": str(artifact), "config": dataclasses.asdict(config), "api_key_file": api_key_file,
                "auth": auth, "key_file": key_file, "passphrase_env": passphrase_env}
    with tempfile.TemporaryDirectory(prefix="tamer-serve-") as state:
        settings["pin_file"] = os.path.join(state, "pin")
        app = serve_app(artifact, config, **{k: v for k, v in settings.items() if k not in ("artifact", "config")})
        if config.workers > 1:
            os.environ["TAMER_SERVE_SETTINGS"] = json.dumps(settings)
            app = "tamer.api:serve_worker_app"
        run_server(app, config, bind(config), announce, factory=config.workers > 1)


def serve_check(artifact: str | Path | Artifact, config=None, *, key_file: str | None = None,
                passphrase_env: str | None = None, **options):
    """The `serve-check` stage: the artifact behind `tamer serve` on a free loopback port, real requests with a key,
    each answer compared with `predict` on the same inputs; a ServeCheckReport with latency percentiles."""
    import tempfile

    from .serving import ServeConfig, make_api_key
    from .serving.check import ServeCheckConfig, run_check, sample_inputs

    config = config or make_config(ServeCheckConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    inputs = sample_inputs(artifact, min(config.requests, 64))
    with tempfile.TemporaryDirectory(prefix="tamer-serve-check-") as keys:
        key = make_api_key(Path(keys) / "keys", "serve-check")
        app = serve_app(artifact.path, ServeConfig(max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
                                                   poll_seconds=0), api_key_file=str(Path(keys) / "keys"),
                        key_file=key_file, passphrase_env=passphrase_env)
        return run_check(app, key, inputs, predict(artifact, inputs), config, artifact)


def serve_worker_app():
    """The app of one `tamer serve --workers K` process, from the settings its parent left in the environment."""
    import json
    import os

    from .serving import ServeConfig

    settings = json.loads(os.environ["TAMER_SERVE_SETTINGS"])
    return serve_app(settings.pop("artifact"), make_config(ServeConfig, settings.pop("config")), **settings)
