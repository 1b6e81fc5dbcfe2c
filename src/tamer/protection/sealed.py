"""Encrypted artifacts: every file sealed with streamed AES-256-GCM, the manifest readable but authenticated.

An encrypted artifact is a folder holding exactly
    manifest.json        the artifact's manifest, byte for byte (so people and registries can still read it)
    encryption.json      format version, key derivation, salt, file list and an HMAC-SHA256 over both
    <file>.enc           each file of the artifact (weights, tokenizer) sealed by `crypto.encrypt_stream`
Opening one with its key (`open_encrypted`) decrypts every file into memory, never onto the disk, and checks it
as `Artifact.load` checks a folder; only `decrypt_artifact` (`tamer decrypt --out`) writes plaintext, owner-only.
Nothing is opened before every name in encryption.json is checked to stay inside the folder, and a file the folder
holds but encryption.json does not list (a plaintext file planted beside the sealed ones) is refused.

Version 2 tags the manifest under an HKDF subkey of the master key; version 1 folders (an HMAC subkey) still
open, for the reason crypto.py gives for its version 1 files: they are authenticated by the same key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifact import MANIFEST, Artifact, check_file_name, folder_files, listed_files, parse_manifest
from ..errors import ArtifactError, refuse_existing
from ..report import Report, table_html
from . import crypto, keys
from .crypto import DecryptionError, Secret

ENCRYPTION = "encryption.json"
FORMAT = "tamer-encrypted-artifact"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
SUFFIX = ".enc"


def is_encrypted(path: str | os.PathLike) -> bool:
    return (Path(path) / ENCRYPTION).is_file()


def _manifest_tag(master: bytes, manifest: bytes, info: dict, version: int = FORMAT_VERSION) -> str:
    body = manifest + json.dumps({k: info[k] for k in sorted(info) if k != "manifest_hmac"}, sort_keys=True).encode()
    key = keys.subkey(master, "manifest") if version == 1 else keys.hkdf(master, b"", b"tamer v2 artifact manifest")
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _fresh_out(out: Path) -> None:
    refuse_existing(out)


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
    """Seal every file the artifact's manifest lists (from its folder, or from memory) into a new folder `out`."""
    import time

    t0 = time.perf_counter()
    crypto.check_chunk_size(chunk_size, "--chunk-size")
    out = Path(out)
    _fresh_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    salt = os.urandom(16)
    master = secret.derive(salt)  # scrypt once; every file's header carries the same salt
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))
    try:
        files, rows = {}, []
        for name in sorted(artifact.manifest.get("files", {})):
            sealed = tmp / (name + SUFFIX)
            sealed.parent.mkdir(parents=True, exist_ok=True)
            with artifact.open(name) as src, open(sealed, "wb") as dst:
                size = crypto.encrypt_stream(src, dst, secret, chunk_size, salt)
                dst.flush()
                os.fsync(dst.fileno())
            files[name] = name + SUFFIX
            rows.append({"name": name, "bytes": size})
        manifest = artifact.read_bytes(MANIFEST)
        (tmp / MANIFEST).write_bytes(manifest)
        info = {"format": FORMAT, "version": FORMAT_VERSION, "kdf": "scrypt" if secret.kdf else "key-file",
                "salt": salt.hex(), "chunk_size": chunk_size, "cipher": "AES-256-GCM", "files": files,
                "artifact_id": artifact.id}
        info["manifest_hmac"] = _manifest_tag(master, manifest, info)
        (tmp / ENCRYPTION).write_text(json.dumps(info, indent=2, sort_keys=True))
        _into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CryptReport("encrypt", str(artifact.path), str(out), artifact.id, info["kdf"], rows,
                       round(time.perf_counter() - t0, 3))


def _read_info(path: Path) -> dict:
    """encryption.json after checking its format, and that every name in it stays inside the folder."""
    if not path.is_dir():
        raise ArtifactError(f"artifact {str(path)!r} does not exist; pass a folder written by `tamer encrypt`.")
    if not is_encrypted(path):
        raise ArtifactError(f"{str(path)!r} is not an encrypted tamer artifact (it has no {ENCRYPTION}).")
    try:
        info = json.loads((path / ENCRYPTION).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DecryptionError(f"{ENCRYPTION} in {str(path)!r} is not valid JSON; the encrypted artifact is damaged.") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") not in READ_VERSIONS:
        raise DecryptionError(f"{str(path)!r} uses encrypted-artifact format {info.get('version') if isinstance(info, dict) else None!r}; "
                              f"this tamer reads versions {', '.join(map(str, READ_VERSIONS))}.")
    files = info.get("files")
    if not isinstance(files, dict) or not files:
        raise DecryptionError(f"{ENCRYPTION} in {str(path)!r} lists no files; the encrypted artifact is damaged.")
    where = f"{ENCRYPTION} in {str(path)!r}"
    for name, sealed in files.items():
        check_file_name(name, where)
        if sealed != f"{name}{SUFFIX}" or name == MANIFEST:
            raise ArtifactError(f"{where} maps {name!r} to {sealed!r}; a sealed file is always named NAME{SUFFIX}, "
                                f"so the encrypted artifact was edited.")
    expected = {MANIFEST, ENCRYPTION, *files.values()}
    unlisted = [n for n in folder_files(path) if n not in expected]
    if unlisted:
        raise ArtifactError(f"encrypted artifact {str(path)!r} holds {unlisted[0]!r}, which its {ENCRYPTION} does not "
                            f"list; refusing it (a sealed folder holds only {MANIFEST}, {ENCRYPTION} and *{SUFFIX} files).")
    missing = [s for s in files.values() if not (path / s).is_file()]
    if missing:
        raise DecryptionError(f"encrypted artifact {str(path)!r} is missing {missing[0]!r}.")
    return info


def _authenticate(path: Path, secret: Secret) -> tuple[dict, bytes]:
    """(encryption.json, manifest bytes) once the key is right and neither was changed since encryption."""
    info = _read_info(path)
    first = path / next(iter(info["files"].values()))
    with open(first, "rb") as f:  # checks the key before anything else, for a clear "wrong key"
        master = crypto.open_header(f.read(crypto.HEADER_SIZE), secret, first.name).master
    manifest = (path / MANIFEST).read_bytes() if (path / MANIFEST).is_file() else b""
    try:
        expected = _manifest_tag(master, manifest, info, info["version"])
    except (TypeError, AttributeError):
        expected = ""
    if not hmac.compare_digest(expected, str(info.get("manifest_hmac", ""))):
        raise DecryptionError(f"the manifest or {ENCRYPTION} of {str(path)!r} was changed after encryption; refusing it.")
    listed = listed_files(parse_manifest(manifest, f"encrypted artifact {str(path)!r}"), f"encrypted artifact {str(path)!r}")
    if set(listed) != set(info["files"]):
        raise ArtifactError(f"encrypted artifact {str(path)!r} seals other files than its manifest lists; it is damaged.")
    return info, manifest


def decrypt_artifact(path: str | os.PathLike, out: str | os.PathLike, secret: Secret) -> CryptReport:
    """Restore the plaintext folder at `out` (folder 0700, files 0600), written whole or not at all."""
    import time

    t0 = time.perf_counter()
    path, out = Path(path), Path(out)
    _fresh_out(out)
    info, manifest = _authenticate(path, secret)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))  # mode 0700
    try:
        rows = []
        for name, sealed in sorted(info["files"].items()):
            target = tmp / name
            for parent in reversed(target.relative_to(tmp).parents[:-1]):
                (tmp / parent).mkdir(mode=0o700, exist_ok=True)
            rows.append({"name": name, "bytes": crypto.decrypt_file(path / sealed, target, secret)})
        with os.fdopen(os.open(tmp / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(manifest)
        artifact = Artifact.load(tmp)  # the plaintext hashes must match the (authenticated) manifest too
        _into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CryptReport("decrypt", str(path), str(out), artifact.id, info["kdf"], rows,
                       round(time.perf_counter() - t0, 3))


def open_encrypted(path: str | os.PathLike, secret: Secret) -> Artifact:
    """Open a sealed artifact with its key: every file decrypted into memory (nothing written anywhere) and checked
    against the manifest. The artifact's `path` is the sealed folder. Anything that is not a sealed artifact is
    refused: a key given means sealed or nothing, so a plain folder swapped in for a sealed one never runs."""
    path = Path(path)
    info, manifest = _authenticate(path, secret)
    files = {MANIFEST: manifest}
    for name, sealed in info["files"].items():
        with open(path / sealed, "rb") as f:
            files[name] = bytes(crypto.decrypt_to_memory(f, os.fstat(f.fileno()).st_size, secret, sealed))
    return Artifact.from_memory(path, files)
