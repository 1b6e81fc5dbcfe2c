"""The CLI end to end on digits, --json, and bad input: one clear sentence, exit code 2, nothing written."""
import json
import shutil

import pytest

from tamer.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_evaluate_end_to_end(tmp_path, capsys):
    code, out, _ = _run(capsys, "train", "digits", "--out", str(tmp_path / "a"), "--json")
    assert code == 0
    trained = json.loads(out)
    assert trained["report"]["test"]["accuracy"] >= 0.95
    code, out, _ = _run(capsys, "evaluate", str(tmp_path / "a"), "--json")
    assert code == 0
    ev = json.loads(out)
    assert ev["metrics"]["accuracy"] == pytest.approx(trained["report"]["test"]["accuracy"])
    assert ev["metrics"]["accuracy"] >= 0.95 and ev["metrics"]["macro_f1"] >= 0.95
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert trained["headline"] == {"metric": "accuracy", "value": manifest["metrics"]["test"]["accuracy"], "split": "test"}
    assert ev["headline"] == {"metric": "accuracy", "value": ev["metrics"]["accuracy"], "split": "test"}
    code, out, _ = _run(capsys, "evaluate", str(tmp_path / "a"))
    assert code == 0 and "accuracy" in out and not out.startswith("{")


def test_tasks_lists_builtins(capsys):
    code, out, _ = _run(capsys, "tasks", "--json")
    assert code == 0
    assert {"digits", "text-classification", "causal-lm"} <= {t["name"] for t in json.loads(out)["tasks"]}


def _refused(capsys, tmp_path, argv, pattern):
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _run(capsys, *argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err and err.startswith("tamer: error: ")
    assert len(err.strip().splitlines()) == 1
    assert pattern in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err


def test_unknown_task(capsys, tmp_path):
    _refused(capsys, tmp_path, ["train", "nope", "--out", str(tmp_path / "o")], "unknown task 'nope'")


def test_unknown_option(capsys, tmp_path):
    _refused(capsys, tmp_path, ["train", "digits", "--colour", "red", "--out", str(tmp_path / "o")], "--colour")


def test_bad_option_value(capsys, tmp_path):
    _refused(capsys, tmp_path, ["train", "digits", "--optimizer", "adam", "--out", str(tmp_path / "o")], "adamw, sgd")
    _refused(capsys, tmp_path, ["train", "digits", "--epochs", "0", "--out", str(tmp_path / "o")], "--epochs 0")
    _refused(capsys, tmp_path, ["train", "digits", "--lr", "fast", "--out", str(tmp_path / "o")], "--lr 'fast'")


def test_missing_data_file(capsys, tmp_path):
    _refused(capsys, tmp_path, ["train", "text-classification", "--encoder", "tiny", "--data", str(tmp_path / "none.tsv"),
                                "--out", str(tmp_path / "o")], "does not exist")


def test_wrong_columns(capsys, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("sentence,score\nhello,1\nbye,0\n")
    _refused(capsys, tmp_path, ["train", "text-classification", "--encoder", "tiny", "--data", str(data),
                                "--out", str(tmp_path / "o")], "no column 'text'")


def test_empty_dataset(capsys, tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("\n\n")
    _refused(capsys, tmp_path, ["train", "text-classification", "--encoder", "tiny", "--data", str(data),
                                "--out", str(tmp_path / "o")], "holds no examples")


def test_corrupted_artifact(capsys, tmp_path, digits_artifact):
    bad = tmp_path / "bad"
    shutil.copytree(digits_artifact.path, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    _refused(capsys, tmp_path, ["evaluate", str(bad)], "does not match its sha256")


def test_existing_output(capsys, tmp_path, digits_artifact):
    _refused(capsys, tmp_path, ["train", "digits", "--epochs", "1", "--out", str(digits_artifact.path)], "already exists")


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception):
        main(["train", "nope", "--debug"])
