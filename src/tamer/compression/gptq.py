"""GPTQ calibration (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", arXiv:2210.17323).

For each linear layer with calibration inputs X, GPTQ quantizes the weight one input column at a time and
spreads each column's rounding error over the columns not yet quantized, weighted by the inverse Hessian
H = 2 X^T X (the optimal-brain-surgeon update), so the layer's output error ||W X - Q X|| rather than the
weight error is minimized. Scales are fixed per group as the group is reached (as in the paper's grouped
variant); columns are taken in their natural order. Inputs come from the fp32 model in one pass.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import CompressConfig
from .layers import is_conv1d, linear_weight, quantizable
from .qmath import Quantized, qrange, quantize


def _hessians(model: nn.Module, names: list[str], task, batches) -> dict[str, torch.Tensor]:
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(mod, inp, out, name):
        x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
        sums[name] = sums.get(name, 0) + 2 * x.t() @ x
        counts[name] = counts.get(name, 0) + x.shape[0]

    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in names]
    try:
        with torch.inference_mode():
            for batch in batches:
                task.forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in sums}


def gptq_quantize_weight(w: torch.Tensor, h: torch.Tensor, bits: int, scheme: str, group_size: int | None,
                         damp: float = 0.01, block: int = 128) -> Quantized:
    """GPTQ codes, scales and zero-points of weight `w` [rows, cols] given the layer's Hessian `h` [cols, cols]."""
    w = w.clone().float()
    rows, cols = w.shape
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    qmin, qmax = qrange(bits, scheme)
    codes = torch.zeros(rows, cols)
    scales, zeros = [], []
    if not group_size:
        first = quantize(w, bits, scheme, "channel")
        scale, zero = first.scale, first.zero_point.float()
        scales, zeros = [first.scale], [first.zero_point]
    for i1 in range(0, cols, block):  # block is a multiple of every group size, so a group never straddles blocks
        i2 = min(i1 + block, cols)
        w1, err1, hinv1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if group_size and (i1 + i) % group_size == 0:
                g = quantize(w1[:, i:i + group_size], bits, scheme, "channel")  # the group's scale, from updated weights
                scale, zero = g.scale, g.zero_point.float()
                scales.append(g.scale)
                zeros.append(g.zero_point)
            x = w1[:, i]
            q = torch.clamp(torch.round(x / scale) + zero, qmin, qmax)
            codes[:, i1 + i] = q
            e = (x - (q - zero) * scale) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    dtype = torch.uint8 if (scheme == "asym" and bits == 8) else torch.int8
    if group_size:
        return Quantized(codes.to(dtype), torch.stack(scales, 1), torch.stack(zeros, 1), bits, scheme, group_size)
    return Quantized(codes.to(dtype), scales[0], zeros[0], bits, scheme, None)


def gptq_weights(model: nn.Module, task, batches, config: CompressConfig) -> dict[str, Quantized]:
    """name -> GPTQ codes for every linear layer (embeddings and convolutions stay round-to-nearest)."""
    names = [n for n, m in quantizable(model, False).items() if isinstance(m, nn.Linear) or is_conv1d(m)]
    hessians = _hessians(model, names, task, batches)
    gran = config.resolved_granularity
    out = {}
    for name in names:
        if name not in hessians:
            continue
        w = linear_weight(model.get_submodule(name))
        if gran == "tensor":
            continue  # one scale for the whole tensor: GPTQ's column updates assume per-row scales
        out[name] = gptq_quantize_weight(w, hessians[name], config.bits, config.scheme,
                                         config.group_size if gran == "group" else None)
    return out
