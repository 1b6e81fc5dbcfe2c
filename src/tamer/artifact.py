"""Artifact: one immutable model version on disk (weights + manifest), written atomically, verified on load."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import ArtifactError, UsageError

if TYPE_CHECKING:
    import torch
# torch and safetensors are imported where weights are read or written, so reading a manifest, checking hashes
# and encrypting an artifact (protect/sealed.py) stay light: `tamer encrypt` never loads torch.

SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20

# Loaders for weight formats other than fp32: `loader(model, state_dict, manifest) -> model` rebuilds the
# layers the format needs (int8 / int4 codes) before loading. Capabilities register theirs (compress registers
# int8 and int4), so this module imports none of them.
FORMAT_LOADERS: dict[str, Callable[[Any, dict, dict], Any]] = {}


def register_format(fmt: str, loader: Callable[[Any, dict, dict], Any]) -> None:
    FORMAT_LOADERS[fmt] = loader


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_id(manifest: Mapping[str, Any]) -> str:
    """The id of an artifact: a hash of everything in its manifest except the id itself and the clock (`created_at`, `run`)."""
    body = {k: v for k, v in manifest.items() if k not in ("id", "created_at", "run")}
    return hashlib.sha256(_canonical(body)).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"tamer": __version__, "torch": torch.__version__, "python": platform.python_version()}


@dataclass(frozen=True)
class Artifact:
    """A model version on disk. Use `Artifact.load(path)` to open one and `save_artifact` to write one."""

    path: Path
    manifest: dict

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def task(self) -> str:
        return self.manifest["task"]["name"]

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Artifact":
        """Open an artifact folder and check every file against the sha256 its manifest records."""
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"artifact {str(path)!r} does not exist; pass a folder written by tamer (it holds {MANIFEST}).")
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{str(path)!r} is not a tamer artifact: it has no {MANIFEST}.")
        if (path / "encryption.json").is_file():  # written by protect/sealed.py
            raise ArtifactError(f"artifact {str(path)!r} is encrypted; pass its --key-file or --passphrase-env, "
                                f"or `tamer decrypt` it first.")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"the manifest of artifact {str(path)!r} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}).") from None
        if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
            raise ArtifactError(
                f"artifact {str(path)!r} has manifest schema {manifest.get('schema_version') if isinstance(manifest, dict) else None!r}; "
                f"this tamer reads schema {SCHEMA_VERSION}."
            )
        for name, expected in manifest.get("files", {}).items():
            file = path / name
            if not file.is_file():
                raise ArtifactError(f"artifact {str(path)!r} is missing {name!r}, which its manifest lists.")
            if sha256_file(file) != expected:
                raise ArtifactError(f"{name!r} in artifact {str(path)!r} does not match its sha256 in the manifest: the file was changed or corrupted.")
        if content_id(manifest) != manifest.get("id"):
            raise ArtifactError(f"the manifest of artifact {str(path)!r} was edited: its id {manifest.get('id')!r} no longer matches its content.")
        return cls(path=path, manifest=manifest)

    def state_dict(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(self.path / WEIGHTS)

    def load_model(self):
        """(task, model): the task with its saved state (tokenizer, labels) and the model in eval mode."""
        from safetensors import SafetensorError

        from .tasks.base import task_from_manifest

        task = task_from_manifest(self.manifest, self.path)
        model = task.build_model(self.manifest["model_config"])
        fmt = self.manifest.get("format", "fp32")
        if fmt != "fp32" and fmt not in FORMAT_LOADERS:
            raise ArtifactError(f"artifact {str(self.path)!r} has weight format {fmt!r}, which no loaded module reads; "
                                f"import the capability that wrote it (e.g. tamer.compress).")
        try:
            if fmt in FORMAT_LOADERS:
                model = FORMAT_LOADERS[fmt](model, self.state_dict(), self.manifest)
            else:
                model.load_state_dict(self.state_dict())
        except (SafetensorError, RuntimeError) as exc:
            raise ArtifactError(f"the weights of artifact {str(self.path)!r} do not fit its model config "
                                f"({str(exc).splitlines()[0]}).") from None
        return task, model.eval()

    def file(self, name: str) -> Path:
        return self.path / name


def save_artifact(
    out: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    *,
    task: Mapping[str, Any],
    model_config: Mapping[str, Any],
    verb: str,
    options: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    parents: list[str] | None = None,
    fmt: str = "fp32",
    extra: Mapping[str, Any] | None = None,
    write_files: Callable[[Path], None] | None = None,
) -> Artifact:
    """Write an artifact into a temporary folder beside `out`, then rename it into place.

    `write_files(folder)` may add files (a tokenizer, say); every file is hashed into the manifest.
    A crash at any point leaves no folder at `out`.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {str(out)!r} already exists; pass a new --out folder (tamer never overwrites an artifact).")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))
    try:
        tensors, seen = {}, set()
        for k, v in state_dict.items():
            v = v.detach().contiguous().cpu()
            if v.numel() and v.data_ptr() in seen:  # tied weights: safetensors refuses shared storage
                v = v.clone()
            seen.add(v.data_ptr())
            tensors[k] = v
        save_file(tensors, str(tmp / WEIGHTS))
        if write_files is not None:
            write_files(tmp)
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "task": dict(task),
            "model_config": dict(model_config),
            "format": fmt,
            "metrics": dict(metrics or {}),
            "verb": verb,
            "options": dict(options),
            "parents": list(parents or []),
            "parameters": int(sum(t.numel() for t in tensors.values() if t.is_floating_point())),
            "weights_sha256": files[WEIGHTS],
            "files": files,
            "versions": _versions(),
            **dict(extra or {}),
        }
        manifest = json.loads(_canonical(manifest))  # plain JSON types only, so the id is stable on reload
        manifest["id"] = content_id(manifest)
        manifest["created_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            out.rmdir()  # an empty folder the user made for us
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact(path=out, manifest=manifest)
