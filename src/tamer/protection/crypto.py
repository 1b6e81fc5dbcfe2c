"""Streamed AES-256-GCM file encryption: chunked, each chunk bound to its index, the final flag and the header.

File layout (version 2), all integers big-endian:

    header (96 bytes)  magic "TAMERENC" | version u8 | kdf u8 (0 key file, 1 scrypt) | log2(n) u8 | r u8 | p u8
                       | reserved 3 bytes | chunk size u32 | salt 16 | file id 16 | key check 32 | reserved 8
    chunk i            nonce 12 | AES-GCM(plaintext_i, aad = header | i u64 | final u8) incl. 16-byte tag

Every chunk but the last holds exactly `chunk size` plaintext bytes (64 KiB to 1 GiB); the last holds 0..chunk size
and is the only one sealed with final = 1, so reordering, dropping, duplicating or truncating chunks fails
authentication. The header is part of every chunk's associated data, so any change to it is caught too.

Keys. The master key is the key file's 32 bytes, or scrypt(passphrase, salt) with n = 2^17, r = 8 (128 MiB); a
header that asks for more than 1 GiB of scrypt memory is refused before any work. Each file is sealed under its own
key, HKDF-SHA256(master, salt = the file's random id, info "tamer v2 payload"), as age derives a payload key per
file: no two files share an AES key, so AES-GCM's budget of random nonces is per file. The key check is an HMAC of
the header under HKDF(master, file id, "tamer v2 key check"): a wrong key is told apart from a damaged file before
any chunk is opened, and the check reveals nothing about the payload key.

Version 1 (the master key used directly for AES-GCM, scrypt n = 2^15, any chunk size) is still read, never written.
Opening it is no downgrade: a v1 file is authenticated by the same key (its key check and every chunk's tag), so
whoever lacks the key can forge neither a v1 nor a v2 file, and v2 never uses the master key for AES-GCM, so no
chunk moves between versions. Refusing v1 would protect nothing, since an old file's weaker scrypt cost is fixed in
that file on disk whatever this code does.

Memory stays near four chunks whatever the file size (one `cryptography` call must stay under 2 GiB, hence the
cap): a background thread writes one sealed chunk while the next is sealed, so the cipher overlaps the disk. An
in-memory source (`io.BytesIO`, `encrypt_bytes`) is sealed from views of its own buffer, with no copy.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import os
import queue
import secrets
import struct
import threading
from contextlib import closing
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import UsageError
from .keys import KDF_KEYFILE, KDF_SCRYPT, SCRYPT_LOG2N, SCRYPT_P, SCRYPT_R, DecryptionError, Secret, check_scrypt, hkdf

MAGIC = b"TAMERENC"
VERSION = 2
READ_VERSIONS = (1, 2)
_HEADER = struct.Struct(">8sBBBBB3sI16s16s32s8s")
HEADER_SIZE = _HEADER.size  # 96
_CHECK_AT = 52  # offset of the key check in the header
NONCE, TAG = 12, 16
DEFAULT_CHUNK = 4 << 20
MIN_CHUNK = 64 << 10  # smaller chunks only add overhead (28 bytes and one call each)
MAX_CHUNK = 1 << 30  # well under the 2 GiB a single AESGCM call accepts


def check_chunk_size(chunk_size: int, option: str = "chunk size") -> None:
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise UsageError(f"{option} {chunk_size} is out of range; use {MIN_CHUNK} (64 KiB) to {MAX_CHUNK} bytes (1 GiB).")


def _key_check(master: bytes, file_id: bytes, head: bytes) -> bytes:
    return hmac.new(hkdf(master, file_id, b"tamer v2 key check"), head, hashlib.sha256).digest()


def _payload_key(master: bytes, file_id: bytes) -> bytes:
    return hkdf(master, file_id, b"tamer v2 payload")


class Header(NamedTuple):
    """What an opened header gives: the chunk size, the file's AES key and the master key (for artifact tags)."""

    chunk_size: int
    key: bytes
    master: bytes
    version: int


def make_header(secret: Secret, chunk_size: int, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """(header bytes, the new file's own AES key)."""
    check_chunk_size(chunk_size)
    salt = salt if salt is not None else secrets.token_bytes(16)
    file_id = secrets.token_bytes(16)
    master = secret.derive(salt)
    scrypt = (SCRYPT_LOG2N, SCRYPT_R, SCRYPT_P) if secret.kdf == KDF_SCRYPT else (0, 0, 0)
    head = _HEADER.pack(MAGIC, VERSION, secret.kdf, *scrypt, bytes(3), chunk_size, salt, file_id, bytes(32), bytes(8))
    header = head[:_CHECK_AT] + _key_check(master, file_id, head[:_CHECK_AT]) + head[_CHECK_AT + 32:]
    return header, _payload_key(master, file_id)


def open_header(header: bytes, secret: Secret, name: str) -> Header:
    """Check the header (format, version, limits) and that the secret is the right one, before any other work."""
    if len(header) < HEADER_SIZE or header[:8] != MAGIC:
        raise DecryptionError(f"{name} is not a tamer encrypted file (no {MAGIC.decode()} header) or it is truncated.")
    _, version, kdf, log2n, r, p, _, chunk, salt, file_id, check, _ = _HEADER.unpack(header[:HEADER_SIZE])
    if version not in READ_VERSIONS:
        raise DecryptionError(f"{name} was written by encryption format version {version}; this tamer reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))}.")
    if kdf not in (KDF_KEYFILE, KDF_SCRYPT):
        raise DecryptionError(f"{name} names key derivation {kdf}, which tamer does not know; the file is damaged.")
    if kdf != secret.kdf:
        want = "a passphrase (--passphrase-env)" if kdf == KDF_SCRYPT else "a key file (--key-file)"
        raise DecryptionError(f"{name} was encrypted with {want}; pass that instead.")
    low = 1 if version == 1 else MIN_CHUNK
    if not low <= chunk <= MAX_CHUNK:
        raise DecryptionError(f"{name} has chunk size {chunk}, outside {low}..{MAX_CHUNK}; the file is damaged.")
    if kdf == KDF_SCRYPT:
        check_scrypt(log2n, r, p, name)
    master = secret.derive(salt, log2n, r, p)
    if version == 1:
        expected, key = hmac.new(master, b"tamer key check" + file_id, hashlib.sha256).digest(), master
    else:
        expected, key = _key_check(master, file_id, header[:_CHECK_AT]), _payload_key(master, file_id)
    if not hmac.compare_digest(expected, check):
        raise DecryptionError(f"{name}: wrong key or passphrase (or a damaged header); nothing was decrypted.")
    return Header(chunk, key, master, version)


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


def _pieces(src: BinaryIO, size: int) -> Iterator[tuple[memoryview, bool]]:
    """(piece, final) for consecutive pieces of `size` bytes (the last one shorter, possibly empty). An in-memory
    source yields views of its own buffer; any other is read one piece ahead (into two reused buffers) to know which
    piece is the last. A piece is valid until the next one is asked for."""
    if type(src) is io.BytesIO:  # exactly BytesIO: a subclass may read differently
        pos = src.tell()
        with memoryview(src.getvalue()) as whole:  # its own bytes, not a copy (getbuffer() would copy them all)
            end = len(whole)
            src.seek(0, io.SEEK_END)
            while True:
                n = max(0, min(size, end - pos))
                with whole[pos:pos + n] as piece:
                    yield piece, pos + n >= end
                if pos + n >= end:
                    return
                pos += n
        return
    current, following = bytearray(size), bytearray(size)
    n = _fill(src, current)
    while True:
        m = _fill(src, following) if n == size else 0
        with memoryview(current) as view, view[:n] as piece:
            yield piece, m == 0
        if m == 0:
            return
        current, following, n = following, current, m


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


def _is_file(dst: BinaryIO) -> bool:
    try:
        dst.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    return True


class _Writer:
    """Writes filled buffers to `dst` on a background thread while the caller seals the next chunk.

    AES-GCM (cryptography) and file writes both release the GIL, so the cipher overlaps the disk instead of
    waiting for it. At most `depth` buffers of `size` bytes circulate, made only when none is free (a fresh
    multi-megabyte buffer costs its page faults). A sink with no file descriptor (BytesIO, a socket wrapper) is
    written inline with one buffer: its writes are memory copies that hold the GIL, so a thread would only add
    hand-offs."""

    def __init__(self, dst: BinaryIO, size: int, depth: int = 2):
        self._dst, self._size = dst, size
        self._inline = not _is_file(dst)
        self._left = 1 if self._inline else depth
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = None
        if not self._inline:
            self._thread = threading.Thread(target=self._run, name="tamer-crypto-writer", daemon=True)
            self._thread.start()

    def buffer(self) -> bytearray:
        """A buffer free to fill (waits while all are queued); raises the writer's error, if it had one."""
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            if self._left:
                self._left -= 1
                buf = bytearray(self._size)
            else:
                buf = self._free.get()
        if self._error is not None:
            raise self._error
        return buf

    def write(self, buf: bytearray, end: int) -> None:
        """Write `buf[:end]` (queued, unless inline), then hand `buf` back to the pool."""
        if self._inline:
            self._write(buf, end)
        else:
            self._todo.put((buf, end))

    def _write(self, buf: bytearray, end: int) -> None:
        try:
            if self._error is None and not self._abandoned:
                with memoryview(buf) as view, view[:end] as piece:
                    self._dst.write(piece)
        except BaseException as exc:  # handed to the caller at its next buffer() or at exit
            self._error = exc
        finally:
            self._free.put(buf)

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            self._write(*item)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._abandoned = exc_type is not None  # the caller failed: its output is discarded, skip the rest
        if self._thread is not None:
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
    total = 0
    with _Writer(dst, NONCE + chunk_size + TAG) as writer, closing(_pieces(src, chunk_size)) as pieces:
        for index, (plain, final) in enumerate(pieces):
            n = len(plain)
            out = writer.buffer()
            nonce = os.urandom(NONCE)
            out[:NONCE] = nonce
            with memoryview(out) as view, view[NONCE:NONCE + n + TAG] as sealed:
                _seal(aes, nonce, plain, _aad(header, index, final), sealed)
            writer.write(out, NONCE + n + TAG)  # nonce | ciphertext | tag
            total += n
    return total


def _opened_pieces(src: BinaryIO, header: bytes, opened: Header, name: str) -> Iterator[tuple[int, memoryview, memoryview, bool]]:
    """(index, nonce, ciphertext | tag, final) for each sealed chunk after the header."""
    sealed = NONCE + opened.chunk_size + TAG
    with closing(_pieces(src, sealed)) as pieces:
        for index, (piece, final) in enumerate(pieces):
            if len(piece) < NONCE + TAG:
                raise DecryptionError(f"{name} is truncated (chunk {index} is incomplete); nothing was written.")
            yield index, piece[:NONCE], piece[NONCE:], final


def _refused(name: str, index: int) -> DecryptionError:
    return DecryptionError(f"{name} failed authentication at chunk {index}: it was changed, truncated or "
                           f"reordered after encryption; nothing was written.")


def decrypt_stream(src: BinaryIO, dst: BinaryIO, secret: Secret, name: str = "the file") -> int:
    """Decrypt `src` into `dst`, refusing any change; the caller discards `dst` on error. Returns plaintext size."""
    header = src.read(HEADER_SIZE)
    opened = open_header(header, secret, name)
    aes = AESGCM(opened.key)
    total = 0
    with _Writer(dst, opened.chunk_size) as writer, closing(_opened_pieces(src, header, opened, name)) as chunks:
        for index, nonce, body, final in chunks:
            n = len(body) - TAG
            out = writer.buffer()
            try:
                with memoryview(out) as view, view[:n] as plain:
                    _open(aes, bytes(nonce), body, _aad(header, index, final), plain)
            except InvalidTag:
                raise _refused(name, index) from None
            writer.write(out, n)
            total += n
    return total


def plaintext_size(sealed_size: int, chunk_size: int) -> int:
    """The plaintext size of a well-formed file of `sealed_size` bytes, or -1 when no file has that size."""
    step = NONCE + chunk_size + TAG
    full, rest = divmod(sealed_size - HEADER_SIZE, step)
    if sealed_size <= HEADER_SIZE or 0 < rest < NONCE + TAG:
        return -1
    return full * chunk_size + (rest - NONCE - TAG if rest else 0)


def decrypt_to_memory(src: BinaryIO, sealed_size: int, secret: Secret, name: str = "the file") -> bytearray:
    """Decrypt a whole file of `sealed_size` bytes into one buffer of its exact plaintext size: no thread, no copy,
    nothing on disk. Refuses any change, as `decrypt_stream` does."""
    header = src.read(HEADER_SIZE)
    opened = open_header(header, secret, name)
    size = plaintext_size(sealed_size, opened.chunk_size)
    if size < 0:
        raise DecryptionError(f"{name} is truncated ({sealed_size} bytes is no whole number of chunks); nothing was decrypted.")
    aes, out, pos = AESGCM(opened.key), bytearray(size), 0
    with memoryview(out) as view, closing(_opened_pieces(src, header, opened, name)) as chunks:
        for index, nonce, body, final in chunks:
            n = len(body) - TAG
            if pos + n > size:
                raise DecryptionError(f"{name} grew while it was read; nothing was decrypted.")
            try:
                with view[pos:pos + n] as plain:
                    _open(aes, bytes(nonce), body, _aad(header, index, final), plain)
            except InvalidTag:
                raise _refused(name, index) from None
            pos += n
    if pos != size:
        raise DecryptionError(f"{name} is truncated (it ends before its last chunk); nothing was decrypted.")
    return out


def atomic_write(out: str | os.PathLike, fill: Callable[[BinaryIO], object], mode: int = 0o666) -> None:
    """Write `out` through a temporary sibling renamed into place; no partial output on any error. `mode` is
    the new file's permissions (before the umask), set when it is created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tamer-tmp-{secrets.token_hex(4)}")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stream_file(src: str | os.PathLike, out: str | os.PathLike, stream, mode: int = 0o666) -> int:
    """Run `stream(source, sink)` from file `src` into `out`, written atomically; returns what `stream` returns."""
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise UsageError(f"input {str(src)!r} does not exist or is not a file.")
    size = 0

    def fill(f):
        nonlocal size
        with open(src, "rb") as s:
            size = stream(s, f)

    atomic_write(out, fill, mode)
    return size


def encrypt_file(src: str | os.PathLike, out: str | os.PathLike, secret: Secret, chunk_size: int = DEFAULT_CHUNK,
                 salt: bytes | None = None) -> int:
    return _stream_file(src, out, lambda s, f: encrypt_stream(s, f, secret, chunk_size, salt))


def decrypt_file(src: str | os.PathLike, out: str | os.PathLike, secret: Secret) -> int:
    """Decrypt `src` into `out`, owner-only (0600): the plaintext is the secret the file guarded."""
    return _stream_file(src, out, lambda s, f: decrypt_stream(s, f, secret, Path(src).name), mode=0o600)


def encrypt_bytes(data: bytes, secret: Secret, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    buf = io.BytesIO()
    encrypt_stream(io.BytesIO(data), buf, secret, chunk_size)
    return buf.getvalue()


def decrypt_bytes(data: bytes, secret: Secret, name: str = "the data") -> bytes:
    return bytes(decrypt_to_memory(io.BytesIO(data), len(data), secret, name))
