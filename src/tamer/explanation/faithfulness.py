"""Do the attributions point at what the model uses? Deletion / insertion curves (images), ERASER comprehensiveness
and sufficiency (text, DeYoung et al. 2020), each against random attributions; and the model-randomization sanity
check (Adebayo et al. 2018)."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

ERASER_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
RANDOM_REPEATS = 3
# The model-randomization check fails when the attributions' rank correlation (|attribution|, Spearman, mean over
# inputs) with the trained model's stays above this once every weight is randomized: more than half of the rank
# order survives destroying what the model learned. Adebayo et al. (2018) show the correlations and set no line;
# 0.5 is ours: "keeps most of its rank order".
SANITY_THRESHOLD = 0.5


def _auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions 0..1 (trapezoid rule)."""
    return float(((curve[1:] + curve[:-1]) / 2).mean()) if len(curve) > 1 else float(curve[0])


def _random_scores(items, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.random(it.n_features) for it in items]


def image_curves(subject, items, scores: list[list[float]], targets: list[int], baseline: str, seed: int, points: int = 17) -> dict:
    """Deletion (most important pixels to baseline first) and insertion (from the baseline, most important first)."""
    n_feat = items[0].n_features
    ks = np.unique(np.linspace(0, n_feat, points).round().astype(int))

    def curves(all_scores):
        rows_items, keeps_del, keeps_ins, tg = [], [], [], []
        for it, s, t in zip(items, all_scores, targets):
            order = np.argsort(-np.asarray(s), kind="stable")
            for k in ks:
                top = np.zeros(n_feat, bool)
                top[order[:k]] = True
                rows_items.append(it); keeps_del.append(~top); keeps_ins.append(top); tg.append(t)
        d = subject.masked_probs(rows_items, keeps_del, tg, baseline).reshape(len(items), len(ks))
        i = subject.masked_probs(rows_items, keeps_ins, tg, baseline).reshape(len(items), len(ks))
        return d.mean(0), i.mean(0)

    dele, ins = curves(scores)
    rng = np.random.default_rng(seed)
    rand = [curves(_random_scores(items, rng)) for _ in range(RANDOM_REPEATS)]
    rdel, rins = np.mean([r[0] for r in rand], 0), np.mean([r[1] for r in rand], 0)
    return {"fractions": (ks / n_feat).tolist(), "deletion": dele.tolist(), "insertion": ins.tolist(),
            "random_deletion": rdel.tolist(), "random_insertion": rins.tolist(),
            "deletion_auc": _auc(dele), "insertion_auc": _auc(ins),
            "random_deletion_auc": _auc(rdel), "random_insertion_auc": _auc(rins)}


def eraser(subject, items, scores: list[list[float]], targets: list[int], baseline: str, seed: int) -> dict:
    """Comprehensiveness p(x) - p(x without top-k% words) and sufficiency p(x) - p(top-k% words only), averaged over
    the ERASER bins (AOPC); higher comprehensiveness and lower sufficiency are better. Every masked text (the
    attributions' and the random ones') goes through the model in one call, so the model sees similar lengths together."""
    rng = np.random.default_rng(seed)
    rankings = [scores] + [_random_scores(items, rng) for _ in range(RANDOM_REPEATS)]
    rows_items = list(items)
    keeps = [np.ones(it.n_features, bool) for it in items]
    tg = list(targets)
    for all_scores in rankings:
        for keep_top in (False, True):  # comprehensiveness (top words deleted), then sufficiency (only they kept)
            for it, s, t in zip(items, all_scores, targets):
                order = np.argsort(-np.asarray(s), kind="stable")
                for frac in ERASER_BINS:
                    top = np.zeros(it.n_features, bool)
                    top[order[: max(1, int(np.ceil(frac * it.n_features)))]] = True
                    rows_items.append(it); keeps.append(top if keep_top else ~top); tg.append(t)
    probs = subject.masked_probs(rows_items, keeps, tg, baseline)
    full, rest = probs[: len(items)], probs[len(items):].reshape(len(rankings), 2, len(items), len(ERASER_BINS))
    aopc = (full[None, None, :, None] - rest).mean(axis=(2, 3))  # rankings x (comprehensiveness, sufficiency)
    return {"bins": list(ERASER_BINS), "comprehensiveness": float(aopc[0, 0]), "sufficiency": float(aopc[0, 1]),
            "random_comprehensiveness": float(aopc[1:, 0].mean()), "random_sufficiency": float(aopc[1:, 1].mean())}


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing their mean rank (as scipy.stats.rankdata does by default)."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]


def spearman(a, b) -> float:
    """Spearman rank correlation (ties share their mean rank); nan below two values, 0 when either side is constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2:
        return float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Float parameters are redrawn at their own scale; a quantized layer's integer weight codes (its 2-D integer
    buffers) are shuffled, which keeps their distribution and destroys what was learned. Written back through
    load_state_dict so that layers drop what they derived from the old values (packed or dequantized weights)."""
    state = {}
    for name, p in module.named_parameters(recurse=False):
        if p.dim() > 1:
            state[name] = torch.randn(p.shape, generator=generator) * (p.detach().std() if p.numel() > 1 else 1.0)
        else:
            scale = float(p.detach().std()) if p.numel() > 1 else float(p.detach().abs().max())  # std of one value is nan
            state[name] = torch.randn(p.shape, generator=generator) * max(scale, 1e-2)
    for name, b in _code_buffers(module):
        flat = b.reshape(-1)
        state[name] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(b.shape)
    if state:
        current = module.state_dict()
        with torch.no_grad():
            module.load_state_dict({**current, **{k: v.to(current[k].dtype) for k, v in state.items()}}, strict=False)


def _code_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Weight codes of a quantized layer: its own saved int8 / uint8 buffers of 2 or more dimensions."""
    saved = set(module.state_dict(keep_vars=True))
    return [(n, b) for n, b in module.named_buffers(recurse=False)
            if n in saved and b.dim() > 1 and b.dtype in (torch.int8, torch.uint8)]


def _layer_groups(model: nn.Module, n_groups: int = 6) -> list[list[tuple[str, nn.Module]]]:
    """Modules holding weights (parameters or quantized codes), from the output back to the input, in at most
    `n_groups` cascading steps."""
    leaves = [(n, m) for n, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False)) or _code_buffers(m)][::-1]
    chunks = np.array_split(np.arange(len(leaves)), min(n_groups, len(leaves)))
    return [[leaves[i] for i in c] for c in chunks if len(c)]


def sanity_check(model: nn.Module, explain_with: Callable[[nn.Module], list[list[float]]], original: list[list[float]],
                 differs: list[np.ndarray], mode: str, seed: int) -> dict:
    """Re-explain with randomized weights (all at once, or cascading from the output layer) and report how much the
    attributions changed: Spearman rank correlation of |attributions| over the features where input and baseline
    differ (`differs`, per input; where they are equal, integrated gradients gives 0 under any weights, and those
    ties would count as agreement). The verdict is on the last step (every weight randomized): a correlation above
    SANITY_THRESHOLD fails the check."""
    gen = torch.Generator().manual_seed(seed)
    steps = []
    randomized = copy.deepcopy(model)
    groups = _layer_groups(randomized) if mode == "cascading" else [list(_layer_groups(randomized, 1)[0])]
    for group in groups:
        for _, m in group:
            _randomize(m, gen)
        new = explain_with(randomized)
        pairs = [(np.asarray(a, float)[d], np.asarray(b, float)[d]) for a, b, d in zip(original, new, differs)]
        rho_abs = _mean([spearman(np.abs(a), np.abs(b)) for a, b in pairs])
        rho = _mean([spearman(a, b) for a, b in pairs])
        steps.append({"randomized": group[-1][0] if mode == "cascading" else "all weights",
                      "layers": len(group), "spearman_abs": rho_abs, "spearman": rho})
    last = steps[-1]
    return {"mode": mode, "steps": steps, "spearman_abs": last["spearman_abs"], "spearman": last["spearman"],
            "change": 1.0 - last["spearman_abs"], "features": float(np.mean([int(np.sum(d)) for d in differs])),
            **sanity_verdict(last["spearman_abs"])}


def sanity_verdict(rho_abs: float) -> dict:
    """pass / fail / undecided (no input has two features that differ from the baseline), with what it means."""
    if np.isnan(rho_abs):
        return {"threshold": SANITY_THRESHOLD, "verdict": "undecided",
                "meaning": "no input has two features that differ from the baseline, so there is no rank to compare."}
    if rho_abs > SANITY_THRESHOLD:
        return {"threshold": SANITY_THRESHOLD, "verdict": "fail",
                "meaning": f"the attributions keep their rank order (correlation {rho_abs:.2f} > {SANITY_THRESHOLD:g}) when "
                           "the model's weights are randomized, so on this model they reflect the input more than what "
                           "the model learned; do not read them as the model's reasons."}
    return {"threshold": SANITY_THRESHOLD, "verdict": "pass",
            "meaning": f"randomizing the model's weights changes the attributions' rank order (correlation {rho_abs:.2f} "
                       f"<= {SANITY_THRESHOLD:g}), so they depend on what the model learned."}


def _mean(values: list[float]) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
