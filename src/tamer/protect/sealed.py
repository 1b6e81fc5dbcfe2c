"""Encrypted artifacts: every file sealed with streamed AES-256-GCM, the manifest readable but authenticated.

An encrypted artifact is a folder holding
    manifest.json        the artifact's manifest, byte for byte (so people and registries can still read it)
    encryption.json      format version, key derivation, salt, file list and an HMAC-SHA256 over both
    <file>.enc           each file of the artifact (weights, tokenizer) sealed by `crypto.encrypt_file`
Decrypting restores the original folder exactly; its ids and hashes are unchanged.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifact import MANIFEST, Artifact
from ..errors import ArtifactError, UsageError
from ..report import Report, table_html
from . import crypto
from .crypto import DecryptionError, Secret

ENCRYPTION = "encryption.json"
FORMAT = "tamer-encrypted-artifact"
FORMAT_VERSION = 1


def is_encrypted(path: str | os.PathLike) -> bool:
    return (Path(path) / ENCRYPTION).is_file()


def _manifest_tag(key: bytes, manifest: bytes, info: dict) -> str:
    body = manifest + json.dumps({k: info[k] for k in sorted(info) if k != "manifest_hmac"}, sort_keys=True).encode()
    return hmac.new(crypto.subkey(key, "manifest"), body, hashlib.sha256).hexdigest()


def _fresh_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {str(out)!r} already exists; pass a new --out folder (tamer never overwrites an artifact).")


def _into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)


@dataclass
class CryptReport(Report):
    """What `encrypt` or `decrypt` did."""

    action: str
    source: str
    out: str
    artifact_id: str
    kdf: str
    files: list[dict]
    seconds: float
    title = "encrypt"

    def gate_metrics(self) -> dict:
        return {"files": len(self.files), "bytes": sum(f["bytes"] for f in self.files), "seconds": self.seconds}

    def summary(self) -> str:
        size = sum(f["bytes"] for f in self.files)
        return (f"{self.action}ed artifact {self.artifact_id}: {len(self.files)} files, {size / 1e6:.2f} MB "
                f"in {self.seconds:.2f} s ({self.kdf})\n{self.out}")

    def html(self) -> str:
        rows = [(f["name"], f"{f['bytes']:,}") for f in self.files]
        facts = [("artifact", self.artifact_id), ("from", self.source), ("to", self.out), ("key", self.kdf),
                 ("cipher", "AES-256-GCM, streamed in chunks; index + final flag + header bound as associated data"),
                 ("time", f"{self.seconds:.2f} s")]
        return (f"<section><h2>{self.action.capitalize()} · artifact {self.artifact_id}</h2>{table_html(facts)}"
                f"{table_html(rows, ['file', 'plaintext bytes'])}</section>")


def encrypt_artifact(artifact: Artifact, out: str | os.PathLike, secret: Secret,
                     chunk_size: int = crypto.DEFAULT_CHUNK) -> CryptReport:
    import time

    t0 = time.perf_counter()
    out = Path(out)
    _fresh_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    salt = os.urandom(16)
    key = secret.derive(salt)  # scrypt once; every file's header carries the same salt
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))
    try:
        files, rows = {}, []
        for src in sorted(p for p in artifact.path.rglob("*") if p.is_file()):
            name = src.relative_to(artifact.path).as_posix()
            if name == MANIFEST:
                continue
            sealed = tmp / (name + ".enc")
            sealed.parent.mkdir(parents=True, exist_ok=True)
            size = crypto.encrypt_file(src, sealed, secret, chunk_size, salt)
            files[name] = name + ".enc"
            rows.append({"name": name, "bytes": size})
        manifest = (artifact.path / MANIFEST).read_bytes()
        (tmp / MANIFEST).write_bytes(manifest)
        info = {"format": FORMAT, "version": FORMAT_VERSION, "kdf": "scrypt" if secret.kdf else "key-file",
                "salt": salt.hex(), "chunk_size": chunk_size, "cipher": "AES-256-GCM", "files": files,
                "artifact_id": artifact.id}
        info["manifest_hmac"] = _manifest_tag(key, manifest, info)
        (tmp / ENCRYPTION).write_text(json.dumps(info, indent=2, sort_keys=True))
        _into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CryptReport("encrypt", str(artifact.path), str(out), artifact.id, info["kdf"], rows,
                       round(time.perf_counter() - t0, 3))


def _read_info(path: Path) -> dict:
    if not is_encrypted(path):
        raise ArtifactError(f"{str(path)!r} is not an encrypted tamer artifact (it has no {ENCRYPTION}).")
    try:
        info = json.loads((path / ENCRYPTION).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DecryptionError(f"{ENCRYPTION} in {str(path)!r} is not valid JSON; the encrypted artifact is damaged.") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != FORMAT_VERSION:
        raise DecryptionError(f"{str(path)!r} uses encrypted-artifact format {info.get('version') if isinstance(info, dict) else None!r}; "
                              f"this tamer reads version {FORMAT_VERSION}.")
    return info


def _decrypt_into(path: Path, folder: Path, secret: Secret) -> None:
    info = _read_info(path)
    files = info.get("files") or {}
    if not isinstance(files, dict) or not files:
        raise DecryptionError(f"{ENCRYPTION} in {str(path)!r} lists no files; the encrypted artifact is damaged.")
    first = path / next(iter(files.values()))
    if not first.is_file():
        raise DecryptionError(f"encrypted artifact {str(path)!r} is missing {first.name!r}.")
    with open(first, "rb") as f:  # checks the key before anything else, for a clear "wrong key"
        _, key = crypto.open_header(f.read(crypto.HEADER_SIZE), secret, first.name)
    manifest = (path / MANIFEST).read_bytes() if (path / MANIFEST).is_file() else b""
    try:
        expected = _manifest_tag(key, manifest, info)
    except (TypeError, AttributeError):
        expected = ""
    if not hmac.compare_digest(expected, str(info.get("manifest_hmac", ""))):
        raise DecryptionError(f"the manifest or {ENCRYPTION} of {str(path)!r} was changed after encryption; refusing it.")
    for name, sealed in files.items():
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise DecryptionError(f"{ENCRYPTION} names file {name!r} outside the artifact; refusing it.")
        if not (path / sealed).is_file():
            raise DecryptionError(f"encrypted artifact {str(path)!r} is missing {sealed!r}.")
        crypto.decrypt_file(path / sealed, target, secret)
    (folder / MANIFEST).write_bytes(manifest)
    Artifact.load(folder)  # the plaintext hashes must match the (authenticated) manifest too


def decrypt_artifact(path: str | os.PathLike, out: str | os.PathLike, secret: Secret) -> CryptReport:
    import time

    t0 = time.perf_counter()
    path, out = Path(path), Path(out)
    _fresh_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))
    try:
        _decrypt_into(path, tmp, secret)
        artifact = Artifact.load(tmp)
        rows = [{"name": n, "bytes": (tmp / n).stat().st_size} for n in sorted(_read_info(path)["files"])]
        _into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CryptReport("decrypt", str(path), str(out), artifact.id, _read_info(path)["kdf"], rows,
                       round(time.perf_counter() - t0, 3))


_OPENED: list[Path] = []


@atexit.register
def _forget_opened() -> None:
    for folder in _OPENED:
        shutil.rmtree(folder, ignore_errors=True)


def open_encrypted(path: str | os.PathLike, secret: Secret) -> Artifact:
    """Decrypt into a private temporary folder (in RAM under /dev/shm when there is one), removed at exit."""
    path = Path(path)
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="tamer-open-", dir=base))  # mode 0700
    _OPENED.append(folder)
    try:
        _decrypt_into(path, folder, secret)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Artifact.load(folder)
