"""Attacks on images in pixel space: FGSM, PGD (linf and l2 balls, random start, restarts), Square (Andriushchenko
et al. 2020, gradient-free, linf) and random noise in the ball. Each takes `f(pixels) -> logits` (the task's input
normalisation already inside `f`, see `ImageSpace`) and returns adversarial pixels inside the ball and the range."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

Logits = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImageSpace:
    """Where a task's images live: the batch key, the valid pixel range and the normalisation the model expects
    (`mean`, `std`: the model sees (pixels - mean) / std). A task may declare `pixel_range` and `normalization`;
    digits feeds [0, 1] pixels to its model unchanged."""

    key: str
    low: float = 0.0
    high: float = 1.0
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, task, batch: dict) -> "ImageSpace":
        keys = [k for k, v in batch.items() if k != "labels" and torch.is_tensor(v) and v.is_floating_point()]
        low, high = getattr(task, "pixel_range", (0.0, 1.0))
        mean, std = getattr(task, "normalization", None) or (0.0, 1.0)
        return cls(keys[0], float(low), float(high), float(mean), float(std))

    def logits(self, task, model: nn.Module, batch: dict) -> Logits:
        """`f(pixels) -> logits` with the batch's other inputs fixed and the normalisation applied inside."""
        rest = {k: v for k, v in batch.items() if k not in ("labels", self.key)}
        if self.mean == 0.0 and self.std == 1.0:  # pixels go in as they are: no identity ops in every step's graph
            return lambda x: task.forward(model, {**rest, self.key: x})
        return lambda x: task.forward(model, {**rest, self.key: (x - self.mean) / self.std})


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per example: negative once the example is misclassified."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.max(1).values


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(len(t), -1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (t.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, low: float, high: float) -> torch.Tensor:
    """Back into the eps-ball around `x` and the valid range [low, high]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    return (x + delta).clamp(low, high)


def perturbation_size(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    d = (x_adv - x).reshape(len(x), -1)
    return d.abs().max(1).values if norm == "linf" else d.norm(dim=1)


def random_in_ball(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        return (torch.rand(x.shape, generator=gen) * 2 - 1).to(x) * eps
    direction = torch.randn(x.shape, generator=gen).to(x)
    direction = direction / _flat_norm(direction)
    radius = torch.rand(len(x), generator=gen).to(x) ** (1.0 / x[0].numel())
    return direction * radius.reshape(-1, *([1] * (x.dim() - 1))) * eps


def _step(grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    return alpha * (grad.sign() if norm == "linf" else grad / _flat_norm(grad))


def fgsm(f: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf", low: float = 0.0,
         high: float = 1.0) -> torch.Tensor:
    """One step of size eps along the sign (linf) or direction (l2) of the loss gradient (Goodfellow et al. 2015)."""
    x0 = x.detach().clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(f(x0), y)
    (grad,) = torch.autograd.grad(loss, x0)
    return project(x + _step(grad, eps, norm), x, eps, norm, low, high).detach()


def pgd(f: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf", steps: int = 20,
        alpha: float | None = None, restarts: int = 1, random_start: bool = True, gen: torch.Generator | None = None,
        low: float = 0.0, high: float = 1.0, loss: Callable | None = None) -> torch.Tensor:
    """Projected gradient ascent on the loss (Madry et al. 2018). Over restarts an example keeps the first
    adversarial found (else the last run's point). `loss(logits, y)` per example; default cross-entropy."""
    gen = gen or torch.Generator().manual_seed(0)
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    loss = loss or (lambda z, t: nn.functional.cross_entropy(z, t, reduction="none"))
    best = x.detach().clone()
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        x_adv = x.detach().clone()
        if random_start and eps > 0:
            x_adv = project(x_adv + random_in_ball(x, eps, norm, gen), x, eps, norm, low, high)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(f(x_adv), y).sum(), x_adv)
            x_adv = project(x_adv.detach() + _step(grad, alpha, norm), x, eps, norm, low, high)
        if restarts == 1:  # nothing to choose between: spare the forward that scores the run
            return x_adv.detach()
        with torch.no_grad():
            now = f(x_adv).argmax(1) != y
        best[~broken] = x_adv[~broken]  # a broken example keeps its first adversarial, the others the latest point
        broken |= now
        if bool(broken.all()):
            break
    return best.detach()


def noise(f: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
          gen: torch.Generator | None = None, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """A uniform random point of the ball: the baseline that any real attack must beat."""
    gen = gen or torch.Generator().manual_seed(0)
    return project(x + random_in_ball(x, eps, norm, gen), x, eps, norm, low, high)


def _square_fraction(p_init: float, it: int, n_iters: int) -> float:
    """The paper's schedule of the square's share of the image, halved at fixed fractions of a 10,000-query run."""
    it = int(it / max(n_iters, 1) * 10000)
    for cut, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                     (8000, 256)):
        if it <= cut:
            return p_init / div
    return p_init / 512


@torch.no_grad()
def square(f: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int = 1000, p_init: float = 0.8,
           gen: torch.Generator | None = None, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Square attack, linf (Andriushchenko et al. 2020): random search over squares of +-eps, a change kept when it
    lowers the margin; only outputs are read (no gradient), so gradient masking does not stop it."""
    gen = gen or torch.Generator().manual_seed(0)
    n, c, h, w = x.shape
    signs = torch.randint(0, 2, (n, c, 1, w), generator=gen).to(x) * 2 - 1  # vertical stripes
    x_best = (x + eps * signs).clamp(low, high)
    m_best = margin(f(x_best), y)
    for it in range(1, queries):
        active = (m_best > 0).nonzero()[:, 0]
        if len(active) == 0:
            break
        xa, xb = x[active], x_best[active]
        s = max(int(round(math.sqrt(_square_fraction(p_init, it, queries) * h * w))), 1)
        s = min(s, h, w)
        r = torch.randint(0, h - s + 1, (len(active),), generator=gen)
        q = torch.randint(0, w - s + 1, (len(active),), generator=gen)
        rows = torch.arange(h)[None, :]
        cols = torch.arange(w)[None, :]
        window = (((rows >= r[:, None]) & (rows < r[:, None] + s))[:, :, None]
                  & ((cols >= q[:, None]) & (cols < q[:, None] + s))[:, None, :]).to(x.device)[:, None]
        value = (torch.randint(0, 2, (len(active), c, 1, 1), generator=gen).to(x) * 2 - 1) * eps
        delta = torch.where(window, value.expand(-1, -1, h, w), xb - xa)
        x_new = (xa + delta).clamp(low, high)
        m_new = margin(f(x_new), y[active])
        better = m_new < m_best[active]
        x_best[active[better]] = x_new[better]
        m_best[active[better]] = m_new[better]
    return x_best
