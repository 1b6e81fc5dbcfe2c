"""Bad options give one clear sentence, exit code 2, and write nothing; the recipe stage runs."""
import json

import pytest

from tamer.cli import main


@pytest.mark.parametrize("flags, words", [
    (["--quantize", "int3"], "int3"),
    (["--quantize", "int4", "--group-size", "48"], "--group-size 48"),
    (["--prune", "1.5"], "--prune 1.5"),
    (["--quantize", "int8", "--smooth-alpha", "1.5"], "--smooth-alpha 1.5"),
    (["--prune", "0.5", "--prune-kind", "structured", "--prune-units", "heads"], "--prune-units heads"),
    (["--prune", "0.5", "--prune-kind", "structured", "--prune-units", "rows"], "rows"),
    (["--prune", "0.3", "--prune-kind", "2:4"], "2:4"),
    (["--calibration", "gptq"], "gptq"),
    ([], "nothing to do"),
])
def test_bad_options_exit_2(digits_artifact, tmp_path, capsys, flags, words):
    out = tmp_path / "x"
    assert main(["compress", str(digits_artifact.path), "--out", str(out), *flags]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_group_size_not_dividing_a_layer(text_artifact, tmp_path, capsys):
    out = tmp_path / "x"  # the tiny BERT is 64 wide: 128 columns per group do not divide it
    assert main(["compress", str(text_artifact.path), "--out", str(out), "--quantize", "int4", "--group-size", "128"]) == 2
    err = capsys.readouterr().err
    assert "does not divide the input width 64" in err
    assert not out.exists()


def test_cli_json(digits_artifact, tmp_path, capsys):
    assert main(["compress", str(digits_artifact.path), "--out", str(tmp_path / "q"), "--quantize", "int8", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["metrics"]["size_ratio"] < 0.3 and payload["id"]
    child = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert payload["headline"] == {"metric": "accuracy", "value": child["metrics"]["test"]["accuracy"], "split": "test"}


def test_recipe_stage(tmp_path):
    import tamer

    report = tamer.run({"task": "digits", "stages": [{"train": {"epochs": 2}},
                                                     {"compress": {"quantize": "int8"}, "gate": {"size_ratio": "<= 0.3"}}]},
                       out=tmp_path / "run", progress=False)
    assert report.status == "passed"
    assert tamer.load(report.artifact).manifest["format"] == "int8"


def test_every_artifact_verb_returns_the_artifact_with_its_report(digits_artifact, tmp_path, capsys):
    """tamer.compress (plain and sealed) and tamer.train return an Artifact, the verb's report attached, and the
    CLI prints that same report."""
    import tamer
    from tamer import Artifact
    from tamer.compression.report import CompressReport
    from tamer.training import TrainReport

    child = tamer.compress(digits_artifact, out=tmp_path / "q", progress=False, quantize="int8", activations="weight-only")
    assert isinstance(child, Artifact) and isinstance(child.report, CompressReport)
    assert child.report.id == child.id == Artifact.load(tmp_path / "q").id
    key = tmp_path / "k"
    tamer.keygen(key)
    sealed = tamer.compress(digits_artifact, out=tmp_path / "s", progress=False, quantize="int8", activations="weight-only",
                            key_file=str(key))
    assert isinstance(sealed, Artifact) and sealed.in_memory and sealed.report.artifact == str(tmp_path / "s")
    trained = tamer.train("digits", epochs=1, out=tmp_path / "t", progress=False)
    assert isinstance(trained.report, TrainReport) and trained.report.test == trained.metrics["test"]
