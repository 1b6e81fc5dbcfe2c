"""Every verb that reads an artifact opens a sealed one with its key; a key given means sealed output (trust issue)."""
import json

import pytest

import tamer
from tamer.cli import main


@pytest.fixture(scope="module")
def sealed(digits_artifact, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sealed")
    key = tamer.keygen(folder / "k.key")
    tamer.encrypt(digits_artifact, key_file=str(key), out=folder / "a.sealed")
    return folder / "a.sealed", key


def test_explain_opens_a_sealed_artifact_with_its_key_and_names_it(sealed, tmp_path, capsys):
    path, key = sealed
    assert main(["explain", str(path), "--index", "0", "--method", "saliency", "--out", str(tmp_path / "x"),
                 "--key-file", str(key), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["metrics"]
    assert main(["explain", str(path), "--index", "0", "--out", str(tmp_path / "y")]) == 2  # no key: refused
    assert "encrypted" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_compress_of_a_sealed_artifact_writes_a_sealed_child_and_no_plaintext(sealed, tmp_path, capsys):
    path, key = sealed
    out = tmp_path / "q"
    assert main(["compress", str(path), "--quantize", "int8", "--out", str(out), "--key-file", str(key), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["artifact"] == str(out)
    assert (out / "encryption.json").is_file() and not (out / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["q"]  # the private working folder is gone
    child = tamer.load(out, key_file=str(key))
    assert child.manifest["format"] == "int8" and child.manifest["parents"] == [tamer.load(path, key_file=str(key)).id]
    with pytest.raises(tamer.errors.TamerError, match="encrypted"):
        tamer.load(out)
