"""DP-SGD's fast paths against slow, independent ones: the noise search and the per-epoch epsilon against Opacus's
full RDP accountant, ghost clipping against per-example gradients clipped one by one, and empty Poisson batches
still counted as (noise-only) steps."""
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tamer.protection import PrivacyConfig
from tamer.protection.privacy import epsilon_after, epsilon_for, make_private, noise_for, train_private
from tamer.tasks import ListDataset, make_task
from tamer.tasks.digits import DigitsMLP


@pytest.mark.parametrize("epsilon,q,steps", [(3.0, 0.2, 200), (1.0, 0.05, 400), (8.0, 1 / 3, 30), (0.5, 0.01, 1000)])
def test_noise_search_stays_within_budget_by_the_full_accountant(epsilon, q, steps):
    from opacus.accountants.utils import get_noise_multiplier

    sigma = noise_for(epsilon, 1e-5, q, steps)
    spent = epsilon_for(sigma, q, steps, 1e-5)  # every order Opacus's accountant knows, fractional ones too
    assert spent <= epsilon
    assert spent >= 0.97 * epsilon  # and not much more noise than the budget needs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = get_noise_multiplier(target_epsilon=epsilon, target_delta=1e-5, sample_rate=q, steps=steps)
    assert full <= sigma <= 1.02 * full


@pytest.mark.parametrize("sigma,q", [(4.4, 0.2), (1.1, 0.01), (0.8, 1.0)])
def test_epsilon_per_epoch_is_the_accountants(sigma, q):
    after = epsilon_after(sigma, q, 1e-5)
    assert after(0) == 0.0
    for steps in (1, 7, 200, 1000):
        assert after(steps) == pytest.approx(epsilon_for(sigma, q, steps, 1e-5), rel=1e-12)


def _one_step_update(mode: str, batch, clip: float) -> list[torch.Tensor]:
    """Summed clipped per-example gradients as Opacus applies them (noise 0, SGD lr 1: update = -sum / batch)."""
    torch.manual_seed(3)
    task = make_task("digits", {"hidden": 5})
    model = DigitsMLP(hidden=5)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    n = len(batch["labels"])
    examples = ListDataset([{"pixels": batch["pixels"][i], "labels": int(batch["labels"][i])} for i in range(n)])
    loader = DataLoader(examples, batch_size=n, collate_fn=task.collate)  # one batch an epoch: expected size n
    _, model, optimizer, _, criterion, used = make_private(model, optimizer, loader, task, 0.0, clip, mode)
    assert used == mode
    optimizer.zero_grad(set_to_none=True)
    criterion(task.forward(model, batch), batch).backward()
    optimizer.step()
    return [(b - p.detach()) * n for b, p in zip(before, model._module.parameters())]


@pytest.mark.parametrize("mode", ["ghost", "hooks", "functorch"])
def test_clipped_gradients_match_per_example_clipping_one_by_one(mode):
    g = torch.Generator().manual_seed(0)
    batch = {"pixels": torch.rand(12, 1, 8, 8, generator=g) * 3, "labels": torch.randint(0, 10, (12,), generator=g)}
    clip = 4.5
    # the reference: each example's gradient by its own backward pass, scaled to norm <= clip, summed
    torch.manual_seed(3)
    model = DigitsMLP(hidden=5)
    expected = [torch.zeros_like(p) for p in model.parameters()]
    norms = []
    for i in range(12):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch["pixels"][i:i + 1]), batch["labels"][i:i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        norm = torch.sqrt(sum((x ** 2).sum() for x in grads))
        norms.append(float(norm))
        for e, x in zip(expected, grads):
            e += x * min(1.0, clip / (float(norm) + 1e-6))
    assert min(norms) < clip < max(norms)  # some examples are clipped, some are not
    for got, want in zip(_one_step_update(mode, batch, clip), expected):
        assert torch.allclose(got, want, atol=1e-5), (mode, (got - want).abs().max())


def test_empty_poisson_batches_are_counted_as_noise_steps(tmp_path):
    # 14 training images sampled one at a time in expectation: about a third of the steps draw no example
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 17, (20, 8, 8)), labels=np.arange(20) % 10)
    task = make_task("digits", {"data": str(data), "hidden": 4})
    art = train_private(task, {"epochs": 3, "batch_size": 1}, PrivacyConfig(private=True, epsilon=3.0, delta=1e-5),
                        tmp_path / "a", show_progress=False)
    p = art.manifest["privacy"]
    assert p["sample_rate"] == pytest.approx(1 / 14) and p["steps"] == 3 * 14
    # the engine's own accountant (what the artifact records) saw every step, the empty ones too
    assert p["epsilon"] == pytest.approx(epsilon_for(p["noise_multiplier"], p["sample_rate"], 42, 1e-5), rel=1e-9)
    assert p["epsilon"] <= 3.0 and p["grad_sample_mode"] == "ghost"
