"""Attributions through Captum (the only module that imports it), with integrated gradients checked for completeness.

`forward(inputs, *extra)` returns probabilities (N x classes); `target` picks the column explained. For text the
inputs are token ids and `layer` is the embedding layer, so gradient methods attribute to the embedding output.
"""
from __future__ import annotations

import contextlib
import functools
import random
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

# The output difference below which completeness is judged in absolute terms: an example whose probability does
# not move between baseline and input would otherwise be judged on float noise.
DELTA_FLOOR = 1e-4


@dataclass
class Attribution:
    values: torch.Tensor  # images: like the inputs; text: N x tokens
    grouped: bool = False  # True: every token of a feature group carries the group's value (perturbation methods)
    steps: list[int] | None = None  # integrated gradients: steps used per example
    errors: list[float] | None = None  # integrated gradients: relative completeness error per example
    deltas: list[float] | None = None  # integrated gradients: F(x) - F(baseline) per example


@functools.lru_cache(maxsize=64)
def _leggauss(n: int):
    return _NUMPY_LEGGAUSS(n)


_NUMPY_LEGGAUSS = np.polynomial.legendre.leggauss


@contextlib.contextmanager
def cached_quadrature():
    """Captum recomputes the Gauss-Legendre nodes (an n x n eigenproblem, ~0.5 s at 800 steps) twice per call;
    serve them from a cache while we run integrated gradients."""
    np.polynomial.legendre.leggauss = _leggauss
    try:
        yield
    finally:
        np.polynomial.legendre.leggauss = _NUMPY_LEGGAUSS


@contextlib.contextmanager
def weights_frozen(model: nn.Module):
    """Attributions need gradients with respect to the inputs only: with the weights out of autograd, the forward
    pass records less and the backward pass computes no weight gradients. Each flag is restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def seeded(seed: int):
    """Run sampling methods under a fixed seed without disturbing the caller's random state."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _reduce_embedding(values: torch.Tensor, how: str) -> torch.Tensor:
    """N x tokens x hidden -> N x tokens."""
    return values.norm(dim=-1) if how == "norm" else values.sum(dim=-1)


def attribute(method: str, forward: Callable, inputs: torch.Tensor, baselines: torch.Tensor, target: torch.Tensor, *,
              extra: tuple = (), layer: nn.Module | None = None, feature_mask: torch.Tensor | None = None,
              n_steps: int = 50, max_steps: int = 800, tolerance: float = 1e-3, n_samples: int = 200, seed: int = 0,
              row_budget: int = 4096) -> Attribution:
    """Attributions of `forward(inputs)[target]` by `method` (ig | saliency | gradxinput | occlusion | shap | lime)."""
    from captum.attr import (FeatureAblation, InputXGradient, IntegratedGradients, KernelShap, LayerGradientXActivation,
                             LayerIntegratedGradients, Lime, Occlusion, Saliency)

    extra = tuple(extra) or None
    text = layer is not None
    if method == "ig":
        ig = LayerIntegratedGradients(forward, layer) if text else IntegratedGradients(forward)
        return _integrated_gradients(ig, inputs, baselines, target, extra, n_steps, max_steps, tolerance, row_budget, text)
    if method in ("saliency", "gradxinput"):
        if text:
            lg = LayerGradientXActivation(forward, layer, multiply_by_inputs=method == "gradxinput")
            values = lg.attribute(inputs, target=target, additional_forward_args=extra)
            return Attribution(_reduce_embedding(values.detach(), "norm" if method == "saliency" else "sum"))
        algo = Saliency(forward) if method == "saliency" else InputXGradient(forward)
        kwargs = {"abs": True} if method == "saliency" else {}
        return Attribution(algo.attribute(inputs.clone().requires_grad_(), target=target, additional_forward_args=extra, **kwargs).detach())
    per_eval = max(1, min(64, row_budget // max(1, inputs.shape[0])))
    if method == "occlusion":
        if text:  # one word at a time replaced by the baseline token
            values = FeatureAblation(forward).attribute(inputs, baselines=baselines, target=target, additional_forward_args=extra,
                                                        feature_mask=feature_mask, perturbations_per_eval=per_eval)
            return Attribution(values.detach().float(), grouped=True)
        window = (1,) + tuple(min(2, s) for s in inputs.shape[2:])
        values = Occlusion(forward).attribute(inputs, sliding_window_shapes=window, baselines=baselines, target=target,
                                              additional_forward_args=extra, perturbations_per_eval=per_eval)
        return Attribution(values.detach())
    if method in ("shap", "lime"):
        if method == "shap":
            algo = KernelShap(forward)
        else:
            algo = Lime(forward, interpretable_model=WeightedRidge(alpha=1e-2))
        with seeded(seed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multiple inputs for Lime.*")  # one surrogate per example is what we want
            values = algo.attribute(inputs, baselines=baselines, target=target, additional_forward_args=extra,
                                    feature_mask=feature_mask, n_samples=n_samples,
                                    perturbations_per_eval=max(1, min(n_samples, per_eval)))
        return Attribution(values.detach().float(), grouped=text)
    raise ValueError(f"unknown method {method!r}")


class WeightedRidge:
    """LIME's surrogate: ridge regression of the outputs on the kept-feature masks, each sample weighted by its
    similarity to the input (Ribeiro et al. 2016). Captum's `Lime` takes any object with `fit(loader)` and
    `representation()`; its own ridge lives in a private module."""

    def __init__(self, alpha: float):
        self.alpha, self.coef = alpha, None

    def fit(self, loader) -> None:
        from sklearn.linear_model import Ridge

        xs, ys, ws = zip(*loader)
        x, y, w = (torch.cat(part).numpy() for part in (xs, ys, ws))
        self.coef = torch.as_tensor(Ridge(alpha=self.alpha).fit(x, y, sample_weight=w).coef_, dtype=torch.float32).reshape(1, -1)

    def representation(self) -> torch.Tensor:
        return self.coef


def _integrated_gradients(ig, inputs, baselines, target, extra, n_steps, max_steps, tolerance, row_budget, text) -> Attribution:
    """IG with its completeness error per example; examples above `tolerance` are redone with twice the steps, up to the cap."""
    n = inputs.shape[0]

    def run(idx: torch.Tensor, steps: int):
        sub_extra = None if extra is None else tuple(e[idx] if torch.is_tensor(e) else e for e in extra)
        internal = max(len(idx), row_budget) if len(idx) * steps > row_budget else None
        values, delta = ig.attribute(inputs[idx], baselines=baselines[idx], target=target[idx], additional_forward_args=sub_extra,
                                     n_steps=steps, internal_batch_size=internal, return_convergence_delta=True)
        values = values.detach()
        if text:
            values = values.sum(dim=-1)
        total = values.reshape(len(idx), -1).sum(1).double()
        delta = delta.detach().double().reshape(-1)
        change = total - delta  # sum(attr) - delta = F(x) - F(baseline)
        return values, delta, change

    all_idx = torch.arange(n)
    with cached_quadrature():
        return _refine(run, n, all_idx, n_steps, max_steps, tolerance)


def _refine(run, n, all_idx, n_steps, max_steps, tolerance) -> Attribution:
    values, delta, change = run(all_idx, n_steps)
    steps = torch.full((n,), n_steps, dtype=torch.long)
    error = delta.abs() / change.abs().clamp(min=DELTA_FLOOR)
    current = n_steps
    while bool((error > tolerance).any()) and current < max_steps:
        current = min(2 * current, max_steps)
        idx = all_idx[error > tolerance]
        v, d, c = run(idx, current)
        values[idx], delta[idx], change[idx] = v.to(values.dtype), d, c
        error[idx] = d.abs() / c.abs().clamp(min=DELTA_FLOOR)
        steps[idx] = current
    return Attribution(values, steps=steps.tolist(), errors=error.tolist(), deltas=change.tolist())
