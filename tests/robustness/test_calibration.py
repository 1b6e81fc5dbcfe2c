"""Temperature scaling (Guo et al. 2017) lowers the expected calibration error of an over-confident model, and the
calibrated child applies its temperature when it is loaded."""
import torch

import tamer
from tamer.artifact import save_artifact
from tamer.robustness.stability import calibration_error, fit_temperature


def test_ece_is_zero_when_confidence_is_accuracy_and_large_when_not():
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert calibration_error(probs, torch.tensor([0, 0, 0, 1]), 10)[0] < 1e-6
    assert abs(calibration_error(probs, torch.tensor([1, 1, 1, 1]), 10)[0] - 0.75) < 1e-6


def test_temperature_scaling_lowers_the_ece_of_an_over_confident_model():
    gen = torch.Generator().manual_seed(0)
    n, k = 4000, 5
    labels = torch.randint(0, k, (n,), generator=gen)
    honest = torch.randn(n, k, generator=gen)
    honest[torch.arange(n), labels] += 1.5  # right about 60% of the time
    logits = 6.0 * honest  # the same ranking, far too sure
    fit, held = slice(0, 2000), slice(2000, None)
    t = fit_temperature(logits[fit], labels[fit])
    before = calibration_error(logits[held].softmax(1), labels[held], 15)[0]
    after = calibration_error((logits[held] / t).softmax(1), labels[held], 15)[0]
    assert 3.0 < t < 12.0 and after < 0.5 * before and after < 0.05


def test_calibrate_writes_a_child_whose_loaded_model_is_better_calibrated(digits_artifact, tmp_path):
    state = digits_artifact.state_dict()
    last = max(k for k in state if k.endswith("weight"))
    state = {k: v * (8.0 if k.startswith(last.rsplit(".", 1)[0]) else 1.0) for k, v in state.items()}  # over-confident
    m = digits_artifact.manifest
    sure = save_artifact(tmp_path / "sure", state, task=m["task"], model_config=m["model_config"], verb="test",
                         options={"split_seed": digits_artifact.split_seed}, parents=[digits_artifact.id])
    child = tamer.stability(sure, calibrate=True, out=tmp_path / "calibrated")
    c = child.report.calibration
    assert child.manifest["parents"] == [sure.id] and c["temperature"] > 1.0
    assert c["ece_after"] < c["ece_before"]
    again = tamer.stability(tamer.load(tmp_path / "calibrated"))  # the temperature is applied on load
    assert abs(again.ece - c["ece_after"]) < 1e-6
    assert again.accuracy == child.report.accuracy  # dividing the logits changes no prediction
