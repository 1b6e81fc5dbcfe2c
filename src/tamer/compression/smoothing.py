"""SmoothQuant's per-layer migration strength and the per-token / per-call choice of activation scales, each chosen
by the int8 output error on the layer's calibration input (Xiao et al. 2023, SmoothQuant)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import CompressConfig
from .layers import layer_from_codes, linear_weight
from .qmath import Quantized, quantize


def int8_gemm_candidate(m: nn.Module, q: Quantized, config: CompressConfig) -> bool:
    return (not isinstance(m, (nn.Embedding, nn.Conv2d)) and q.bits == 8 and config.activations == "dynamic"
            and q.scheme == "sym" and q.group_size is None and q.scale.dim() > 0)


def _int8_output_error(m: nn.Module, q: Quantized, x: torch.Tensor, ref: torch.Tensor, smooth: torch.Tensor | None,
                       per_token: bool) -> float:
    """Relative error ||int8 layer(x) - x W^T|| / ||x W^T|| of one int8 GEMM layer (bias left out)."""
    layer = layer_from_codes(m, q, "int8-dynamic", smooth, per_token)
    if layer.bias is not None:
        layer.bias.zero_()
    return float((layer(x) - ref).norm() / ref.norm().clamp(min=1e-12))


SMOOTH_ALPHA = 0.5  # the migration strength SmoothQuant found best for most models (its section 4); used uncalibrated


# SmoothQuant's alpha searched per layer, as Intel Neural Compressor's layer-wise auto-tuning does ("the
# distributions of activation outliers vary not only across different models but also across different layers"):
# measured on MiniLM, one alpha for all layers gave a pooled-output cosine of 0.9943 (off) .. 0.9976 (0.7), and the
# best alpha differs from layer to layer.
SMOOTH_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


@torch.inference_mode()
def choose_smoothing(m: nn.Module, act_amax: torch.Tensor, sample: torch.Tensor | None,
                     config: CompressConfig) -> tuple[torch.Tensor | None, Quantized, dict[str, Any]]:
    """(SmoothQuant factors or None, int8 codes of the smoothed weight, what the recipe records) for one layer.

    With --smooth-alpha the factors use it; otherwise each alpha of SMOOTH_ALPHAS (and no smoothing) is tried on the
    layer's calibration input, and the one whose int8 output errs least against fp32 is kept.
    """
    w = linear_weight(m)
    if config.smooth_alpha is not None or sample is None:
        alpha = config.smooth_alpha if config.smooth_alpha is not None else SMOOTH_ALPHA
        if alpha == 0:
            return None, gemm_codes(w), {"smooth_alpha": 0.0}
        smooth = smoothing_factors(act_amax, w, alpha)
        return smooth, gemm_codes(w, smooth), {"smooth_alpha": alpha}
    x = sample.reshape(-1, sample.shape[-1]).float()[:2048]
    ref = nn.functional.linear(x, w)
    per_token = config.activation_scales != "tensor"
    best, errors = None, {}
    for alpha in SMOOTH_ALPHAS:
        smooth = smoothing_factors(act_amax, w, alpha) if alpha > 0 else None
        q = gemm_codes(w, smooth)
        errors[alpha] = _int8_output_error(m, q, x, ref, smooth, per_token)
        if best is None or errors[alpha] < best[0]:
            best = (errors[alpha], alpha, smooth, q)
    _, alpha, smooth, q = best
    return smooth, q, {"smooth_alpha": alpha, "smooth_alpha_error": {f"{a:g}": round(e, 5) for a, e in errors.items()}}


PER_TOKEN_GAIN = 2.0  # auto: per-token scales where one scale per call has at least this much more output error


@torch.inference_mode()
def activation_scales(m: nn.Module, q: Quantized, sample: torch.Tensor, smooth: torch.Tensor | None,
                      mode: str) -> tuple[bool, dict[str, float]]:
    """(per_token, relative output error of each choice on the calibration input) for one int8 GEMM layer.

    Per-token scales cost an extra pass over the input and the output; they pay where a few tokens carry much
    larger activations than the rest (in BERT-like models: the MLP's down-projection input, Bondarenko et al. 2021).
    """
    x = sample.reshape(-1, sample.shape[-1]).float()[:2048]
    ref = nn.functional.linear(x, linear_weight(m))
    errors = {label: round(_int8_output_error(m, q, x, ref, smooth, per_token), 5)
              for label, per_token in (("token", True), ("tensor", False))}
    if mode != "auto":
        return mode == "token", errors
    return errors["tensor"] > PER_TOKEN_GAIN * errors["token"], errors


def gemm_codes(w: torch.Tensor, smooth: torch.Tensor | None = None) -> Quantized:
    """Symmetric per-channel int8 codes, the int8 GEMM's format, of W (or of W * diag(s) with SmoothQuant's s)."""
    return quantize(w * smooth if smooth is not None else w, 8, "sym", "channel", None)


def smoothing_factors(act_amax: torch.Tensor, weight: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha) per input channel j (SmoothQuant, eq. 4); 1 where a side is zero."""
    w_amax = weight.abs().amax(0).float()
    s = act_amax.clamp(min=1e-5).pow(alpha) / w_amax.clamp(min=1e-5).pow(1 - alpha)
    s = torch.where((act_amax > 0) & (w_amax > 0), s, torch.ones_like(s))
    return s.clamp(1e-3, 1e3)

