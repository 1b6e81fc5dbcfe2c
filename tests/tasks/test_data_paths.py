"""An artifact finds its data from any working directory: file options keep what was typed in the manifest (and the
id) and their absolute paths under `run`; data that moved is refused in one sentence, with no traceback."""
import json
import shutil

import numpy as np
import pytest

import tamer
from tamer.cli import main

ROWS = [("great food and service", "pos"), ("terrible, cold food", "neg"), ("loved it, will come back", "pos"),
        ("rude staff and dirty tables", "neg"), ("excellent and friendly staff", "pos"), ("never again, awful", "neg")]


def _project(root):
    """A folder holding data/d.tsv and data/public.txt, as a user's project would."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "d.tsv").write_text("".join(f"{t} {i}\t{y}\n" for i in range(10) for t, y in ROWS))
    (root / "data" / "public.txt").write_text("".join(f"{t}\n" for t, _ in ROWS))
    return root


def _train(root, monkeypatch, out):
    monkeypatch.chdir(root)
    return tamer.train("text-classification", data="data/d.tsv", tokenizer_data="data/public.txt", encoder="tiny",
                       epochs=1, out=out, progress=False)


def test_evaluate_from_anywhere_then_a_clear_error_when_the_data_moved(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path / "project")
    art = _train(project, monkeypatch, tmp_path / "a")
    config = art.manifest["task"]["config"]
    assert (config["data"], config["tokenizer_data"]) == ("data/d.tsv", "data/public.txt")  # as typed: in the id
    assert art.manifest["run"]["data_files"] == {"data": str(project / "data" / "d.tsv"),
                                                 "tokenizer_data": str(project / "data" / "public.txt")}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # data/d.tsv does not resolve from here
    report = tamer.evaluate(tmp_path / "a")
    assert report.metrics["accuracy"] == pytest.approx(art.metrics["test"]["accuracy"])
    assert tamer.predict(tmp_path / "a", index=0)[0]["expected"] in ("neg", "pos")
    child = tamer.compress(tmp_path / "a", prune=0.5, out=tmp_path / "pruned", progress=False)  # a child reads it too
    assert child.manifest["run"]["data_files"] == art.manifest["run"]["data_files"]
    assert child.manifest["task"]["config"]["data"] == "data/d.tsv"

    shutil.move(str(project / "data"), str(tmp_path / "moved"))
    for artifact in (tmp_path / "a", tmp_path / "pruned"):
        code = main(["evaluate", str(artifact)])
        out, err = capsys.readouterr()
        assert code == 2, err
        assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
        assert "no longer at" in err and str(project / "data" / "d.tsv") in err and "--data FILE" in err
    assert main(["predict", str(tmp_path / "a"), "--index", "0"]) == 2
    assert "no longer at" in capsys.readouterr().err
    # what does not need the training data still works: raw inputs, and another file with --data
    assert tamer.predict(tmp_path / "a", "great food")[0]["label"] in ("neg", "pos")
    code = main(["evaluate", str(tmp_path / "a"), "--data", str(tmp_path / "moved" / "d.tsv"), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["metrics"]["examples"] == 60


def test_the_id_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """The same data at the same typed path in two folders gives the same id (digits: its training is deterministic;
    the tiny text encoder's WordPiece tokenizer is not, whatever the folder)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    arts = []
    for name in ("one", "two"):
        (tmp_path / name / "data").mkdir(parents=True)
        np.savez(tmp_path / name / "data" / "digits.npz", images=digits.images[:300], labels=digits.target[:300])
        monkeypatch.chdir(tmp_path / name)
        arts.append(tamer.train("digits", data="data/digits.npz", channels=4, hidden=16, epochs=1,
                                out=tmp_path / f"a-{name}", progress=False))
    one, two = arts
    assert one.manifest["run"]["data_files"] == {"data": str(tmp_path / "one" / "data" / "digits.npz")}
    assert two.manifest["run"]["data_files"] == {"data": str(tmp_path / "two" / "data" / "digits.npz")}
    assert one.manifest["task"]["config"]["data"] == "data/digits.npz"
    assert one.id == two.id
    monkeypatch.chdir(tmp_path)
    assert tamer.evaluate(one.path).metrics["accuracy"] == pytest.approx(one.metrics["test"]["accuracy"])
