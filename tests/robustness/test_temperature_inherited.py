"""A calibrated temperature is a property of the model's output, not of its weights: a child that compress or harden
writes from a calibrated artifact keeps dividing its logits by it, and its lineage stays whole."""
import pytest
import torch

import tamer
from tamer.artifact import save_artifact
from tamer.robustness.stability import logits_of


@pytest.fixture(scope="module")
def calibrated(digits_artifact, tmp_path_factory):
    """The digits model made over-confident (last layer x8), then calibrated (T well above 1)."""
    tmp = tmp_path_factory.mktemp("calibrated")
    state = digits_artifact.state_dict()
    last = max(k for k in state if k.endswith("weight")).rsplit(".", 1)[0]
    state = {k: v * (8.0 if k.startswith(last) else 1.0) for k, v in state.items()}
    m = digits_artifact.manifest
    sure = save_artifact(tmp / "sure", state, task=m["task"], model_config=m["model_config"], verb="test",
                         options={"split_seed": digits_artifact.split_seed}, parents=[digits_artifact.id])
    child = tamer.stability(sure, calibrate=True, out=tmp / "calibrated")
    assert child.manifest["temperature"] > 1.5
    return sure, child


def test_an_int8_child_divides_its_logits_by_the_parents_temperature(calibrated, tmp_path):
    """int8 child of the calibrated model = int8 child of the bare model, logits divided by T."""
    sure, cal = calibrated
    t = cal.manifest["temperature"]
    bare = tamer.compress(sure, quantize="int8", out=tmp_path / "bare", progress=False)
    kept = tamer.compress(cal, quantize="int8", out=tmp_path / "kept", progress=False)
    assert kept.manifest["temperature"] == t and "temperature" not in bare.manifest
    assert kept.manifest["parents"] == [cal.id] and kept.id == tamer.load(tmp_path / "kept").id
    task, model = kept.load_model()
    _, bare_model = bare.load_model()
    examples = [task.splits(kept.split_seed).test[i] for i in range(64)]
    torch.testing.assert_close(logits_of(task, model, examples), logits_of(task, bare_model, examples) / t)


def test_every_step_of_a_chain_keeps_it_and_names_its_new_parent(calibrated, tmp_path):
    _, cal = calibrated
    last = tamer.compress(cal, prune=0.5, quantize="int8", out=tmp_path / "chain", progress=False)
    steps = sorted(p for p in tmp_path.iterdir() if p.name.startswith("chain."))
    assert len(steps) == 1
    first = tamer.load(steps[0])
    assert first.manifest["temperature"] == last.manifest["temperature"] == cal.manifest["temperature"]
    assert first.manifest["parents"] == [cal.id] and last.manifest["parents"] == [first.id]


def test_harden_trains_the_bare_weights_and_its_child_keeps_the_temperature(calibrated, tmp_path):
    sure, cal = calibrated
    opts = dict(method="pgd", epsilon=0.1, steps=2, epochs=1, eval_steps=2, limit=32, progress=False)
    bare = tamer.harden(sure, out=tmp_path / "bare", **opts)
    kept = tamer.harden(cal, out=tmp_path / "kept", **opts)
    assert kept.manifest["temperature"] == cal.manifest["temperature"] and "temperature" not in bare.manifest
    assert kept.manifest["weights_sha256"] == bare.manifest["weights_sha256"]  # trained on the same bare model
