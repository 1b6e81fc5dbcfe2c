"""Encrypted artifacts: exact round trip, readable-but-authenticated manifest, verbs open them with the key."""
import json

import pytest

import tamer
from tamer.cli import main
from tamer.errors import ArtifactError
from tamer.protect import DecryptionError


@pytest.fixture(scope="module")
def trained(tmp_path_factory, artifact_factory):
    root = tmp_path_factory.mktemp("sealed")
    art = artifact_factory(root / "a")
    key = tamer.keygen(root / "k.key")
    tamer.encrypt(art, out=root / "e", key_file=str(key), chunk_size=4096)
    return root, art, key


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_encrypt_then_decrypt_restores_the_artifact_exactly(trained, tmp_path):
    root, art, key = trained
    assert not (root / "e" / "model.safetensors").exists()
    assert json.loads((root / "e" / "manifest.json").read_text())["id"] == art.id  # readable
    tamer.decrypt(root / "e", out=tmp_path / "d", key_file=str(key))
    assert _files(tmp_path / "d") == _files(art.path)


def test_verbs_open_an_encrypted_artifact_with_the_key(trained, monkeypatch):
    root, art, key = trained
    with pytest.raises(ArtifactError, match="encrypted"):
        tamer.load(root / "e")
    opened = tamer.load(root / "e", key_file=str(key))
    assert opened.id == art.id
    assert tamer.evaluate(root / "e", key_file=str(key)).metrics["accuracy"] == pytest.approx(art.metrics["test"]["accuracy"])


def test_passphrase_round_trip(trained, tmp_path, monkeypatch):
    root, art, _ = trained
    monkeypatch.setenv("TAMER_TEST_PASS", "a good long passphrase")
    tamer.encrypt(art, out=tmp_path / "e", passphrase_env="TAMER_TEST_PASS")
    assert json.loads((tmp_path / "e" / "encryption.json").read_text())["kdf"] == "scrypt"
    assert tamer.load(tmp_path / "e", passphrase_env="TAMER_TEST_PASS").id == art.id
    monkeypatch.setenv("TAMER_TEST_PASS", "not the passphrase")
    with pytest.raises(DecryptionError, match="wrong key"):
        tamer.decrypt(tmp_path / "e", out=tmp_path / "d", passphrase_env="TAMER_TEST_PASS")
    assert not (tmp_path / "d").exists()


def test_edited_manifest_or_weights_are_refused(trained, tmp_path):
    import shutil

    root, art, key = trained
    for target in ("manifest.json", "model.safetensors.enc", "encryption.json"):
        copy = tmp_path / f"copy-{target}"
        shutil.copytree(root / "e", copy)
        data = bytearray((copy / target).read_bytes())
        if target.endswith(".json"):
            text = data.decode()
            text = text.replace("digits", "digitz", 1) if "digits" in text else text.replace("key-file", "key-fill", 1)
            data = bytearray(text.encode())
        else:
            data[len(data) // 2] ^= 0x10
        (copy / target).write_bytes(bytes(data))
        with pytest.raises(DecryptionError):
            tamer.decrypt(copy, out=tmp_path / "out", key_file=str(key))
        assert not (tmp_path / "out").exists()


def test_cli_keygen_encrypt_decrypt_and_bad_input(trained, tmp_path, capsys):
    root, art, key = trained
    assert main(["keygen", "--out", str(tmp_path / "k2.key"), "--json"]) == 0
    assert main(["encrypt", str(art.path), "--key-file", str(tmp_path / "k2.key"), "--out", str(tmp_path / "e"), "--json"]) == 0
    assert main(["evaluate", str(tmp_path / "e"), "--key-file", str(tmp_path / "k2.key"), "--json"]) == 0
    capsys.readouterr()
    bad = [
        ["encrypt", str(art.path), "--out", str(tmp_path / "x")],  # no key
        ["encrypt", str(art.path), "--key-file", str(key), "--passphrase-env", "X", "--out", str(tmp_path / "x")],
        ["encrypt", str(art.path), "--key-file", str(key), "--chunk-size", "0", "--out", str(tmp_path / "x")],
        ["encrypt", str(art.path), "--key-file", str(tmp_path / "missing.key"), "--out", str(tmp_path / "x")],
        ["decrypt", str(tmp_path / "e"), "--key-file", str(key), "--out", str(tmp_path / "x")],  # wrong key
        ["decrypt", str(art.path), "--key-file", str(key), "--out", str(tmp_path / "x")],  # not encrypted
        ["evaluate", str(tmp_path / "e")],  # encrypted, no key
        ["keygen", "--out", str(key)],  # exists
    ]
    for argv in bad:
        assert main(argv) == 2, argv
        assert "error" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_recipe_stages_scrub_then_encrypt(tmp_path, artifact_factory):
    from tamer.pipeline import run_recipe

    data = tmp_path / "reviews.tsv"
    data.write_text("text\tlabel\nmail me at ann@example.com\t1\ngreat phone\t1\n", encoding="utf-8")
    run = run_recipe({"task": "text-classification", "options": {"data": str(data)},
                      "stages": [{"scrub": {}, "gate": {"found_email": ">= 1"}}]}, out=tmp_path / "run1", progress=False)
    assert run.status == "passed"
    assert "[EMAIL]" in (tmp_path / "run1" / "01-scrub" / "reviews.tsv").read_text()
    art = artifact_factory(tmp_path / "a")
    run = run_recipe({"task": "digits", "artifact": str(art.path), "stages": [{"encrypt": {}}]},
                     out=tmp_path / "run2", progress=False)
    folder = tmp_path / "run2" / "01-encrypt"
    assert run.status == "passed" and (folder / "artifact.key").is_file()
    assert tamer.load(folder / "artifact.encrypted", key_file=str(folder / "artifact.key")).id == art.id
