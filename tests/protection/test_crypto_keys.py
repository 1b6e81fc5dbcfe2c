"""Key hardening (format version 2): scrypt cost and its memory cap, a subkey per file, a minimum chunk size, and
version 1 files still opening. Subkeys and the version 1 format are rebuilt here by hand from `cryptography`."""
import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tamer.errors import UsageError
from tamer.protection import crypto, keys
from tamer.protection.config import EncryptConfig
from tamer.protection.crypto import HEADER_SIZE, NONCE
from tamer.protection.keys import DecryptionError, Secret
from v1_format import seal_v1

KEY = Secret(key=bytes(range(32)))
PASS = Secret(passphrase=b"correct horse battery staple")


def _hkdf(master: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master)


def test_passphrase_files_cost_scrypt_n_2_17_at_least():
    blob = crypto.encrypt_bytes(b"weights", PASS)
    log2n, r, p = blob[10], blob[11], blob[12]
    assert log2n >= 17 and keys.scrypt_memory(log2n, r, p) >= 128 << 20
    assert crypto.decrypt_bytes(blob, PASS) == b"weights"


@pytest.mark.parametrize("log2n, r", [(20, 8), (21, 8), (19, 32), (30, 1)])
def test_a_header_asking_for_over_1_gib_of_scrypt_is_refused_before_any_work(log2n, r, monkeypatch):
    blob = bytearray(crypto.encrypt_bytes(b"weights", PASS))
    blob[10], blob[11] = log2n, r

    def no_scrypt(*args, **kwargs):
        raise AssertionError("scrypt ran for a header that asks for too much memory")

    monkeypatch.setattr(keys, "Scrypt", no_scrypt)
    keys._SCRYPT_CACHE.clear()
    with pytest.raises(DecryptionError, match="1 GiB"):
        crypto.decrypt_bytes(bytes(blob), PASS)


def test_each_file_is_sealed_under_its_own_subkey():
    a, b = crypto.encrypt_bytes(b"A" * 100, KEY), crypto.encrypt_bytes(b"B" * 100, KEY)
    assert a[8] == b[8] == crypto.VERSION == 2
    keys = []
    for blob in (a, b):
        header, nonce, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:HEADER_SIZE + NONCE], blob[HEADER_SIZE + NONCE:]
        aad = header + struct.pack(">QB", 0, 1)
        with pytest.raises(Exception):  # the master key itself opens nothing
            AESGCM(KEY.key).decrypt(nonce, body, aad)
        key = _hkdf(KEY.key, header[36:52], b"tamer v2 payload")  # salt: the file's random id
        assert AESGCM(key).decrypt(nonce, body, aad)[:1] in (b"A", b"B")
        keys.append(key)
    assert keys[0] != keys[1]


def test_chunk_size_has_a_64_kib_minimum_when_writing_reading_and_configuring(tmp_path):
    assert crypto.MIN_CHUNK == 64 << 10
    with pytest.raises(UsageError, match="64 KiB"):
        crypto.encrypt_bytes(b"x", KEY, chunk_size=(64 << 10) - 1)
    with pytest.raises(ValueError, match="64 KiB"):
        EncryptConfig(key_file="k", chunk_size=4096)
    assert EncryptConfig(key_file="k", chunk_size=64 << 10).chunk_size == 64 << 10
    # a version 2 header with a 4 KiB chunk and a valid key check is still refused
    blob = crypto.encrypt_bytes(b"x" * 10, KEY, chunk_size=64 << 10)
    head = bytearray(blob[:HEADER_SIZE])
    head[16:20] = (4096).to_bytes(4, "big")
    check_key = _hkdf(KEY.key, bytes(head[36:52]), b"tamer v2 key check")
    head[52:84] = hmac.new(check_key, bytes(head[:52]), hashlib.sha256).digest()
    with pytest.raises(DecryptionError, match="chunk size 4096"):
        crypto.decrypt_bytes(bytes(head) + blob[HEADER_SIZE:], KEY)


def test_version_1_files_still_open_and_are_still_authenticated():
    data = os.urandom(3000)
    old = seal_v1(data, KEY.key, chunk=1000)  # version 1 allowed any chunk size
    assert crypto.decrypt_bytes(old, KEY) == data
    for i in (9, 40, HEADER_SIZE + 3, HEADER_SIZE + 500, len(old) - 1):
        bad = bytearray(old)
        bad[i] ^= 1
        with pytest.raises(DecryptionError):
            crypto.decrypt_bytes(bytes(bad), KEY)
    with pytest.raises(DecryptionError, match="wrong key"):
        crypto.decrypt_bytes(old, Secret(key=bytes(32)))
    salt = os.urandom(16)  # a version 1 passphrase file: scrypt n = 2^15
    master = keys.Secret(passphrase=PASS.passphrase).derive(salt, 15, 8, 1)
    old = seal_v1(b"hello", master, chunk=1 << 20, kdf=1, scrypt=(15, 8, 1), salt=salt)
    assert crypto.decrypt_bytes(old, PASS) == b"hello"


def test_secrets_never_show_in_repr():
    assert KEY.key.hex() not in repr(KEY) and "horse" not in repr(PASS)
