"""Version 1 of the encryption format, written by hand from `cryptography` (tamer only reads it now): the master key
used directly for AES-GCM, key check HMAC(key, 'tamer key check' | file id), the manifest tagged under
HMAC(key, 'tamer subkey manifest')."""
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER = struct.Struct(">8sBBBBB3sI16s16s32s8s")


def seal_v1(data: bytes, key: bytes, chunk: int, kdf: int = 0, scrypt=(0, 0, 0), salt: bytes | None = None) -> bytes:
    salt, file_id = salt or os.urandom(16), os.urandom(16)
    check = hmac.new(key, b"tamer key check" + file_id, hashlib.sha256).digest()
    header = HEADER.pack(b"TAMERENC", 1, kdf, *scrypt, bytes(3), chunk, salt, file_id, check, bytes(8))
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    out = [header]
    for i, piece in enumerate(pieces):
        nonce = os.urandom(12)
        out.append(nonce + AESGCM(key).encrypt(nonce, piece, header + struct.pack(">QB", i, i == len(pieces) - 1)))
    return b"".join(out)


def seal_v1_folder(artifact_path: Path, out: Path, key: bytes, chunk: int = 4096) -> None:
    """An encrypted artifact folder as version 1 of `tamer encrypt` wrote it (key file)."""
    manifest = (artifact_path / "manifest.json").read_bytes()
    out.mkdir()
    files = {}
    for name in json.loads(manifest)["files"]:
        sealed = out / (name + ".enc")
        sealed.parent.mkdir(parents=True, exist_ok=True)
        sealed.write_bytes(seal_v1((artifact_path / name).read_bytes(), key, chunk))
        files[name] = name + ".enc"
    (out / "manifest.json").write_bytes(manifest)
    info = {"format": "tamer-encrypted-artifact", "version": 1, "kdf": "key-file", "salt": os.urandom(16).hex(),
            "chunk_size": chunk, "cipher": "AES-256-GCM", "files": files, "artifact_id": json.loads(manifest)["id"]}
    body = manifest + json.dumps(info, sort_keys=True).encode()
    info["manifest_hmac"] = hmac.new(hmac.new(key, b"tamer subkey manifest", hashlib.sha256).digest(), body,
                                     hashlib.sha256).hexdigest()
    (out / "encryption.json").write_text(json.dumps(info, indent=2, sort_keys=True))
