"""The registry verbs of the public API (registry, promote, rollback, tag, lineage, history, resolve) and `record`,
which every verb of api.py that writes an artifact calls: part of the composing layer, beside api.py (which
re-exports them), so no capability imports the registry.

A verb whose artifact cannot be recorded (registry unreachable, file read-only) still returns its artifact: the
model is kept and a one-line warning on stderr says how to record it later (`tamer registry add PATH`). The
registry commands themselves refuse an unreachable registry in one sentence, exit code 2."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import ArtifactError, UsageError

if TYPE_CHECKING:
    from .artifact import Artifact
    from .maintenance import Registry

OFF = ("none", "off")  # TAMER_REGISTRY_URL=none: verbs record nothing (a read-only place, a throwaway run)


def registry(url: str | None = None) -> Registry:
    """The registry at `url`, else $TAMER_REGISTRY_URL, else .tamer/registry.db under the working directory
    (created and migrated to the newest schema on first use)."""
    from .maintenance import ENV, Registry

    if (url or os.environ.get(ENV, "")).lower() in OFF:
        raise UsageError(f"the registry is turned off ({ENV}={os.environ.get(ENV)}); set it to a database URL, or "
                         f"unset it for .tamer/registry.db.")
    return Registry(url)


def record(*copies: tuple[Any, str | Path, bool]) -> None:
    """Register artifacts: each (manifest or Artifact, where it lies, sealed?). Never raises: a failure is a warning."""
    from .maintenance import ENV

    if os.environ.get(ENV, "").lower() in OFF or not copies:
        return
    try:
        with registry() as reg:
            for item, where, sealed in copies:
                manifest = getattr(item, "manifest", item)
                reg.register(manifest, str(Path(where).resolve()), sealed)
    except Exception as exc:  # a model already written is worth more than its catalogue entry
        reason = " ".join(str(exc).split()) or type(exc).__name__
        for item, where, _ in copies:
            print(f"tamer: warning: artifact {getattr(item, 'manifest', item).get('id')} at {where} is kept but was not "
                  f"recorded in the registry ({reason}); record it later with `tamer registry add {where}`.",
                  file=sys.stderr)


def record_children(result: Artifact, sealed: bool = False) -> None:
    """Record what a child-writing verb wrote: every compress step's child (each names its parent), else the one
    child. Sealed children are read from their sealed folders' clear manifests."""
    steps = getattr(getattr(result, "report", None), "steps", None)
    steps = steps if isinstance(steps, list) and all(hasattr(s, "artifact") for s in steps) else []
    paths = [Path(s.artifact) for s in steps] or [Path(result.path)]
    if sealed:  # the steps were written to a private folder and sealed beside `result`
        paths = [result.path.with_name(p.name) for p in paths]
    record(*((_manifest_at(p), p, sealed) if p != Path(result.path) else (result, p, sealed) for p in paths))


def _manifest_at(folder: Path) -> dict:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return {"id": None}


def add(path: str | Path, url: str | None = None) -> dict[str, Any]:
    """`tamer registry add PATH`: record an artifact folder (plain or sealed) written earlier or elsewhere."""
    from .artifact import MANIFEST, Artifact

    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise ArtifactError(f"{str(path)!r} is not a tamer artifact (it has no {MANIFEST}); give an artifact folder.")
    sealed = (path / "encryption.json").is_file()
    manifest = _manifest_at(path) if sealed else Artifact.load(path).manifest  # a plain one: every hash checked
    if not isinstance(manifest.get("id"), str) or "task" not in manifest:
        raise ArtifactError(f"the manifest of {str(path)!r} has no artifact id and task; it is damaged.")
    with registry(url) as reg:
        new = reg.register(manifest, str(path.resolve()), sealed)
        return {**reg.show(manifest["id"]), "new": new}


def show(name: str, url: str | None = None) -> dict[str, Any]:
    """One artifact (an id, a unique id prefix or an alias): record, parents, children, aliases, tags, copies."""
    with registry(url) as reg:
        return reg.show(name)


def catalogue(url: str | None = None) -> list[dict[str, Any]]:
    """Every registered artifact, newest first, with the aliases naming it."""
    with registry(url) as reg:
        return reg.list_artifacts()


def lineage(name: str, url: str | None = None) -> dict[str, Any]:
    """The artifact's ancestors and descendants (nodes, parent -> child edges), aliases and promotions."""
    with registry(url) as reg:
        return reg.lineage(name)


def history(alias: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """The append-only event log, oldest first (one alias's moves when named)."""
    with registry(url) as reg:
        return reg.history(alias)


def promote(name: str, to: str, reason: str | None = None, url: str | None = None) -> dict[str, Any]:
    """Point alias `to` at the artifact `name` (id, prefix or alias) and log it, in one transaction."""
    with registry(url) as reg:
        return reg.promote(name, to, reason)


def rollback(alias: str, reason: str | None = None, url: str | None = None) -> dict[str, Any]:
    """Point `alias` back at the artifact it named before its latest standing promotion (twice: two steps back)."""
    with registry(url) as reg:
        return reg.rollback(alias, reason)


def tag(name: str, pairs: str | Iterable[str], url: str | None = None) -> list[dict[str, Any]]:
    """Set tags given as KEY=VALUE on an artifact."""
    pairs = [pairs] if isinstance(pairs, str) else list(pairs)
    parsed = []
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"tag {pair!r} is not accepted; write it as KEY=VALUE, like owner=alice.")
        parsed.append((key.strip(), value))
    with registry(url) as reg:
        return [reg.tag(name, key, value) for key, value in parsed]


def resolve(name_or_path: str | Path, url: str | None = None) -> Path:
    """An artifact's folder from a path, an alias (`production`) or an id: an existing folder is itself; otherwise
    the registry's first copy still on disk (plaintext before sealed)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if os.sep in name or name.startswith("."):
        raise ArtifactError(f"artifact {name!r} does not exist; give an artifact folder, an alias or a registered id.")
    with registry(url) as reg:
        return Path(reg.resolve(name)["path"])


def drift(reference: str | Path, current: str | Path, config=None, *, artifact: str | Path | Artifact | None = None,
          progress: bool = False, key_file: str | None = None, passphrase_env: str | None = None, **options: Any):
    """Has the data drifted? A DriftReport whose `drift` is the verdict and `p_value` the deciding p-value. Tables
    (.csv/.tsv): Kolmogorov-Smirnov / chi-squared per column with PSI, Holm-corrected (or Benjamini-Hochberg);
    text (.txt) and arrays (.npy): the Gaussian-kernel MMD permutation test and a domain classifier's AUC on the
    artifact's embeddings (given one; its penultimate layer) or on TF-IDF words / raw values."""
    from .api_base import load
    from .artifact import Artifact
    from .config import make_config
    from .maintenance.drift import detect_drift
    from .maintenance.drift_config import DriftConfig
    from .maintenance.drift_data import load_drift_data

    config = config or make_config(DriftConfig, options)
    ref, cur = load_drift_data(str(reference), "--reference"), load_drift_data(str(current), "--current")
    if artifact is not None and not isinstance(artifact, Artifact):
        artifact = load(artifact, key_file=key_file, passphrase_env=passphrase_env)
    return detect_drift(ref, cur, config, artifact, progress)
