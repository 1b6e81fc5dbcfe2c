"""Recipes: stages chain, gates stop a run with a report of what passed, bad recipes fail before anything runs."""
import json
import os
import re

import pytest

import tamer
from tamer.cli import main
from tamer.errors import UsageError
from tamer.pipeline import load_recipe


def test_default_recipe_is_train_evaluate_on_digits():
    spec = load_recipe(None)
    assert spec["task"] == "digits"
    assert [next(k for k in s if k not in ("gate", "name")) for s in spec["stages"]][:2] == ["train", "evaluate"]


def test_recipe_runs_and_writes_one_html_report(tmp_path):
    recipe = {"name": "t", "task": "digits", "stages": [
        {"train": {"epochs": 3}}, {"evaluate": {}, "gate": {"accuracy": ">= 0.5"}}]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert run.status == "passed" and [s.status for s in run.stages] == ["passed", "passed"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # learning curves + two confusion matrices, embedded
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained
    assert json.loads((tmp_path / "run" / "report.json").read_text())["status"] == "passed"
    assert tamer.load(run.artifact).task == "digits"


def test_failed_gate_stops_and_reports_what_passed(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: digits\nstages:\n  - train: {epochs: 1}\n    gate: {accuracy: '>= 0.999'}\n  - evaluate: {}\n")
    code = main(["run", str(recipe), "--out", str(tmp_path / "run"), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "gate failed at stage 01-train: accuracy" in err and ">= 0.999" in err
    report = json.loads(out)["report"]
    assert [s["status"] for s in report["stages"]] == ["failed", "skipped"]
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.parametrize("text, pattern", [
    ("task: digits\nstages:\n  - fly: {}\n", "must name exactly one of"),
    ("task: digits\nstages:\n  - train: {colour: red}\n", "unknown option 'colour'"),
    ("task: digits\nstages:\n  - train: {epochs: 1}\n    gate: {accuracy: 'about 0.9'}\n", "gate rule 'about 0.9'"),
    ("task: nope\nstages:\n  - train: {}\n", "unknown task 'nope'"),
    ("task: digits\nstages: []\n", "no stages"),
    ("task: digits\nstage: []\n", "recipe key 'stage'"),
])
def test_bad_recipes_fail_before_running(tmp_path, text, pattern):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(UsageError, match=pattern):
        tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_unknown_gate_metric_is_named(tmp_path):
    recipe = {"task": "digits", "stages": [{"train": {"epochs": 1}, "gate": {"acuracy": ">= 0.1"}}]}
    with pytest.raises(UsageError, match="gate metric 'acuracy'.*accuracy"):
        tamer.run(recipe, out=tmp_path / "run", progress=False)


def test_example_sentiment_recipe_scrubs_trains_explains_compresses_and_seals(tmp_path, sentiment_dir):
    """examples/sentiment.yaml, with the tiny encoder so it runs in seconds; the stages and their order are the file's."""
    import yaml
    from pathlib import Path

    spec = yaml.safe_load((Path(__file__).parents[1] / "examples" / "sentiment.yaml").read_text())
    spec["options"] = {"data": str(sentiment_dir / "yelp_labelled.txt"), "encoder": "tiny"}
    for stage in spec["stages"]:
        stage.pop("gate", None)
        if "evaluate" in stage:
            stage["evaluate"]["data"] = str(sentiment_dir / "amazon_cells_labelled.txt")
    run = tamer.run(spec, out=tmp_path / "run", progress=False)
    assert [s.verb for s in run.stages] == ["scrub", "train", "evaluate", "explain", "compress", "encrypt"]
    assert all(s.status == "passed" for s in run.stages)
    trained = tamer.load(tmp_path / "run" / "02-train" / "artifact")
    assert "01-scrub" in json.dumps(trained.manifest["task"])  # train read the scrubbed copy, not the original
    assert (tmp_path / "run" / "06-encrypt" / "artifact.encrypted" / "model.safetensors.enc").is_file()
    key = Path(os.environ["TAMER_KEY_DIR"])  # set by tests/conftest.py: never the run folder
    assert run.sealed and str(key) in run.sealed and not list((tmp_path / "run").rglob("*.key"))
    made = Path(re.search(r"new key (\S+),", run.sealed).group(1))
    assert made.parent == key and made.is_file()
    assert made.stat().st_mode & 0o777 == 0o600
    # the report names every plaintext model left in the run folder
    assert {Path(p).name for p in run.plaintext_copies} == {"artifact"} and len(run.plaintext_copies) == 2
    assert "plaintext copies remain" in run.summary()


def test_encrypt_stage_takes_a_key_file_and_can_remove_the_plaintext(tmp_path):
    key = tamer.keygen(tmp_path / "my.key")
    recipe = {"task": "digits", "stages": [{"train": {"epochs": 1}}, {"compress": {"quantize": "int8"}},
                                           {"encrypt": {"key_file": str(key), "remove_plaintext": True}}]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert run.plaintext_copies == [] and len(run.removed_plaintext) == 2 and run.artifact is None
    assert not [p for p in (tmp_path / "run").rglob("manifest.json") if not (p.parent / "encryption.json").exists()]
    sealed = tmp_path / "run" / "03-encrypt" / "artifact.encrypted"
    assert tamer.evaluate(sealed, key_file=str(key)).metrics["accuracy"] > 0.1
    with pytest.raises(UsageError, match="remove_plaintext"):
        tamer.run({"task": "digits", "stages": [{"train": {"epochs": 1}}, {"encrypt": {"remove_plaintext": "yes"}}]},
                  out=tmp_path / "run2", progress=False)
