"""The public verbs behind the CLI and recipes: each takes a task or artifact and options, returns an Artifact or a Report."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api_base import costed_train, default_out, load, on_device  # noqa: F401  (re-exported: tamer.load, ...)
from .api_maintenance import (add, catalogue, drift, history, lineage, promote, record, record_children,  # noqa: F401
                              registry, resolve, rollback, show, tag)
from .api_serving import serve, serve_app, serve_worker_app  # noqa: F401  (re-exported: tamer.serve)
from .api_training import federate, split_options, train  # noqa: F401  (re-exported: tamer.train, ...)
from .artifact import Artifact
from .config import make_config
from .errors import UsageError, refuse_existing

if TYPE_CHECKING:
    from .training import EvalReport

# Each verb imports its capability (and torch) when it is called: `import tamer` and the light verbs (keygen,
# encrypt, decrypt, scrub) never load torch.


def list_tasks() -> list[dict[str, Any]]:
    """The registered tasks with their kind, metric and options (the `tamer tasks` command)."""
    from .tasks import get_task_class, task_names

    out = []
    for name in task_names():
        cls = get_task_class(name)
        out.append({"name": name, "description": cls.description, "kind": cls.kind, "metric": cls.metric,
                    "options": {f.name: f.default for f in dataclasses.fields(cls.Config)}})
    return out


@on_device
def evaluate(artifact: str | Path | Artifact, data: str | None = None, eval_batch_size: int = 256,
             key_file: str | None = None, passphrase_env: str | None = None) -> EvalReport:
    """Accuracy, macro-F1 and confusion matrix (classifiers) or perplexity (language models)."""
    from .training import evaluate as _evaluate

    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    return _evaluate(artifact, data, eval_batch_size)


@on_device
def predict(artifact: str | Path | Artifact, inputs: Any = None, *, index: int | None = None, max_new_tokens: int = 20,
            key_file: str | None = None, passphrase_env: str | None = None, with_cost: bool = False) -> list[dict[str, Any]]:
    """One-line inference: labels and probabilities (classifiers) or generated text (causal-lm) for raw `inputs`, or
    for test example `index` of the split the artifact was measured on (its true label added as `expected`).
    `with_cost=True` returns (predictions, the cost of one prediction: tamer.cost.per_example, loading excluded)."""
    if (inputs is None) == (index is None):
        raise UsageError("predict takes either inputs (--input TEXT or --input-file FILE) or --index N, not both or neither.")
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    from .cost import measure, per_example
    from .device import current

    task, model = artifact.load_model()
    with measure() as meter:  # one prediction's cost: encoding and the model, loading excluded
        if inputs is not None:
            batch = task.encode(inputs)
        else:
            test = task.splits(artifact.split_seed).test
            if not 0 <= index < len(test):
                raise UsageError(f"--index {index} is outside the test split, which has {len(test)} examples (0 to {len(test) - 1}).")
            batch = task.collate([test[index]])
            if task.kind == "language-model":  # the first half of the test block is the prompt
                half = max(1, int(batch["attention_mask"][0].sum()) // 2)
                batch = {"input_ids": batch["input_ids"][:, :half], "attention_mask": batch["attention_mask"][:, :half]}
        result = task.predict(model, batch, max_new_tokens)
    if index is not None and task.kind == "classification":
        names = list(getattr(task, "labels", None) or [])
        label = int(batch["labels"][0])
        result[0]["expected"] = names[label] if label < len(names) else str(label)
    if with_cost:
        return result, {**current().record(), **per_example(meter.result(), len(result), "prediction")}
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
    report = encrypt_artifact(artifact, out, secret_from_options(config.key_file, config.passphrase_env), config.chunk_size)
    record(*([] if artifact.in_memory else [(artifact, artifact.path, False)]), (artifact, out, True))
    return report


def decrypt(path: str | Path, config=None, *, out: str | Path, **options: Any):
    """Restore an encrypted artifact folder exactly; any change, a wrong key or truncation is refused, nothing written."""
    from .protection import EncryptConfig, decrypt_artifact, secret_from_options

    config = config or make_config(EncryptConfig, options)
    report = decrypt_artifact(path, out, secret_from_options(config.key_file, config.passphrase_env))
    plain = Artifact.load(out)
    record((plain, out, False), (plain, path, True))
    return report


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


@on_device
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


@on_device
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
    inherited = {k: artifact.manifest[k] for k in INHERITED if artifact.manifest.get(k) is not None}
    if inherited:
        verb, artifact = _inheriting(verb, inherited), artifact.without(*inherited)
    if not (key_file or passphrase_env):
        child = verb(artifact, config, out, progress=progress)
    else:
        child = _sealed_children(lambda target: verb(artifact, config, target, progress=progress), out, key_file,
                                 passphrase_env)
    record_children(child, sealed=bool(key_file or passphrase_env))
    return child


# manifest keys that act on the model's output rather than its weights (a calibrated temperature): a child written
# from such an artifact (compress, harden) gets them too, while the capability itself works on the bare weights
INHERITED = ("temperature",)


def _inheriting(verb, inherited: dict[str, Any]):
    """`verb`, then `inherited` added to the manifest of every child it wrote (OUT and the new OUT.STEP siblings),
    parent to child, so a quantized or hardened copy of a calibrated model keeps dividing its logits by T."""
    from .artifact import amend_lineage

    def run(artifact: Artifact, config, out: Path, progress: bool = True) -> Artifact:
        siblings = lambda: {p for p in out.parent.glob(f"{out.name}.*") if p.is_dir()}  # noqa: E731
        before = siblings() if out.parent.is_dir() else set()
        child = verb(artifact, config, out, progress=progress)
        amend_lineage(artifact.id, [*sorted(siblings() - before), out], inherited)
        return Artifact.load(out).with_report(child.report)

    return run


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
@on_device
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


@on_device
def harden(artifact: str | Path | Artifact, config=None, *, out: str | Path | None = None, progress: bool = True,
           key_file: str | None = None, passphrase_env: str | None = None, **options: Any) -> Artifact:
    """Adversarial fine-tuning (pgd: Madry et al. 2018; trades: Zhang et al. 2019) through the training loop: a child
    artifact naming its parent, clean and robust accuracy in its metrics, a HardenReport attached."""
    from .robustness import HardenConfig
    from .robustness import harden as _harden

    config = config or make_config(HardenConfig, options)
    return _child_verb(_harden, artifact, config, out, progress, key_file, passphrase_env)


@on_device
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
        child = _stability(artifact, config, others, out)
        record((child, child.path, False))
        return child
    child = _sealed_children(lambda target: _stability(artifact, config, others, target), out, key_file, passphrase_env)
    child.report.calibration["artifact"], child.report.artifact = str(out), str(artifact.path)
    record((child, out, True))
    return child  # sealed with the input's secret, as compress does


# -- maintenance: update --------------------------------------------------------------------------------------------
@on_device
def update(alias: str = "production", data: str | Path | None = None, config=None, *, out: str | Path | None = None,
           progress: bool = True, **options: Any):
    """Keep `alias` current (api_update.py): drift of `data` against the champion's data, a challenger fine-tuned
    from the champion, both scored on the new and the old test splits, promoted only when every gate passes (the
    registry's event log says why either way). Returns an UpdateReport."""
    from .api_update import update as _update
    from .maintenance.update import UpdateConfig

    config = config or make_config(UpdateConfig, {"alias": alias, "data": None if data is None else str(data), **options})
    with registry() as reg:
        return _update(config, reg, attack=lambda artifact, opts: attack(artifact, **opts), out=out, progress=progress)


# -- serving (api_serving.py) ---------------------------------------------------------------------------------------
@on_device
def serve_check(artifact: str | Path | Artifact, config=None, *, key_file: str | None = None,
                passphrase_env: str | None = None, **options):
    """The `serve-check` stage: the artifact behind `tamer serve` on a free loopback port, real requests with a key,
    each answer compared with `predict` on the same inputs; a ServeCheckReport with latency percentiles. The server's
    threads run at the verb's device and precision (tamer.device.for_threads), as `tamer serve --device` does."""
    import tempfile

    from .device import for_threads
    from .serving import ServeConfig, make_api_key
    from .serving.check import ServeCheckConfig, run_check, sample_inputs

    config = config or make_config(ServeCheckConfig, options)
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    inputs = sample_inputs(artifact, min(config.requests, 64))
    with tempfile.TemporaryDirectory(prefix="tamer-serve-check-") as keys, for_threads():
        key = make_api_key(Path(keys) / "keys", "serve-check")
        app = serve_app(artifact.path, ServeConfig(max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
                                                   poll_seconds=0), api_key_file=str(Path(keys) / "keys"),
                        key_file=key_file, passphrase_env=passphrase_env)
        return run_check(app, key, inputs, predict(artifact, inputs), config, artifact)
