"""Artifact: one immutable model version (weights + manifest), written atomically, verified on load (every name
confined to its folder, no unlisted file, every sha256); its files on disk or, opened from a sealed folder, in memory."""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping

from .errors import ArtifactError, refuse_existing

if TYPE_CHECKING:
    import torch
# torch and safetensors are imported where weights are read or written, so reading a manifest, checking hashes
# and encrypting an artifact (protection/sealed.py) stay light: `tamer encrypt` never loads torch.

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

    from .version import __version__

    return {"tamer": __version__, "torch": torch.__version__, "python": platform.python_version()}


def check_file_name(name: Any, where: str) -> str:
    """`name` if it is a plain relative path inside an artifact folder; refuses absolute paths and `..`."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not parts or name.startswith(("/", "\\")) or "\\" in name or ":" in parts[0] or "\x00" in name
            or any(part in ("..", ".") for part in parts) or name != "/".join(parts)):
        raise ArtifactError(f"{where} names file {name!r}, which is not a plain relative path inside the artifact "
                            f"(no absolute path, no '..'); refusing it before anything is opened.")
    return name


def listed_files(manifest: Mapping[str, Any], where: str) -> dict[str, str]:
    """The manifest's `files` ({name: sha256}) after checking every name stays inside the artifact."""
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ArtifactError(f"the manifest of {where} has a damaged file list; it must map file names to sha256 digests.")
    for name in files:
        check_file_name(name, f"the manifest of {where}")
    if MANIFEST in files:
        raise ArtifactError(f"the manifest of {where} lists {MANIFEST} itself; the artifact is damaged.")
    return files


def parse_manifest(data: bytes, where: str) -> dict:
    """The manifest in `data`, refused unless it is JSON of the schema this tamer reads."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the manifest of {where} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has manifest schema {manifest.get('schema_version') if isinstance(manifest, dict) else None!r}; "
            f"this tamer reads schema {SCHEMA_VERSION}."
        )
    return manifest


def folder_files(path: Path) -> list[str]:
    """Every file under `path`, as sorted relative POSIX names."""
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink())


@dataclass(frozen=True)
class Artifact:
    """A model version. Use `Artifact.load(path)` to open one and `save_artifact` to write one.

    Its files live in the folder `path`, or, for a sealed artifact opened with its key, in memory (`files`, name to
    bytes, manifest.json included; `path` is then the sealed folder). Read them with `read_bytes(name)`."""

    path: Path
    manifest: dict
    files: Mapping[str, bytes] | None = dc_field(default=None, repr=False, compare=False)
    report: Any = dc_field(default=None, repr=False, compare=False)  # what the verb that wrote it found, when it did

    def with_report(self, report: Any) -> "Artifact":
        """This artifact with the report of the verb that wrote it attached (`artifact.report`)."""
        import dataclasses

        return dataclasses.replace(self, report=report)

    def without(self, *keys: str) -> "Artifact":
        """This artifact (same id, path and files) read as if its manifest had no `keys`: what a verb sees when the
        composing layer re-applies those keys to the children it writes (api.py, an inherited temperature)."""
        import dataclasses

        return dataclasses.replace(self, manifest={k: v for k, v in self.manifest.items() if k not in keys})

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def task(self) -> str:
        return self.manifest["task"]["name"]

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def split_seed(self) -> int:
        """The seed that split the task's data for this artifact: its training seed, inherited by every child
        (a compressed child records the compress seed as `seed` and its parent's split as `split_seed`)."""
        options = self.manifest.get("options", {})
        return int(options.get("split_seed", options.get("seed", 0)) or 0)

    @property
    def in_memory(self) -> bool:
        return self.files is not None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Artifact":
        """Open an artifact folder: file names confined to it, no file the manifest does not list, every sha256 checked."""
        path = Path(path)
        where = f"artifact {str(path)!r}"
        if not path.exists():
            raise ArtifactError(f"{where} does not exist; pass a folder written by tamer (it holds {MANIFEST}).")
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{str(path)!r} is not a tamer artifact: it has no {MANIFEST}.")
        if (path / "encryption.json").is_file():  # written by protection/sealed.py
            raise ArtifactError(f"{where} is encrypted; pass its --key-file or --passphrase-env, "
                                f"or `tamer decrypt` it first.")
        manifest = parse_manifest((path / MANIFEST).read_bytes(), where)
        files = listed_files(manifest, where)
        unlisted = [n for n in folder_files(path) if n != MANIFEST and n not in files]
        if unlisted:
            raise ArtifactError(f"{where} holds {unlisted[0]!r}, which its manifest does not list"
                                f"{f' (and {len(unlisted) - 1} more)' if len(unlisted) > 1 else ''}; "
                                f"an artifact is exactly the files its manifest hashes, so remove it or save a new artifact.")
        for name, expected in files.items():
            file = path / name
            if not file.is_file():
                raise ArtifactError(f"{where} is missing {name!r}, which its manifest lists.")
            if sha256_file(file) != expected:
                raise ArtifactError(f"{name!r} in {where} does not match its sha256 in the manifest: the file was changed or corrupted.")
        _check_id(manifest, where)
        return cls(path=path, manifest=manifest)

    @classmethod
    def from_memory(cls, path: str | os.PathLike, files: Mapping[str, bytes]) -> "Artifact":
        """An artifact whose files are held in memory (`files` holds manifest.json and every file it lists, nothing
        else), checked as `load` checks a folder; `path` names where it came from (a sealed folder)."""
        path = Path(path)
        where = f"artifact {str(path)!r}"
        if MANIFEST not in files:
            raise ArtifactError(f"{where} has no {MANIFEST}.")
        manifest = parse_manifest(files[MANIFEST], where)
        listed = listed_files(manifest, where)
        extra = sorted(set(files) - set(listed) - {MANIFEST})
        if extra:
            raise ArtifactError(f"{where} holds {extra[0]!r}, which its manifest does not list; refusing it.")
        for name, expected in listed.items():
            if name not in files:
                raise ArtifactError(f"{where} is missing {name!r}, which its manifest lists.")
            if hashlib.sha256(files[name]).hexdigest() != expected:
                raise ArtifactError(f"{name!r} in {where} does not match its sha256 in the manifest: the file was changed or corrupted.")
        _check_id(manifest, where)
        return cls(path=path, manifest=manifest, files=MappingProxyType(dict(files)))

    def read_bytes(self, name: str) -> bytes:
        """The bytes of one of the artifact's files (a name its manifest lists, or manifest.json), checked again
        against its sha256 when it is read from disk."""
        listed = self.manifest.get("files", {})
        if name != MANIFEST and name not in listed:
            raise ArtifactError(f"artifact {str(self.path)!r} has no file {name!r}; it holds {', '.join(sorted(listed))}.")
        if self.files is not None:
            return self.files[name]
        data = (self.path / name).read_bytes()
        if name != MANIFEST and hashlib.sha256(data).hexdigest() != listed[name]:
            raise ArtifactError(f"{name!r} in artifact {str(self.path)!r} changed after it was opened; reopen it.")
        return data

    def open(self, name: str) -> BinaryIO:
        """A binary stream of one of the artifact's files (streamed from disk, so a large file is never read whole)."""
        if self.files is not None:
            return io.BytesIO(self.read_bytes(name))
        if name != MANIFEST and name not in self.manifest.get("files", {}):
            self.read_bytes(name)  # raises: not one of the artifact's files
        return open(self.path / name, "rb")

    def size(self, name: str) -> int:
        """Bytes of one of the artifact's files."""
        if self.files is not None:
            return len(self.read_bytes(name))
        return (self.path / name).stat().st_size

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.files is not None:
            from safetensors.torch import load

            return load(self.files[WEIGHTS])
        from safetensors.torch import load_file

        return load_file(self.path / WEIGHTS)

    def load_model(self):
        """(task, model): the task with its saved state (tokenizer, labels) and the model in eval mode, on the running
        verb's device (tamer.device.placed). A manifest
        `temperature` (written by `stability --calibrate`) divides the model's output by it, through a forward hook,
        so the weights and their names stay the parent's."""
        from safetensors import SafetensorError

        from .tasks import task_from_artifact

        task = task_from_artifact(self)
        model = task.build_model(self.manifest["model_config"])
        fmt = self.manifest.get("format", "fp32")
        if fmt != "fp32" and fmt not in FORMAT_LOADERS:
            raise ArtifactError(f"artifact {str(self.path)!r} has weight format {fmt!r}, which no loaded module reads; "
                                f"import the capability that wrote it (e.g. tamer.compression).")
        try:
            if fmt in FORMAT_LOADERS:
                model = FORMAT_LOADERS[fmt](model, self.state_dict(), self.manifest)
            else:
                model.load_state_dict(self.state_dict())
        except (SafetensorError, RuntimeError) as exc:
            raise ArtifactError(f"the weights of artifact {str(self.path)!r} do not fit its model config "
                                f"({str(exc).splitlines()[0]}).") from None
        temperature = self.manifest.get("temperature")
        if temperature:  # temperature scaling (`tamer stability --calibrate`): logits / T, the weights untouched
            model.register_forward_hook(lambda module, inputs, output: output / temperature)
        from .device import place_model

        return task, place_model(model).eval()  # on the running verb's --device (CPU outside any verb)

    def predict(self, inputs: Any, max_new_tokens: int = 20) -> list[dict[str, Any]]:
        """The model on raw inputs (a text or a list of texts; images for digits): a classifier's label, score
        and probabilities per input, or a language model's prompt continued (`generated_text`)."""
        task, model = self.load_model()
        return task.predict(model, task.encode(inputs), max_new_tokens)

    def file(self, name: str) -> Path:
        """The path of one of the artifact's files on disk; a sealed artifact opened in memory has none."""
        if self.files is not None:
            raise ArtifactError(f"artifact {str(self.path)!r} is sealed and open in memory, so {name!r} has no path "
                                f"on disk; read it with read_bytes({name!r}), or `tamer decrypt` the artifact first.")
        return self.path / name


def _check_id(manifest: dict, where: str) -> None:
    if content_id(manifest) != manifest.get("id"):
        raise ArtifactError(f"the manifest of {where} was edited: its id {manifest.get('id')!r} no longer matches its content.")


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

    out = refuse_existing(out)
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


def amend_lineage(parent_id: str, folders: list[Path], changes: Mapping[str, Any]) -> list[Artifact]:
    """Add `changes` to the manifest of every plain artifact folder in `folders` that descends from `parent_id`
    (a chain: each one's parent is the one before), parent to child, each id recomputed and the next one's parent
    id renamed to match. Each manifest is replaced atomically (a temporary file beside the folder, then a rename)."""
    manifests = {}
    for folder in folders:
        if (folder / MANIFEST).is_file():
            manifests[Path(folder)] = parse_manifest((Path(folder) / MANIFEST).read_bytes(), f"artifact {str(folder)!r}")
    renamed, done, changed = {}, [], True
    while changed:
        changed = False
        for folder, manifest in list(manifests.items()):
            parents = manifest.get("parents", [])
            if not any(p == parent_id or p in renamed for p in parents):
                continue
            body = {**{k: v for k, v in manifest.items() if k not in ("id", "created_at")}, **json.loads(_canonical(dict(changes))),
                    "parents": [renamed.get(p, p) for p in parents]}
            body["id"] = content_id(body)
            body["created_at"] = manifest.get("created_at")
            fd, tmp = tempfile.mkstemp(prefix=".tamer-manifest-", dir=folder.parent)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(body, indent=2, sort_keys=True))
            os.chmod(tmp, (folder / MANIFEST).stat().st_mode & 0o777)
            os.replace(tmp, folder / MANIFEST)
            renamed[manifest["id"]] = body["id"]
            del manifests[folder]
            done.append(Artifact.load(folder))
            changed = True
    return done
