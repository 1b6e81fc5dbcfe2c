"""Streamed AES-256-GCM: round trips, and every tampering refused (bit flips, reorder, drop, truncation, wrong key)."""
import io
import os
import struct

import pytest

from tamer.protection import crypto, keys
from tamer.protection.crypto import HEADER_SIZE, NONCE, TAG
from tamer.protection.keys import DecryptionError, Secret

KEY = Secret(key=bytes(range(32)))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of a few bytes exercise the framing of 4 MiB ones thousands of times faster; the real 64 KiB minimum
    is checked in test_crypto_keys.py."""
    monkeypatch.setattr(crypto, "MIN_CHUNK", 16)


def payload_key(blob: bytes, master: bytes = KEY.key) -> bytes:
    """The file's own AES key, derived by hand: HKDF-SHA256(master, salt = file id at header bytes 36..52)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=blob[36:52], info=b"tamer v2 payload").derive(master)


def _chunks(blob: bytes, chunk: int) -> tuple[bytes, list[bytes]]:
    header, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:]
    step = NONCE + chunk + TAG
    return header, [body[i:i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 64, 1000])
def test_round_trip_small_sizes_and_chunk_boundaries(size):
    data = os.urandom(size)
    blob = crypto.encrypt_bytes(data, KEY, chunk_size=16)
    assert crypto.decrypt_bytes(blob, KEY) == data
    full, last = divmod(size, 16)
    assert len(blob) == HEADER_SIZE + (full + (1 if last or size == 0 else 0)) * (NONCE + TAG) + size


def test_round_trip_large_file_with_small_chunks(tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    src.write_bytes(data)
    crypto.encrypt_file(src, tmp_path / "big.enc", KEY, chunk_size=64 * 1024)
    assert crypto.decrypt_file(tmp_path / "big.enc", tmp_path / "back.bin", KEY) == len(data)
    assert (tmp_path / "back.bin").read_bytes() == data


def test_encryption_is_randomised_and_hides_plaintext():
    data = b"secret weights " * 10
    a, b = crypto.encrypt_bytes(data, KEY, 32), crypto.encrypt_bytes(data, KEY, 32)
    assert a != b and b"secret" not in a


def test_every_single_bit_flip_is_refused():
    blob = crypto.encrypt_bytes(os.urandom(40), KEY, chunk_size=16)  # 3 chunks, 220 bytes, 1,760 flips
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DecryptionError):
            crypto.decrypt_bytes(bytes(bad), KEY)


def test_chunk_reorder_drop_duplicate_and_truncation_are_refused():
    blob = crypto.encrypt_bytes(os.urandom(16 * 4 + 5), KEY, chunk_size=16)
    header, chunks = _chunks(blob, 16)
    assert len(chunks) == 5
    swapped = [chunks[1], chunks[0], *chunks[2:]]
    dropped_middle = [chunks[0], *chunks[2:]]
    dropped_last = chunks[:-1]  # ends on a full chunk that was not sealed as final
    duplicated = [*chunks[:2], chunks[1], *chunks[2:]]
    appended = [*chunks, chunks[-1]]
    for parts in (swapped, dropped_middle, dropped_last, duplicated, appended):
        with pytest.raises(DecryptionError):
            crypto.decrypt_bytes(header + b"".join(parts), KEY)
    for cut in (0, 5, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 10, len(blob) - 1, len(blob) - 16):
        with pytest.raises(DecryptionError):
            crypto.decrypt_bytes(blob[:cut], KEY)


def test_chunks_cannot_move_between_files_under_the_same_key():
    a = crypto.encrypt_bytes(b"A" * 32, KEY, 16)
    b = crypto.encrypt_bytes(b"B" * 32, KEY, 16)
    ha, ca = _chunks(a, 16)
    _, cb = _chunks(b, 16)
    with pytest.raises(DecryptionError):
        crypto.decrypt_bytes(ha + cb[0] + ca[1], KEY)


def test_wrong_key_and_wrong_kind_of_secret_are_refused():
    blob = crypto.encrypt_bytes(b"data", KEY, 16)
    with pytest.raises(DecryptionError, match="wrong key"):
        crypto.decrypt_bytes(blob, Secret(key=bytes(32)))
    with pytest.raises(DecryptionError, match="key file"):
        crypto.decrypt_bytes(blob, Secret(passphrase=b"a long passphrase"))
    with pytest.raises(DecryptionError, match="not a tamer"):
        crypto.decrypt_bytes(b"plain text, not encrypted at all" * 4, KEY)


def test_passphrase_uses_scrypt_with_params_in_header():
    secret = Secret(passphrase=b"correct horse battery")
    blob = crypto.encrypt_bytes(b"hello", secret)
    assert blob[9] == keys.KDF_SCRYPT and blob[10] == keys.SCRYPT_LOG2N >= 17
    assert crypto.decrypt_bytes(blob, secret) == b"hello"
    with pytest.raises(DecryptionError, match="wrong key"):
        crypto.decrypt_bytes(blob, Secret(passphrase=b"wrong horse battery"))


def test_chunks_are_independent_aes_gcm_messages():
    """Independent check with the raw cryptography API: chunk i opens with AAD = header | i | final, under the
    file's own key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = crypto.encrypt_bytes(b"x" * 20, KEY, 16)
    header, chunks = _chunks(blob, 16)
    aes = AESGCM(payload_key(blob))
    assert aes.decrypt(chunks[0][:12], chunks[0][12:], header + struct.pack(">QB", 0, 0)) == b"x" * 16
    assert aes.decrypt(chunks[1][:12], chunks[1][12:], header + struct.pack(">QB", 1, 1)) == b"x" * 4


def test_failed_decrypt_leaves_no_output(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(100))
    crypto.encrypt_file(src, tmp_path / "a.enc", KEY, chunk_size=16)
    bad = bytearray((tmp_path / "a.enc").read_bytes())
    bad[-3] ^= 1
    (tmp_path / "a.enc").write_bytes(bytes(bad))
    with pytest.raises(DecryptionError):
        crypto.decrypt_file(tmp_path / "a.enc", tmp_path / "out.bin", KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.enc"]


def test_memory_stays_bounded_by_chunk_size():
    """Reads from the source and writes to the sink are never larger than one (sealed) chunk."""
    class Spy(io.BytesIO):
        biggest = 0

        def readinto(self, b):
            Spy.biggest = max(Spy.biggest, len(b))
            return super().readinto(b)

        def read(self, n=-1):
            assert n != -1
            Spy.biggest = max(Spy.biggest, n)
            return super().read(n)

        def write(self, b):
            Spy.biggest = max(Spy.biggest, len(b))
            return super().write(b)

    sealed = Spy()
    crypto.encrypt_stream(Spy(os.urandom(10_000)), sealed, KEY, chunk_size=128)
    assert Spy.biggest == 12 + 128 + 16  # one write per chunk: nonce | ciphertext | tag
    Spy.biggest = 0
    crypto.decrypt_stream(Spy(sealed.getvalue()), Spy(), KEY)
    assert Spy.biggest == 12 + 128 + 16


def test_key_file_round_trip_and_refusals(tmp_path):
    path = keys.write_key_file(tmp_path / "k.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(keys.read_key_file(path)) == 32
    with pytest.raises(crypto.UsageError, match="already exists"):
        keys.write_key_file(path)
    (tmp_path / "bad.key").write_text("hello")
    with pytest.raises(crypto.UsageError, match="not a tamer key"):
        keys.read_key_file(tmp_path / "bad.key")
    with pytest.raises(crypto.UsageError, match="unset"):
        keys.secret_from_options(passphrase_env="TAMER_TEST_SURELY_UNSET")
