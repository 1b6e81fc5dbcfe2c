"""DP-SGD: epsilon agrees with the closed-form RDP of the subsampled Gaussian, stays in budget, BatchNorm refused."""
import json
import math

import pytest
from torch import nn

from tamer.cli import main
from tamer.errors import UsageError
from tamer.protection import PrivacyConfig
from tamer.protection.privacy import PrivacyReport, epsilon_for, train_private
from tamer.tasks import make_task, register_task
from tamer.tasks.digits import DigitsTask


def _rdp_sampled_gaussian(q: float, sigma: float, alpha: int) -> float:
    """Mironov, Talwar & Zhang (2019), eq. for integer alpha: log sum_k C(a,k) (1-q)^(a-k) q^k exp((k^2-k)/(2 s^2)) / (a-1)."""
    terms = [math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
             + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma ** 2) for k in range(alpha + 1)]
    top = max(terms)
    return (top + math.log(sum(math.exp(t - top) for t in terms))) / (alpha - 1)


def _epsilon_closed_form(q, sigma, steps, delta):
    """RDP -> (epsilon, delta) by Balle et al. (2020), Theorem 21, minimised over integer orders."""
    best = math.inf
    for a in range(2, 256):
        rdp = steps * _rdp_sampled_gaussian(q, sigma, a)
        best = min(best, rdp + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1))
    return best


@pytest.mark.parametrize("q,sigma,steps", [(256 / 60000, 1.1, 14062), (0.2, 4.0, 150), (0.05, 1.2, 400)])
def test_epsilon_agrees_with_closed_form_rdp(q, sigma, steps):
    ours = epsilon_for(sigma, q, steps, 1e-5)
    exact = _epsilon_closed_form(q, sigma, steps, 1e-5)
    # Opacus also tries fractional orders, so it may be a little tighter, never looser
    assert ours <= exact + 1e-9 and ours >= 0.95 * exact, (ours, exact)


@pytest.fixture(scope="module")
def private_artifact(tmp_path_factory):
    task = make_task("digits", {"channels": 4, "hidden": 16})
    return train_private(task, {"epochs": 3, "batch_size": 256, "lr": 0.01},
                         PrivacyConfig(private=True, epsilon=2.0, delta=1e-5), tmp_path_factory.mktemp("dp") / "a",
                         show_progress=False)


def test_private_training_stays_in_budget_and_records_epsilon_per_epoch(private_artifact):
    p = private_artifact.manifest["privacy"]
    eps = [h["epsilon"] for h in private_artifact.manifest["training"]["learning_curve"]]
    assert len(eps) == 3 and eps == sorted(eps) and eps[-1] <= 2.0
    assert p["epsilon"] == pytest.approx(epsilon_for(p["noise_multiplier"], p["sample_rate"], p["steps"], 1e-5), rel=1e-9)
    assert p["epsilon"] > 1.5  # the planned noise spends most of the budget, not a tiny part
    task, model = private_artifact.load_model()  # a normal artifact: no Opacus "_module." prefixes
    assert not any(k.startswith("_module") for k in private_artifact.state_dict())
    report = PrivacyReport.from_artifact(private_artifact)
    assert "epsilon" in report.html() and report.gate_metrics()["epsilon"] == p["epsilon"]


class _BatchNormDigits(DigitsTask):
    name = "test-protect-batchnorm-digits"

    def build_model(self, model_config):
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))


def test_batchnorm_is_refused_with_the_fix_named(tmp_path):
    register_task(_BatchNormDigits)
    with pytest.raises(UsageError, match="GroupNorm"):
        train_private(_BatchNormDigits(), {"epochs": 1}, PrivacyConfig(private=True), tmp_path / "a", show_progress=False)
    assert not (tmp_path / "a").exists()


def test_cli_train_private_bad_options(tmp_path, capsys):
    for bad in (["--epsilon", "0"], ["--delta", "0.5"], ["--delta", "2"], ["--max-grad-norm", "-1"],
                ["--scheduler", "constant"]):
        assert main(["train", "digits", "--private", "--epochs", "1", "--out", str(tmp_path / "x"), *bad]) == 2, bad
        assert "error" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_cli_train_private_runs(tmp_path, capsys):
    assert main(["train", "digits", "--private", "--epsilon", "1", "--epochs", "1", "--batch-size", "512",
                 "--channels", "4", "--hidden", "8", "--out", str(tmp_path / "a"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["report"] == "PrivacyReport" and report["epsilon"] <= 1.0


def test_private_path_trains_the_tasks_dp_variant_and_leaves_the_usual_model_alone(private_artifact):
    # digits offers a tanh MLP for DP-SGD; the artifact records it, so loading rebuilds the same network
    assert private_artifact.manifest["model_config"]["arch"] == "DigitsMLP"
    task, model = private_artifact.load_model()
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    usual = make_task("digits")
    assert usual.model_config()["arch"] == "DigitsCNN"
    assert any(isinstance(m, nn.Conv2d) for m in usual.build_model(usual.model_config()).modules())


def test_private_training_learns_within_a_small_budget(private_artifact):
    # three epochs at epsilon 2 on a 16-unit model: far above chance (0.1), validation rising (the noise is not
    # seeded, so each run differs: over 8 runs the first epoch scored 0.41-0.60 and the third 0.70-0.77)
    val = [h["val_accuracy"] for h in private_artifact.manifest["training"]["learning_curve"]]
    assert val[-1] > val[0] + 0.05
    assert private_artifact.metrics["test"]["accuracy"] > 0.4


def test_tasks_without_a_dp_variant_train_their_usual_model():
    from tamer.protection.privacy import private_model_config

    class _Plain(DigitsTask):
        name = "test-protect-plain-digits"
        private_model_config = None

    task = _Plain()
    assert private_model_config(task) == task.model_config()
