"""Streamed AES-256-GCM file encryption: chunked, each chunk bound to its index, the final flag and the header.

File layout (version 1), all integers big-endian:

    header (96 bytes)  magic "TAMERENC" | version u8 | kdf u8 (0 key file, 1 scrypt) | log2(n) u8 | r u8 | p u8
                       | reserved 3 bytes | chunk size u32 | salt 16 | file id 16 | key check 32 | reserved 8
    chunk i            nonce 12 | AES-GCM(plaintext_i, aad = header | i u64 | final u8) incl. 16-byte tag

Every chunk but the last holds exactly `chunk size` plaintext bytes; the last holds 0..chunk size and is the
only one sealed with final = 1, so reordering, dropping, duplicating or truncating chunks fails authentication.
The header is part of every chunk's associated data, so any change to it is caught too. Memory stays near
four chunks whatever the file size (one `cryptography` call must stay under 2 GiB, hence the chunk cap): a
background thread writes one sealed chunk while the next is read and sealed, so the cipher overlaps the disk.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import queue
import secrets
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import UsageError

MAGIC = b"TAMERENC"
VERSION = 1
KDF_KEYFILE, KDF_SCRYPT = 0, 1
_HEADER = struct.Struct(">8sBBBBB3sI16s16s32s8s")
HEADER_SIZE = _HEADER.size  # 96
NONCE, TAG = 12, 16
DEFAULT_CHUNK = 4 << 20
MAX_CHUNK = 1 << 30  # well under the 2 GiB a single AESGCM call accepts
SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P = 15, 8, 1  # 32 MiB, about 0.1 s: OWASP's minimum for scrypt
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

    @property
    def kdf(self) -> int:
        return KDF_KEYFILE if self.key is not None else KDF_SCRYPT

    def derive(self, salt: bytes, log2n: int = SCRYPT_LOG2N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
        if self.key is not None:
            return self.key
        return _scrypt(self.passphrase, salt, log2n, r, p)


_SCRYPT_CACHE: dict[tuple, bytes] = {}


def _scrypt(passphrase: bytes, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    if not (10 <= log2n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise DecryptionError(f"the file asks for scrypt n=2^{log2n}, r={r}, p={p}, outside what tamer accepts; it is damaged or not a tamer file.")
    cache_key = (hashlib.sha256(passphrase).digest(), salt, log2n, r, p)
    if cache_key not in _SCRYPT_CACHE:  # one derivation per salt: an artifact's files share one
        _SCRYPT_CACHE[cache_key] = Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p).derive(passphrase)
    return _SCRYPT_CACHE[cache_key]


def generate_key() -> bytes:
    return secrets.token_bytes(32)


def write_key_file(path: str | os.PathLike) -> Path:
    """Write a new random key (hex text, owner-only permissions); refuse to overwrite one."""
    path = Path(path)
    if path.exists():
        raise UsageError(f"key file {str(path)!r} already exists; pass a new --out path (tamer never overwrites a key).")
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


def _key_check(key: bytes, file_id: bytes) -> bytes:
    return hmac.new(key, b"tamer key check" + file_id, hashlib.sha256).digest()


def subkey(key: bytes, purpose: str) -> bytes:
    """A key for another purpose (manifest tag, pseudonyms) derived from the file key, never the key itself."""
    return hmac.new(key, b"tamer subkey " + purpose.encode(), hashlib.sha256).digest()


def make_header(secret: Secret, chunk_size: int, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """(header bytes, derived key) for a new file."""
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise UsageError(f"chunk size {chunk_size} is out of range; use 1 byte to {MAX_CHUNK} bytes (1 GiB).")
    salt = salt if salt is not None else secrets.token_bytes(16)
    file_id = secrets.token_bytes(16)
    key = secret.derive(salt)
    header = _HEADER.pack(MAGIC, VERSION, secret.kdf, SCRYPT_LOG2N if secret.kdf else 0, SCRYPT_R if secret.kdf else 0,
                          SCRYPT_P if secret.kdf else 0, bytes(3), chunk_size, salt, file_id, _key_check(key, file_id), bytes(8))
    return header, key


def open_header(header: bytes, secret: Secret, name: str) -> tuple[int, bytes]:
    """(chunk size, key) after checking the header and that the secret is the right one."""
    if len(header) < HEADER_SIZE or header[:8] != MAGIC:
        raise DecryptionError(f"{name} is not a tamer encrypted file (no {MAGIC.decode()} header) or it is truncated.")
    magic, version, kdf, log2n, r, p, _, chunk, salt, file_id, check, _ = _HEADER.unpack(header[:HEADER_SIZE])
    if version != VERSION:
        raise DecryptionError(f"{name} was written by encryption format version {version}; this tamer reads version {VERSION}.")
    if kdf not in (KDF_KEYFILE, KDF_SCRYPT):
        raise DecryptionError(f"{name} names key derivation {kdf}, which tamer does not know; the file is damaged.")
    if kdf != secret.kdf:
        want = "a passphrase (--passphrase-env)" if kdf == KDF_SCRYPT else "a key file (--key-file)"
        raise DecryptionError(f"{name} was encrypted with {want}; pass that instead.")
    if not 1 <= chunk <= MAX_CHUNK:
        raise DecryptionError(f"{name} has chunk size {chunk}, outside 1..{MAX_CHUNK}; the file is damaged.")
    key = secret.derive(salt, log2n, r, p)
    if not hmac.compare_digest(_key_check(key, file_id), check):
        raise DecryptionError(f"{name}: wrong key or passphrase (or a damaged header); nothing was decrypted.")
    return chunk, key


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _fill(src: BinaryIO, buf: bytearray) -> int:
    """Read into `buf` until it is full or the source ends; returns the byte count."""
    view, got = memoryview(buf), 0
    readinto = getattr(src, "readinto", None)
    while got < len(buf):
        if readinto is not None:
            n = readinto(view[got:])
        else:
            data = src.read(len(buf) - got)
            n = len(data)
            view[got:got + n] = data
        if not n:
            break
        got += n
    return got


def _seal(aes: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> None:
    """AES-GCM into `out` (len(data) + TAG bytes of a reused buffer): fresh multi-megabyte allocations cost more
    than the cipher itself."""
    if hasattr(aes, "encrypt_into"):  # cryptography >= 45
        aes.encrypt_into(nonce, data, aad, out)
    else:
        out[:] = aes.encrypt(nonce, bytes(data), aad)


def _open(aes: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> None:
    if hasattr(aes, "decrypt_into"):
        aes.decrypt_into(nonce, data, aad, out)
    else:
        out[:] = aes.decrypt(nonce, bytes(data), aad)


class _Writer:
    """Writes filled buffers to `dst` on a background thread while the caller reads and seals the next chunk.

    AES-GCM (cryptography) and file writes both release the GIL, so the cipher overlaps the disk instead of
    waiting for it. Two buffers of `size` bytes circulate: the one being filled and the one being written."""

    def __init__(self, dst: BinaryIO, size: int, depth: int = 2):
        self._dst = dst
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(bytearray(size))
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="tamer-crypto-writer", daemon=True)
        self._thread.start()

    def buffer(self) -> bytearray:
        """A buffer free to fill (waits while both are queued); raises the writer's error, if it had one."""
        buf = self._free.get()
        if self._error is not None:
            raise self._error
        return buf

    def write(self, buf: bytearray, *spans: tuple[int, int]) -> None:
        """Queue `buf[start:end]` for each span (written in order), then hand `buf` back to the pool."""
        self._todo.put((buf, spans))

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, spans = item
            try:
                for start, end in spans:
                    if self._error is None and not self._abandoned:
                        self._dst.write(memoryview(buf)[start:end])
            except BaseException as exc:  # handed to the caller at its next buffer() or at exit
                self._error = exc
            finally:
                self._free.put(buf)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._abandoned = exc_type is not None  # the caller failed: its output is discarded, skip the rest
        self._todo.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


def encrypt_stream(src: BinaryIO, dst: BinaryIO, secret: Secret, chunk_size: int = DEFAULT_CHUNK,
                   salt: bytes | None = None) -> int:
    """Encrypt everything readable from `src` into `dst`; returns the plaintext size. Memory ~ 4 chunks
    (the chunk being sealed, the next one read ahead to know which is final, two being written)."""
    header, key = make_header(secret, chunk_size, salt)
    aes = AESGCM(key)
    dst.write(header)
    current, following = bytearray(chunk_size), bytearray(chunk_size)
    total, index = 0, 0
    with _Writer(dst, NONCE + chunk_size + TAG) as writer:
        n = _fill(src, current)
        while True:
            m = _fill(src, following) if n == chunk_size else 0
            final = m == 0
            out = writer.buffer()
            nonce = secrets.token_bytes(NONCE)
            out[:NONCE] = nonce
            _seal(aes, nonce, memoryview(current)[:n], _aad(header, index, final), memoryview(out)[NONCE:NONCE + n + TAG])
            writer.write(out, (0, NONCE), (NONCE, NONCE + n + TAG))  # nonce, then ciphertext | tag
            total += n
            if final:
                return total
            current, following, n, index = following, current, m, index + 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, secret: Secret, name: str = "the file") -> int:
    """Decrypt `src` into `dst`, refusing any change; the caller discards `dst` on error. Returns plaintext size."""
    header = src.read(HEADER_SIZE)
    chunk_size, key = open_header(header, secret, name)
    aes = AESGCM(key)
    sealed = NONCE + chunk_size + TAG
    current, following = bytearray(sealed), bytearray(sealed)
    total, index = 0, 0
    with _Writer(dst, chunk_size) as writer:
        n = _fill(src, current)
        while True:
            if n < NONCE + TAG:
                raise DecryptionError(f"{name} is truncated (chunk {index} is incomplete); nothing was written.")
            m = _fill(src, following) if n == sealed else 0
            final = m == 0
            view = memoryview(current)[:n]
            out = writer.buffer()
            try:
                _open(aes, bytes(view[:NONCE]), view[NONCE:], _aad(header, index, final), memoryview(out)[:n - NONCE - TAG])
            except InvalidTag:
                raise DecryptionError(f"{name} failed authentication at chunk {index}: it was changed, truncated or "
                                      f"reordered after encryption; nothing was written.") from None
            writer.write(out, (0, n - NONCE - TAG))
            total += n - NONCE - TAG
            if final:
                return total
            current, following, n, index = following, current, m, index + 1


def _atomic(out: Path, fill) -> None:
    """Write `out` through a temporary sibling renamed into place; no partial output on any error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tamer-tmp-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stream_file(src: str | os.PathLike, out: str | os.PathLike, stream) -> int:
    """Run `stream(source, sink)` from file `src` into `out`, written atomically; returns what `stream` returns."""
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise UsageError(f"input {str(src)!r} does not exist or is not a file.")
    size = 0

    def fill(f):
        nonlocal size
        with open(src, "rb") as s:
            size = stream(s, f)

    _atomic(out, fill)
    return size


def encrypt_file(src: str | os.PathLike, out: str | os.PathLike, secret: Secret, chunk_size: int = DEFAULT_CHUNK,
                 salt: bytes | None = None) -> int:
    return _stream_file(src, out, lambda s, f: encrypt_stream(s, f, secret, chunk_size, salt))


def decrypt_file(src: str | os.PathLike, out: str | os.PathLike, secret: Secret) -> int:
    return _stream_file(src, out, lambda s, f: decrypt_stream(s, f, secret, Path(src).name))


def encrypt_bytes(data: bytes, secret: Secret, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    import io

    buf = io.BytesIO()
    encrypt_stream(io.BytesIO(data), buf, secret, chunk_size)
    return buf.getvalue()


def decrypt_bytes(data: bytes, secret: Secret, name: str = "the data") -> bytes:
    import io

    buf = io.BytesIO()
    decrypt_stream(io.BytesIO(data), buf, secret, name)
    return buf.getvalue()
