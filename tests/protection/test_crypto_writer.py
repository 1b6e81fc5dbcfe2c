"""The background writer of crypto streams: same bytes as a plain sequential writer, errors surface, no thread is left."""
import io
import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tamer.protection import crypto, keys

KEY = keys.Secret(key=bytes(range(32)))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Many small chunks keep the writer thread busy in little time (the real minimum is 64 KiB)."""
    monkeypatch.setattr(crypto, "MIN_CHUNK", 1024)


def _writers_alive() -> int:
    return sum(t.name == "tamer-crypto-writer" and t.is_alive() for t in threading.enumerate())


def _reference_decrypt(sealed: bytes) -> bytes:
    """The file format read by hand (header, then nonce | ciphertext | tag per chunk), independent of decrypt_stream:
    the file's key is HKDF-SHA256 of the master key with the file id (header bytes 36..52) as salt."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    header = sealed[:crypto.HEADER_SIZE]
    chunk = int.from_bytes(header[16:20], "big")  # magic 8 | version, kdf, log2n, r, p | reserved 3 | chunk u32
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=header[36:52], info=b"tamer v2 payload").derive(KEY.key)
    aes, pos, index, plain = AESGCM(key), crypto.HEADER_SIZE, 0, b""
    step = crypto.NONCE + chunk + crypto.TAG
    while True:
        piece = sealed[pos:pos + step]
        pos += len(piece)
        final = pos == len(sealed)
        plain += aes.decrypt(piece[:crypto.NONCE], piece[crypto.NONCE:], header + index.to_bytes(8, "big") + bytes([final]))
        if final:
            return plain
        index += 1


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 50_000])
def test_stream_matches_the_format_read_by_hand(size):
    data = os.urandom(size)
    sealed = crypto.encrypt_bytes(data, KEY, chunk_size=4096)
    assert _reference_decrypt(sealed) == data
    assert crypto.decrypt_bytes(sealed, KEY) == data
    assert _writers_alive() == 0


class _FullDisk(io.BytesIO):
    def __init__(self, room: int):
        super().__init__()
        self.room = room

    def write(self, b):
        if self.tell() + len(b) > self.room:
            raise OSError(28, "No space left on device")
        return super().write(b)


class _FullFile(_FullDisk):
    """The same, with a file descriptor: a sink that has one is written by the background thread."""

    def fileno(self):
        return 2


def test_only_a_sink_with_a_file_descriptor_gets_a_writer_thread(tmp_path):
    with crypto._Writer(io.BytesIO(), 16) as writer:
        assert _writers_alive() == 0
    with open(tmp_path / "f", "wb") as f, crypto._Writer(f, 16) as writer:
        writer.write(writer.buffer(), 16)
        assert _writers_alive() == 1
    assert _writers_alive() == 0 and (tmp_path / "f").stat().st_size == 16


@pytest.mark.parametrize("sink", [_FullDisk, _FullFile])
@pytest.mark.parametrize("room", [200, 5_000, 40_000])
def test_a_failing_sink_raises_its_error_and_leaves_no_thread(room, sink):
    with pytest.raises(OSError, match="No space left"):
        crypto.encrypt_stream(io.BytesIO(os.urandom(100_000)), sink(room), KEY, chunk_size=1024)
    sealed = crypto.encrypt_bytes(os.urandom(100_000), KEY, chunk_size=1024)
    with pytest.raises(OSError, match="No space left"):
        crypto.decrypt_stream(io.BytesIO(sealed), sink(room), KEY)
    assert _writers_alive() == 0


@pytest.mark.parametrize("size", [0, 1023, 1024, 50_000])
def test_the_writer_thread_writes_the_same_bytes(size, tmp_path):
    data = os.urandom(size)
    with open(tmp_path / "sealed", "wb") as f:
        crypto.encrypt_stream(io.BytesIO(data), f, KEY, chunk_size=1024)
    assert _reference_decrypt((tmp_path / "sealed").read_bytes()) == data
    with open(tmp_path / "sealed", "rb") as f, open(tmp_path / "plain", "wb") as out:
        crypto.decrypt_stream(f, out, KEY)
    assert (tmp_path / "plain").read_bytes() == data and _writers_alive() == 0


def test_a_failing_file_write_leaves_no_partial_output(tmp_path, monkeypatch):
    src = tmp_path / "plain.bin"
    src.write_bytes(os.urandom(300_000))
    real_writer = crypto._Writer

    class Failing(real_writer):
        def __init__(self, dst, size, depth=2):
            super().__init__(_FullFile(50_000), size, depth)

    monkeypatch.setattr(crypto, "_Writer", Failing)
    with pytest.raises(OSError):
        crypto.encrypt_file(src, tmp_path / "sealed.enc", KEY, chunk_size=4096)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.bin"]
    assert _writers_alive() == 0


def test_tampering_found_mid_stream_stops_the_writer():
    sealed = bytearray(crypto.encrypt_bytes(os.urandom(64_000), KEY, chunk_size=1024))
    sealed[len(sealed) // 2] ^= 1
    with pytest.raises(crypto.DecryptionError, match="failed authentication"):
        crypto.decrypt_stream(io.BytesIO(bytes(sealed)), io.BytesIO(), KEY)
    assert _writers_alive() == 0
