"""Image attacks against independent checks: the ball and the range hold (property over random inputs and both
norms), FGSM on a linear model is the closed form, attacks repeat per seed, Square needs no gradient."""
import pytest
import torch
from torch import nn

from tamer.robustness import images
from tamer.robustness.config import AttackConfig


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("seed", range(6))
def test_pgd_never_leaves_the_ball_nor_the_valid_range(norm, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    x[:4] = x[:4].round()  # pixels at the edges of the range
    y = torch.randint(0, 10, (16,), generator=gen)
    eps = float(torch.rand(1, generator=gen)) * (0.5 if norm == "linf" else 3.0) + 0.01
    alpha = eps * float(torch.rand(1, generator=gen) + 0.1)  # steps as large as the ball
    model = _model(seed)
    for x_adv in (images.pgd(model, x, y, eps, norm, steps=5, alpha=alpha, restarts=2, gen=gen),
                  images.fgsm(model, x, y, eps, norm), images.noise(model, x, y, eps, norm, gen)):
        size = images.perturbation_size(x_adv, x, norm)
        assert float(size.max()) <= eps * (1 + 1e-5) + 1e-6
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_fgsm_on_a_linear_model_is_epsilon_times_the_sign_of_the_margin_gradient():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    x = 0.3 + 0.4 * torch.rand(8, 1, 8, 8)  # far enough from 0 and 1 that no pixel is clipped at eps 0.05
    y = torch.randint(0, 2, (8,))
    eps = 0.05
    w = linear[1].weight.detach()
    # margin z_y - z_other is linear in x: its gradient is w_y - w_other; the loss falls as the margin rises
    grad_margin = (w[y] - w[1 - y]).reshape(8, 1, 8, 8)
    delta = images.fgsm(linear, x, y, eps) - x
    torch.testing.assert_close(delta, -eps * grad_margin.sign(), atol=1e-6, rtol=0)


def test_attacks_are_deterministic_per_seed():
    model, x = _model(1), torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)

    def run(kind, seed):
        gen = torch.Generator().manual_seed(seed)
        if kind == "pgd":
            return images.pgd(model, x, y, 0.1, "linf", steps=4, restarts=2, gen=gen)
        return images.square(model, x, y, 0.1, queries=30, gen=gen)

    for kind in ("pgd", "square"):
        assert torch.equal(run(kind, 5), run(kind, 5))
        assert not torch.equal(run(kind, 5), run(kind, 6))


def test_square_breaks_an_undefended_model_without_any_gradient(digits_artifact):
    from tamer.robustness.data import image_batches, load_split

    task, model, examples, kind = load_split(digits_artifact, "test", 60)
    for p in model.parameters():
        p.requires_grad_(False)
    batch, space, x, y = next(image_batches(task, examples, 60))
    f = space.logits(task, model, batch)

    def outputs_only(z):
        assert not torch.is_grad_enabled()
        return f(z)

    right = f(x).argmax(1) == y
    x_adv = images.square(outputs_only, x, y, 0.2, queries=300, gen=torch.Generator().manual_seed(0))
    broken = (f(x_adv).argmax(1) != y) & right
    assert float(images.perturbation_size(x_adv, x, "linf").max()) <= 0.2 + 1e-6
    assert int(broken.sum()) >= 0.5 * int(right.sum())


def test_the_default_step_is_madrys():
    assert AttackConfig(epsilon=0.2, steps=20).alpha == pytest.approx(0.025)
