"""The background writer of crypto streams: same bytes as a plain sequential writer, errors surface, no thread is left."""
import io
import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tamer.protect import crypto

KEY = crypto.Secret(key=bytes(range(32)))


def _writers_alive() -> int:
    return sum(t.name == "tamer-crypto-writer" and t.is_alive() for t in threading.enumerate())


def _reference_decrypt(sealed: bytes) -> bytes:
    """The file format read by hand (header, then nonce | ciphertext | tag per chunk), independent of decrypt_stream."""
    header = sealed[:crypto.HEADER_SIZE]
    chunk = int.from_bytes(header[16:20], "big")  # magic 8 | version, kdf, log2n, r, p | reserved 3 | chunk u32
    aes, pos, index, plain = AESGCM(KEY.key), crypto.HEADER_SIZE, 0, b""
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


@pytest.mark.parametrize("room", [200, 5_000, 40_000])
def test_a_failing_sink_raises_its_error_and_leaves_no_thread(room):
    with pytest.raises(OSError, match="No space left"):
        crypto.encrypt_stream(io.BytesIO(os.urandom(100_000)), _FullDisk(room), KEY, chunk_size=1024)
    sealed = crypto.encrypt_bytes(os.urandom(100_000), KEY, chunk_size=1024)
    with pytest.raises(OSError, match="No space left"):
        crypto.decrypt_stream(io.BytesIO(sealed), _FullDisk(room), KEY)
    assert _writers_alive() == 0


def test_a_failing_file_write_leaves_no_partial_output(tmp_path, monkeypatch):
    src = tmp_path / "plain.bin"
    src.write_bytes(os.urandom(300_000))
    real_writer = crypto._Writer

    class Failing(real_writer):
        def __init__(self, dst, size, depth=2):
            super().__init__(_FullDisk(50_000), size, depth)

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
