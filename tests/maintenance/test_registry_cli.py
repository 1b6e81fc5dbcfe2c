"""The registry from the command line: what verbs record (train then compress: the lineage), the commands' --json
and text, and bad input as one sentence with exit code 2."""
import json

import pytest

import tamer
from registry_helpers import fake_manifest
from tamer.cli import main


@pytest.fixture
def own_registry(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'own.db'}"
    monkeypatch.setenv("TAMER_REGISTRY_URL", url)
    with tamer.registry() as reg:
        for aid, parents in (("aaaa0001", ()), ("aaaa0002", ("aaaa0001",))):
            (tmp_path / aid).mkdir()
            reg.register(fake_manifest(aid, parents), str(tmp_path / aid))
    return url


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_then_compress_records_the_lineage(tmp_path, capsys):
    assert main(["train", "digits", "--epochs", "1", "--out", str(tmp_path / "p"), "--json", "--quiet"]) == 0
    parent = _json(capsys)["id"]
    assert main(["compress", str(tmp_path / "p"), "--prune", "0.3", "--quantize", "int8", "--activations",
                 "weight-only", "--out", str(tmp_path / "c"), "--json", "--quiet"]) == 0
    child = _json(capsys)["id"]
    assert main(["registry", "lineage", parent, "--json"]) == 0
    family = _json(capsys)
    pruned = (tmp_path / "c.prune").resolve()
    middle = next(n["id"] for n in family["nodes"] if n.get("path") == str(pruned))  # the intermediate child too
    assert {tuple(e) for e in family["edges"]} >= {(parent, middle), (middle, child)}
    assert main(["registry", "show", child, "--json"]) == 0
    shown = _json(capsys)
    assert shown["parents"] == [middle] and shown["format"] == "int8" and shown["verb"] == "compress"
    assert shown["path"] == str((tmp_path / "c").resolve())
    assert main(["registry", "promote", child, "--to", "production", "--reason", "smaller"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {child}")
    assert tamer.resolve("production") == (tmp_path / "c").resolve()


def test_harden_and_stability_calibrate_record_their_children(digits_artifact, tmp_path, capsys):
    assert main(["harden", str(digits_artifact.path), "--epochs", "1", "--steps", "2", "--eval-steps", "3",
                 "--limit", "40", "--out", str(tmp_path / "h"), "--json", "--quiet"]) == 0
    hardened = _json(capsys)["id"]
    assert main(["stability", str(digits_artifact.path), "--calibrate", "--out", str(tmp_path / "c"), "--json"]) == 0
    calibrated = _json(capsys)["id"]
    for child, verb in ((hardened, "harden"), (calibrated, "stability")):
        row = tamer.api.show(child)
        assert row["parents"] == [digits_artifact.id] and row["verb"] == verb
    assert {hardened, calibrated} <= set(tamer.api.show(digits_artifact.id)["children"])


def test_encrypt_and_decrypt_record_their_copies(own_registry, digits_artifact, tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    assert main(["encrypt", str(digits_artifact.path), "--key-file", str(tmp_path / "k"), "--out", str(tmp_path / "s")]) == 0
    assert main(["decrypt", str(tmp_path / "s"), "--key-file", str(tmp_path / "k"), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main(["registry", "show", digits_artifact.id, "--json"]) == 0
    copies = {(c["uri"], c["sealed"]) for c in _json(capsys)["locations"]}
    assert copies == {(str(digits_artifact.path.resolve()), False), (str((tmp_path / "s").resolve()), True),
                      (str((tmp_path / "d").resolve()), False)}


def test_the_commands_print_for_people_and_as_json(own_registry, capsys):
    assert main(["registry", "promote", "aaaa0001", "--to", "production"]) == 0
    assert main(["registry", "promote", "aaaa0002", "--to", "production", "--json"]) == 0
    capsys.readouterr()
    assert main(["registry", "tag", "production", "owner=alice", "stage=beta", "--json"]) == 0
    assert [e["reason"] for e in _json(capsys)["events"]] == ["owner=alice", "stage=beta"]
    assert main(["registry", "list"]) == 0
    text = capsys.readouterr().out
    assert "aaaa0002" in text and "production" in text
    assert main(["registry", "history", "production", "--json"]) == 0
    assert [e["to_id"] for e in _json(capsys)["events"]] == ["aaaa0001", "aaaa0002"]
    assert main(["rollback", "production", "--json"]) == 0
    assert _json(capsys)["to_id"] == "aaaa0001"
    assert main(["registry", "lineage", "aaaa0001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("aaaa0001") and "[production]" in lines[0] and lines[1].startswith("  aaaa0002")


@pytest.mark.parametrize("argv, words", [
    (["registry", "show", "nope"], "no artifact or alias named 'nope'"),
    (["registry", "lineage", "nope"], "no artifact or alias named 'nope'"),
    (["registry", "promote", "nope", "--to", "production"], "no artifact or alias named 'nope'"),
    (["registry", "history", "staging"], "alias 'staging' is unknown"),
    (["rollback", "staging"], "alias 'staging' is unknown"),
    (["registry", "rollback", "production"], "has no earlier artifact to roll back to"),
    (["registry", "tag", "aaaa0001", "owner"], "tag 'owner' is not accepted; write it as KEY=VALUE"),
    (["registry", "tag", "aaaa0001", "=x"], "write it as KEY=VALUE"),
    (["registry", "add", "/nonexistent/folder"], "is not a tamer artifact"),
    (["registry"], "the following arguments are required"),
])
def test_bad_input_is_one_sentence_and_exit_2(own_registry, argv, words, capsys):
    main(["registry", "promote", "aaaa0001", "--to", "production"])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tamer: error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("url, words", [
    ("postgresql+psycopg://tamer:s3cret@127.0.0.1:1/none", "cannot be reached"),
    ("sqlite:////proc/no/such/registry.db", "cannot be created"),
    ("mysql://x@y/z", "runs on sqlite and postgresql"),
    ("not a url", "is not a database URL"),
])
def test_an_unreachable_registry_is_one_sentence_and_exit_2(monkeypatch, url, words, capsys):
    monkeypatch.setenv("TAMER_REGISTRY_URL", url)
    assert main(["registry", "list", "--json"]) == 2
    out = capsys.readouterr()
    assert words in json.loads(out.out)["error"] and out.err.count("\n") == 1 and "s3cret" not in out.out + out.err


def test_a_verb_keeps_its_artifact_when_the_registry_cannot_be_written(monkeypatch, digits_artifact, tmp_path, capsys):
    monkeypatch.setenv("TAMER_REGISTRY_URL", "sqlite:////proc/no/such/registry.db")
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    assert main(["encrypt", str(digits_artifact.path), "--key-file", str(tmp_path / "k"), "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"tamer: warning: artifact {digits_artifact.id} at ") and "tamer registry add" in err
    assert f"{tmp_path / 's'} is kept but was not recorded in the registry" in err
    assert (tmp_path / "s" / "encryption.json").is_file()  # the sealed copy is kept
    monkeypatch.setenv("TAMER_REGISTRY_URL", "none")  # recording turned off: no warning, and the commands say so
    assert main(["encrypt", str(digits_artifact.path), "--key-file", str(tmp_path / "k"), "--out", str(tmp_path / "t")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["registry", "list"]) == 2 and "the registry is turned off" in capsys.readouterr().err


def test_registry_add_records_a_folder_written_elsewhere(own_registry, digits_artifact, capsys):
    assert main(["registry", "add", str(digits_artifact.path), "--json"]) == 0
    row = _json(capsys)
    assert row["id"] == digits_artifact.id and row["new"] is True
    assert main(["registry", "add", str(digits_artifact.path), "--json"]) == 0
    assert _json(capsys)["new"] is False
    assert tamer.resolve(digits_artifact.id) == digits_artifact.path.resolve()
    assert tamer.resolve(str(digits_artifact.path)) == digits_artifact.path


def test_the_tests_record_outside_the_repository(registry_for_the_session):
    from pathlib import Path

    import os

    root = Path(__file__).resolve().parents[2]
    assert os.environ["TAMER_REGISTRY_URL"] == registry_for_the_session  # set before any test module copied it
    assert not Path(registry_for_the_session.removeprefix("sqlite:///")).resolve().is_relative_to(root)
