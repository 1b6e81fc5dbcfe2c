"""The schedules of adversarial training: the epsilon warm-up is linear to the full ball, the learning rate follows
a half cosine to zero, and bad values are refused in one sentence."""
import math

import pytest
import torch

from tamer.config import make_config
from tamer.errors import UsageError
from tamer.robustness.config import HardenConfig
from tamer.robustness.harden import EpsilonRamp, cosine


def test_epsilon_grows_linearly_over_the_warmup_epochs_then_stays():
    ramp = EpsilonRamp(HardenConfig(epsilon=0.2, epsilon_warmup=2), steps_per_epoch=10, epochs=40)
    seen = [ramp() for _ in range(30)]
    assert seen[:20] == pytest.approx([0.2 * (k + 1) / 20 for k in range(20)])
    assert seen[20:] == [0.2] * 10
    flat = EpsilonRamp(HardenConfig(epsilon=0.2, epsilon_warmup=0), steps_per_epoch=10, epochs=40)
    assert [flat() for _ in range(3)] == [0.2] * 3
    short = EpsilonRamp(HardenConfig(epsilon=0.2, epsilon_warmup=5), steps_per_epoch=10, epochs=1)
    assert [short() for _ in range(10)][-1] == pytest.approx(0.2)  # a run shorter than the warm-up still ends at epsilon


def test_cosine_learning_rate_is_the_closed_form():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = cosine(opt, 8)
    rates = []
    for _ in range(8):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([0.05 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("options", [{"epsilon_warmup": -1}, {"epochs": 0}])
def test_bad_schedule_options_are_refused(options):
    with pytest.raises(UsageError, match="is not accepted"):
        make_config(HardenConfig, options)
