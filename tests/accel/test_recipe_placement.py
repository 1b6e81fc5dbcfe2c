"""A recipe's `device:` / `precision:` (and a stage's own) reach every stage that runs a model, with one meaning: each
such stage's cost record says where it ran and, observed in Task.forward, which dtype its model computed in. A
device this machine lacks, a stage that runs no model given one, or a bad name fail before anything runs."""
import numpy as np
import pytest
import torch

import tamer
from tamer.errors import UsageError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


@pytest.fixture
def own_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TAMER_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Digits as arrays for the drift stage, and dimmer, noisier digits with their labels for the update stage."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("placement-data")
    d = load_digits()
    images = d.images.astype(np.float32)
    np.save(folder / "a.npy", images[:200])
    np.save(folder / "b.npy", images[200:400])
    shifted = np.clip(images * 0.6 + np.random.default_rng(0).normal(0, 2.0, images.shape) + 4, 0, 16)
    np.savez(folder / "new.npz", images=shifted.astype(np.float32), labels=d.target)
    return folder


def _costs(run) -> dict[str, dict]:
    assert run.status == "passed", run.message
    return {s.name.split("-", 1)[1] if s.name[:2].isdigit() else s.name: s.cost for s in run.stages}


def _ran_in_bf16_on_cpu(costs: dict[str, dict], stages: list[str]) -> None:
    for stage in stages:
        cost = costs[stage]
        assert cost["device"] == "cpu" and cost["precision"] == "bf16", (stage, cost)
        assert "bfloat16" in cost["computed_in"], (stage, cost)  # the model's outputs really came out in bf16


def test_a_bf16_recipe_runs_every_model_stage_on_an_artifact_in_bf16(digits_artifact, digit_files, tmp_path):
    recipe = {"name": "bf16", "task": "digits", "artifact": str(digits_artifact.path), "device": "cpu",
              "precision": "bf16", "stages": [
                  {"evaluate": {}},
                  {"name": "fp32-evaluate", "evaluate": {"precision": "fp32"}},  # a stage's own precision wins
                  {"explain": {"method": "saliency", "index": [0, 1], "sanity": "none"}},
                  {"attack": {"method": "fgsm", "epsilon": 0.1, "limit": 50}},
                  {"stability": {"limit": 50, "draws": 1}},
                  {"drift": {"reference": str(digit_files / "a.npy"), "current": str(digit_files / "b.npy"),
                             "permutations": 19}},
                  {"serve-check": {"requests": 8, "concurrency": 2}, "gate": {"agreement": ">= 1.0"}},
                  {"compress": {"quantize": "int8"}},
                  {"register": {}},
              ]}
    costs = _costs(tamer.run(recipe, out=tmp_path / "run", progress=False))
    _ran_in_bf16_on_cpu(costs, ["evaluate", "explain", "attack", "stability", "drift", "serve-check"])
    assert "cpu bf16 (computed in bfloat16)" in (tmp_path / "run" / "report.html").read_text()  # the cost table
    assert costs["fp32-evaluate"]["precision"] == "fp32" and costs["fp32-evaluate"]["computed_in"] == ["float32"]
    # compress runs on the CPU in fp32 (its int8 kernels and timings are CPU ones) and says so
    assert costs["compress"]["computed_in"] == ["float32"]
    assert any("compress ran on the CPU in fp32" in n for n in costs["compress"]["notes"])
    assert costs["register"]["wall_s"] >= 0 and "precision" not in costs["register"]  # measured, runs no model


@pytest.mark.slow
def test_a_bf16_recipe_trains_hardens_and_updates_in_bf16(own_registry, digit_files, tmp_path):
    recipe = {"name": "bf16", "task": "digits", "device": "cpu", "precision": "bf16", "stages": [
        {"train": {"epochs": 2}},
        {"harden": {"method": "pgd", "epsilon": 0.1, "steps": 2, "epochs": 1, "eval_steps": 2, "limit": 50}},
        {"promote": {"to": "production"}},
        {"update": {"data": str(digit_files / "new.npz"), "epochs": 1}},
    ]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    _ran_in_bf16_on_cpu(_costs(run), ["train", "harden", "update"])
    trained = tamer.load(run.stages[0].report["artifact"])
    assert trained.manifest["options"]["precision"] == "bf16" and "bfloat16" in trained.manifest["run"]["computed_in"]
    challenger = tamer.load(run.stages[3].report["challenger_path"])
    assert challenger.manifest["options"]["precision"] == "bf16" and "device" not in challenger.manifest["options"]


def test_bf16_results_stay_within_tolerance_of_fp32(digits_artifact):
    """bf16 keeps 8 bits of mantissa: on the digits CNN the verbs' numbers move by a few hundredths at most (measured on
    two 4-epoch models: test accuracy unchanged, FGSM robust accuracy of 100 by 0.01 and 0.02, ECE by 0.000 and 0.012)."""
    fp32 = tamer.evaluate(digits_artifact, device="cpu", precision="fp32")
    bf16 = tamer.evaluate(digits_artifact, device="cpu", precision="bf16")
    assert bf16.cost["computed_in"] == ["bfloat16"] and fp32.cost["computed_in"] == ["float32"]
    assert abs(bf16.metrics["accuracy"] - fp32.metrics["accuracy"]) <= 0.02
    a32 = tamer.attack(digits_artifact, method="fgsm", epsilon=0.1, limit=100, device="cpu")
    a16 = tamer.attack(digits_artifact, method="fgsm", epsilon=0.1, limit=100, device="cpu", precision="bf16")
    assert abs(a16.robust_accuracy - a32.robust_accuracy) <= 0.05 and a16.cost["computed_in"] == ["bfloat16"]
    s32 = tamer.stability(digits_artifact, limit=100, draws=1, device="cpu")
    s16 = tamer.stability(digits_artifact, limit=100, draws=1, device="cpu", precision="bf16")
    assert abs(s16.gate_metrics()["ece"] - s32.gate_metrics()["ece"]) <= 0.02


def test_the_recipe_placement_reaches_a_stage_without_a_train_stage(digits_artifact, tmp_path):
    recipe = {"task": "digits", "artifact": str(digits_artifact.path), "precision": "bf16",
              "stages": [{"evaluate": {}}, {"explain": {"method": "gradxinput", "index": [0], "sanity": "none",
                                                         "faithfulness": False}}]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert [s.cost["computed_in"] for s in run.stages] == [["bfloat16"], ["bfloat16"]]
    direct = tamer.evaluate(digits_artifact, precision="bf16")
    assert run.stages[0].report["metrics"]["accuracy"] == direct.metrics["accuracy"]


@pytest.mark.parametrize("recipe_key,stage,pattern", [
    ({"precision": "fp8"}, {"evaluate": {}}, "--precision 'fp8' is not accepted"),
    ({"device": "tpu"}, {"evaluate": {}}, "--device 'tpu' is not accepted"),
    ({}, {"evaluate": {"device": "gpu"}}, "stage 01-evaluate: .*--device 'gpu' is not accepted"),
    ({}, {"register": {"device": "cpu"}}, "register runs no model, so 'device' does not apply"),
    ({"precision": "fp16", "device": "cpu"}, {"evaluate": {}}, "fp16 needs a CUDA device"),
])
def test_bad_placements_fail_before_any_stage_runs(digits_artifact, tmp_path, recipe_key, stage, pattern):
    recipe = {"task": "digits", "artifact": str(digits_artifact.path), **recipe_key,
              "stages": [stage, {"evaluate": {}}]}
    with pytest.raises(UsageError, match=pattern):
        tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written


@no_cuda
def test_a_recipe_asking_for_cuda_without_it_exits_2_before_running(digits_artifact, tmp_path, capsys):
    from tamer.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: digits\nartifact: {digits_artifact.path}\ndevice: cuda\nstages:\n  - evaluate: {{}}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]
    assert not (tmp_path / "run").exists()
