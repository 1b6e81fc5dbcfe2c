"""attribute.py against closed forms and properties, on hand-made models (no training)."""
import pytest
import torch

from tamer.explanation.attribute import attribute

METHODS = ["ig", "saliency", "gradxinput", "occlusion", "shap", "lime"]


def test_ig_on_a_linear_model_equals_the_closed_form():
    torch.manual_seed(0)
    w = torch.randn(6, 3, dtype=torch.float64)
    x, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    a = attribute("ig", lambda v: v @ w, x, b, target, n_steps=50)
    expected = (x - b) * w[:, target].T
    assert torch.allclose(a.values, expected, atol=1e-12)
    assert max(a.errors) < 1e-8 and a.steps == [50] * 4
    assert a.deltas == pytest.approx(((x - b) * w[:, target].T).sum(1).tolist())


@pytest.mark.parametrize("method", METHODS)
def test_a_model_that_looks_at_one_feature_gets_all_the_mass_there(method):
    x = torch.rand(3, 8) + 0.5
    forward = lambda v: torch.stack([torch.sigmoid(3 * v[:, 5]), 1 - torch.sigmoid(3 * v[:, 5])], dim=1)  # noqa: E731
    a = attribute(method, forward, x, torch.zeros_like(x), torch.zeros(3, dtype=torch.long), n_samples=300)
    share = a.values.abs()[:, 5] / a.values.abs().sum(1)
    assert (share > 0.95).all(), (method, a.values)


def test_steps_are_raised_until_completeness_holds_and_the_error_is_reported():
    w = torch.linspace(-2, 2, 10)
    forward = lambda v: torch.stack([torch.sigmoid(4 * v @ w), torch.zeros(len(v))], 1)  # noqa: E731
    x = torch.rand(5, 10) * 2
    a = attribute("ig", forward, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), n_steps=2, max_steps=512, tolerance=1e-4)
    assert max(a.steps) > 2
    assert all(e <= 1e-4 for e in a.errors)
    change = (forward(x)[:, 0] - forward(torch.zeros_like(x))[:, 0]).double()
    assert torch.allclose(a.values.sum(1).double(), change, atol=1e-3)


def test_the_step_cap_is_respected_and_the_remaining_error_reported():
    forward = lambda v: torch.stack([torch.sigmoid(30 * v.sum(1) - 15), torch.zeros(len(v))], 1)  # noqa: E731
    x = torch.ones(2, 4)
    a = attribute("ig", forward, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), n_steps=2, max_steps=8, tolerance=1e-9)
    assert a.steps == [8, 8] and min(a.errors) > 1e-9


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_surrogates_are_deterministic_for_a_seed(method):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3), torch.nn.Softmax(-1))
    x = torch.randn(2, 12)
    run = lambda seed: attribute(method, net, x, torch.zeros_like(x), torch.tensor([0, 2]), n_samples=40, seed=seed).values  # noqa: E731
    torch.manual_seed(123)  # the caller's random state must not matter
    first = run(7)
    torch.manual_seed(456)
    assert torch.equal(first, run(7))
    assert not torch.equal(first, run(8))
