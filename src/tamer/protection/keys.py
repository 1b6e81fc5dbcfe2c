"""Keys: key files, passphrases stretched with scrypt, and keys derived for one purpose (HKDF, HMAC)."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import UsageError, refuse_existing

KDF_KEYFILE, KDF_SCRYPT = 0, 1
SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P = 17, 8, 1  # 128 MiB, about 0.4 s
SCRYPT_MAX_MEMORY = 1 << 30  # a header asking for more is refused before any work
KEY_PREFIX = "tamer-key-v1:"


class DecryptionError(UsageError):
    """Ciphertext that does not open: wrong key, changed bytes, truncated, or not a tamer file."""


@dataclass(frozen=True)
class Secret:
    """Either a 32-byte key (from a key file) or a passphrase (stretched with scrypt per file salt)."""

    key: bytes | None = None
    passphrase: bytes | None = None

    def __post_init__(self):
        if (self.key is None) == (self.passphrase is None):
            raise UsageError("give exactly one of --key-file or --passphrase-env.")
        if self.key is not None and len(self.key) != 32:
            raise UsageError("a tamer key is 32 bytes; make one with `tamer keygen --out KEYFILE`.")
        if self.passphrase is not None and len(self.passphrase) < 8:
            raise UsageError("the passphrase is shorter than 8 characters; use a longer one or a key file.")

    def __repr__(self) -> str:  # never the key or the passphrase
        return f"Secret({'key file' if self.key is not None else 'passphrase'})"

    @property
    def kdf(self) -> int:
        return KDF_KEYFILE if self.key is not None else KDF_SCRYPT

    def derive(self, salt: bytes, log2n: int = SCRYPT_LOG2N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
        """The master key: the key itself, or scrypt of the passphrase."""
        if self.key is not None:
            return self.key
        return passphrase_key(self.passphrase, salt, log2n, r, p)


def scrypt_memory(log2n: int, r: int, p: int) -> int:
    """Bytes scrypt needs for these parameters (its V array plus p blocks)."""
    return 128 * r * ((1 << log2n) + p)


def check_scrypt(log2n: int, r: int, p: int, name: str = "the file") -> None:
    if not (10 <= log2n <= 30 and 1 <= r <= 32 and 1 <= p <= 16) or scrypt_memory(log2n, r, p) > SCRYPT_MAX_MEMORY:
        raise DecryptionError(f"{name} asks for scrypt n=2^{log2n}, r={r}, p={p}; tamer accepts 2^10 <= n, r <= 32, "
                              f"p <= 16 and at most {SCRYPT_MAX_MEMORY >> 30} GiB of memory, so it is damaged or not a tamer file.")


_SCRYPT_CACHE: dict[tuple, bytes] = {}


def passphrase_key(passphrase: bytes, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    """scrypt(passphrase, salt) with these parameters, once per salt: an artifact's files share one salt."""
    check_scrypt(log2n, r, p)
    cache_key = (hashlib.sha256(passphrase).digest(), salt, log2n, r, p)
    if cache_key not in _SCRYPT_CACHE:
        _SCRYPT_CACHE[cache_key] = Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p).derive(passphrase)
    return _SCRYPT_CACHE[cache_key]


def hkdf(master: bytes, salt: bytes, info: bytes) -> bytes:
    """32 bytes of HKDF-SHA256 (RFC 5869): a key for one purpose, never the master key itself."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master)


def generate_key() -> bytes:
    return secrets.token_bytes(32)


def write_key_file(path: str | os.PathLike) -> Path:
    """Write a new random key (hex text, owner-only permissions); refuse to overwrite one."""
    path = refuse_existing(path, "a key", folder=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(KEY_PREFIX + generate_key().hex() + "\n")
    return path


def read_key_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"key file {str(path)!r} does not exist; make one with `tamer keygen --out KEYFILE`.")
    text = path.read_text(errors="replace").strip()
    if not text.startswith(KEY_PREFIX):
        raise UsageError(f"{str(path)!r} is not a tamer key file (it should start with {KEY_PREFIX!r}); make one with `tamer keygen`.")
    try:
        key = bytes.fromhex(text[len(KEY_PREFIX):])
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UsageError(f"key file {str(path)!r} is damaged: it must hold 64 hex digits after {KEY_PREFIX!r}.")
    return key


def secret_from_options(key_file: str | None = None, passphrase_env: str | None = None) -> Secret:
    """The Secret named by --key-file or --passphrase-env (the passphrase itself never goes on a command line)."""
    if key_file and passphrase_env:
        raise UsageError("give either --key-file or --passphrase-env, not both.")
    if key_file:
        return Secret(key=read_key_file(key_file))
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise UsageError(f"environment variable {passphrase_env!r} (from --passphrase-env) is unset or empty; export the passphrase in it.")
        return Secret(passphrase=value.encode())
    raise UsageError("this needs a key: pass --key-file KEYFILE (see `tamer keygen`) or --passphrase-env VAR.")


def subkey(key: bytes, purpose: str) -> bytes:
    """A key for another purpose (pseudonyms, a version 1 manifest tag) derived from a key, never the key itself."""
    return hmac.new(key, b"tamer subkey " + purpose.encode(), hashlib.sha256).digest()
