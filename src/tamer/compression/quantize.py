"""Quantize a model's layers, choose each layer's execution by timing it, and rebuild the model from an artifact.

Per layer the recipe records what is stored (bits, scheme, group size) and how it runs:
- `int8-dynamic`: fbgemm's int8 GEMM (oneDNN's under `compiled()`) with per-token activation scales and SmoothQuant factors from calibration
  (Linear, symmetric int8 only);
- `fp32-fallback`: codes on disk, dequantized once at load, fp32 GEMM (when int8 was not faster for the
  layer's shape, or the layer cannot run in int8: convolutions, asymmetric codes, --activations weight-only);
- `int4-on-the-fly`: packed int4 codes in memory, dequantized per call;
- `embedding`: int8 / int4 rows, only the looked-up rows dequantized.
"""
from __future__ import annotations

import functools
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UsageError
from .config import CompressConfig
from .layers import BACKEND, BACKENDS, Int8DynamicLinear, QuantEmbedding, WeightOnlyConv2d, WeightOnlyLinear
from .qmath import Quantized, pack_int4, quantize


def is_conv1d(m: nn.Module) -> bool:  # GPT-2's Conv1D: a linear layer with its weight stored [in, out]
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf")


def linear_weight(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().t() if is_conv1d(m) else m.weight.detach()


def quantizable(model: nn.Module, embeddings: bool = True) -> dict[str, nn.Module]:
    """Name -> layer for every Linear / Conv1D / Conv2d (and Embedding when asked) in `model`."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) or is_conv1d(m) or (embeddings and isinstance(m, nn.Embedding)):
            out[name] = m
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def check_shapes(layers: dict[str, nn.Module], config: CompressConfig) -> None:
    """Refuse, before any work, a group size that does not divide a layer's input width (or an odd int4 width)."""
    for name, m in layers.items():
        if isinstance(m, nn.Conv2d):
            continue  # convolutions are always per output channel
        cols = m.weight.shape[1] if not is_conv1d(m) else m.weight.shape[0]
        if config.resolved_granularity == "group" and cols % config.group_size:
            raise UsageError(f"--group-size {config.group_size} does not divide the input width {cols} of layer {name!r}; "
                             f"use a group size that divides it ({', '.join(str(g) for g in (32, 64, 128) if cols % g == 0) or 'none fits: use --granularity channel'}).")
        if config.bits == 4 and cols % 2:
            raise UsageError(f"int4 packs two codes per byte, and layer {name!r} has an odd input width {cols}; use --quantize int8.")


def _median_ms(fn: Callable[[], Any], reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


@torch.inference_mode()
def time_layer(fp32: nn.Module, quant: nn.Module, x: torch.Tensor, reps: int = 5) -> tuple[float, float]:
    """Interleaved medians (ms) of the fp32 and quantized layer on the same input, so load changes hit both."""
    a, b = [], []
    fp32(x), quant(x), fp32(x), quant(x)
    for _ in range(reps):
        a.append(_median_ms(lambda: fp32(x), 1))
        b.append(_median_ms(lambda: quant(x), 1))
    return statistics.median(a), statistics.median(b)


def _codes_module(m: nn.Module, q: Quantized, exec_: str, smooth: torch.Tensor | None = None,
                  per_token: bool = True) -> nn.Module:
    bias = getattr(m, "bias", None)
    signed = q.scheme == "sym"
    codes = pack_int4(q.q) if q.bits == 4 else q.q
    if isinstance(m, nn.Embedding):
        new = QuantEmbedding(m.num_embeddings, m.embedding_dim, q.bits, q.group_size, signed, m.padding_idx)
    elif isinstance(m, nn.Conv2d):
        new = WeightOnlyConv2d(tuple(m.weight.shape), bias is not None, q.bits, q.group_size, signed, True,
                               m.stride, m.padding, m.dilation, m.groups)
    elif exec_ == "int8-dynamic":
        w = linear_weight(m)
        new = Int8DynamicLinear(w.shape[1], w.shape[0], bias is not None, per_token)
        if smooth is not None:
            new.smooth.copy_(smooth)
    else:
        w = linear_weight(m)
        new = WeightOnlyLinear(w.shape[1], w.shape[0], bias is not None, q.bits, q.group_size, signed,
                               cache=exec_ == "fp32-fallback", int8_smooth=smooth is not None)
        if smooth is not None:  # the codes stay plain; the factors wait for compiled()
            new.int8_smooth.copy_(smooth)
    new.qweight.copy_(codes.reshape(new.qweight.shape))
    new.scale.copy_(q.scale.reshape(new.scale.shape))
    new.zero_point.copy_(q.zero_point.reshape(new.zero_point.shape))
    if bias is not None and new.bias is not None:
        new.bias.copy_(bias.detach())
    return new


def layer_spec(m: nn.Module) -> dict[str, Any]:
    """What the loader needs to rebuild an empty quantized layer of the right shape."""
    if isinstance(m, nn.Embedding):
        return {"type": "embedding", "shape": [m.num_embeddings, m.embedding_dim], "padding_idx": m.padding_idx}
    if isinstance(m, nn.Conv2d):
        return {"type": "conv2d", "shape": list(m.weight.shape), "bias": m.bias is not None, "stride": list(m.stride),
                "padding": list(m.padding), "dilation": list(m.dilation), "groups": m.groups}
    w = linear_weight(m)
    return {"type": "linear", "shape": list(w.shape), "bias": getattr(m, "bias", None) is not None}


def quantize_layer(m: nn.Module, config: CompressConfig) -> Quantized:
    """Round-to-nearest codes of one layer. Convolutions: per output channel; int8 embeddings: per row, asymmetric."""
    w = m.weight.detach() if isinstance(m, (nn.Conv2d, nn.Embedding)) else linear_weight(m)
    gran = config.resolved_granularity
    if isinstance(m, nn.Conv2d) and gran == "group":
        gran = "channel"
    scheme = config.scheme
    if isinstance(m, nn.Embedding) and config.bits == 8:
        scheme, gran = "asym", ("channel" if gran == "tensor" else gran)  # one scale per row: a table's rows differ widely
    bits = config.bits
    if isinstance(m, nn.Conv2d):
        w = w.reshape(w.shape[0], -1)
        if bits == 4 and w.shape[1] % 2:
            bits = 8  # an odd kernel width cannot pack two per byte; the recipe records 8 bits for this layer
    return quantize(w, bits, scheme, gran, config.group_size if gran == "group" else None)


def choose_exec(m: nn.Module, q: Quantized, config: CompressConfig, sample: torch.Tensor | None,
                smooth: torch.Tensor | None = None, per_token: bool = True) -> tuple[str, str, dict]:
    """(execution, reason, timings) for one layer: int8 GEMM only where it is measured faster than fp32."""
    if isinstance(m, nn.Embedding):
        return "embedding", "rows dequantized on lookup", {}
    if isinstance(m, nn.Conv2d):
        return "fp32-fallback", "no int8 convolution kernel is used; codes dequantized once at load", {}
    if q.bits == 4:
        if sample is None:
            return "int4-on-the-fly", "packed int4 in memory, dequantized per call (not timed)", {}
        fp32_ms, int4_ms = time_layer(m, _codes_module(m, q, "int4-on-the-fly"), sample)
        timing = {"fp32_ms": round(fp32_ms, 3), "int4_ms": round(int4_ms, 3)}
        if int4_ms <= 1.05 * fp32_ms:
            return "int4-on-the-fly", f"dequantize per call {int4_ms:.2f} ms vs fp32 {fp32_ms:.2f} ms", timing
        return "fp32-fallback", f"dequantize per call {int4_ms:.2f} ms was slower than fp32 {fp32_ms:.2f} ms; dequantized once at load", timing
    if config.activations == "weight-only":
        return "fp32-fallback", "--activations weight-only", {}
    if q.scheme != "sym" or q.group_size is not None or q.scale.dim() == 0:
        return "fp32-fallback", "the int8 GEMM takes symmetric per-channel weights only", {}
    if sample is None:
        return "fp32-fallback", "layer not reached by calibration data, so not timed", {}
    if BACKEND is None:
        return "fp32-fallback", "this torch build has no int8 GEMM (neither oneDNN nor fbgemm)", {}
    # the eager int8 GEMM (layers.BACKEND) against fp32 on a small and a large call: int8 only if faster on both
    # (within noise on the small one)
    candidate = _codes_module(m, q, "int8-dynamic", smooth, per_token)
    timing: dict[str, Any] = {"backend": BACKEND}
    for label, x in serving_shapes(sample).items():
        fp32_ms, int8_ms = time_layer(m, candidate, x, reps=5 if label == "small" else 3)
        timing[label] = {"tokens": int(x.shape[0]), "fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3)}
        slack = SMALL_CALL_SLACK if label == "small" else 1.0
        if int8_ms >= fp32_ms * slack:
            return ("fp32-fallback", f"int8 {int8_ms:.2f} ms was not faster than fp32 {fp32_ms:.2f} ms "
                                     f"on {x.shape[0]} tokens", timing)
    shown = ", ".join(f"{t['int8_ms']:.2f} vs {t['fp32_ms']:.2f} ms on {t['tokens']} tokens"
                      for t in timing.values() if isinstance(t, dict))
    return "int8-dynamic", f"{BACKEND} int8 against fp32: {shown}", timing


# A small call (<= 128 tokens) takes well under a millisecond per layer, where repeated medians differ by ~5%: int8
# may tie fp32 there within that noise if it is faster on the large call, where the time of a served batch goes.
SMALL_CALL_SLACK = 1.08


# The whole quantized model against fp32 (compare_latency medians, ms per batch): slower than this at either batch
# size, and every layer falls back to fp32 execution.
WHOLE_MODEL_SLACK = {1: SMALL_CALL_SLACK, 32: 1.03}


def slower_than_fp32(latency: dict[int, dict[str, float]]) -> str | None:
    """Why the quantized model as a whole is slower than its fp32 parent ({batch: {"parent": ms, "child": ms}}), or
    None when it is not."""
    for batch, slack in WHOLE_MODEL_SLACK.items():
        child, parent = latency[batch]["child"], latency[batch]["parent"]
        if child > parent * slack:
            return f"the quantized model took {child:.2f} ms against fp32's {parent:.2f} ms at batch {batch}"
    return None


@torch.no_grad()
def whole_model_fallback(quant: nn.Module, fp32: nn.Module, recipe: dict[str, Any], config: CompressConfig,
                         why: str) -> str | None:
    """Move every layer of `quant` that runs an int8 / int4 kernel to fp32 execution (codes dequantized once), in
    place, and say so in its recipe row; returns the reason recorded, or None when no layer ran such a kernel."""
    moved = [n for n, r in recipe.items() if r["exec"] in ("int8-dynamic", "int4-on-the-fly")]
    reason = f"whole-model fallback: {why}; codes dequantized once at load"
    for name in moved:
        m, row = quant.get_submodule(name), recipe[name]
        smoothed = isinstance(m, Int8DynamicLinear) and not bool((m.smooth == 1).all())
        if smoothed:  # SmoothQuant codes hold W * diag(s); fp32 execution keeps the plain codes and, for compiled(), s
            f = fp32.get_submodule(name)
            new = _codes_module(f, quantize_layer(f, config), "fp32-fallback", smooth=m.smooth.clone())
        else:
            new = WeightOnlyLinear(m.shape[1], m.shape[0], m.bias is not None, m.bits, m.group_size, m.signed, cache=True)
            new.load_state_dict(m.state_dict(), strict=False)  # an int8 layer's `smooth` (all ones) is not needed
        _set(quant, name, new.eval())
        for key in ("per_token", "activation_scale_error", "backend") + (() if smoothed else ("smooth_alpha", "smooth_alpha_error")):
            row.pop(key, None)
        row.update(exec="fp32-fallback", reason=reason, smoothquant=False)
        if smoothed:
            row["int8_smooth"] = True
    return reason if moved else None


LARGE_TOKENS = 2048  # a served batch (e.g. 32 sequences of 64 tokens): GEMMs this size are where the time goes


def serving_shapes(sample: torch.Tensor) -> dict[str, torch.Tensor]:
    """The calibration input as a small call (up to 128 tokens) and tiled up to a large batched call, so a layer
    runs in int8 only when it is faster at both ends of what it will serve."""
    rows = sample.reshape(-1, sample.shape[-1]).float()
    small = rows[:128]
    large = rows.repeat((LARGE_TOKENS + rows.shape[0] - 1) // rows.shape[0], 1)[:LARGE_TOKENS]
    return {"small": small, "large": large}


@torch.inference_mode()
def capture_inputs(model: nn.Module, names: list[str], run: Callable[[], None],
                   amax: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The first input each named layer sees while `run()` runs the model on calibration data; with `amax`, also
    each layer's largest |input| per input channel over all the calibration data."""
    seen: dict[str, torch.Tensor] = {}
    def keep(name: str, inp) -> None:  # a forward hook that returned a value would replace the layer's output
        x = inp[0].detach()
        seen.setdefault(name, x)
        if amax is not None:
            m = x.reshape(-1, x.shape[-1]).abs().amax(0).float()
            amax[name] = torch.maximum(amax[name], m) if name in amax else m

    hooks = [model.get_submodule(n).register_forward_hook(lambda mod, inp, out, n=n: keep(n, inp)) for n in names]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def quantize_model(model: nn.Module, config: CompressConfig, run_calibration: Callable[[nn.Module], None] | None,
                   precomputed: dict[str, Quantized] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Replace the quantizable layers of `model` in place; returns (model, recipe with one row per layer).

    `precomputed` (name -> codes, e.g. from GPTQ) is used instead of round-to-nearest for those layers.
    """
    layers = quantizable(model, config.embeddings)
    check_shapes(layers, config)
    samples: dict[str, torch.Tensor] = {}
    amax: dict[str, torch.Tensor] = {}
    if run_calibration is not None:
        samples = capture_inputs(model, [n for n, m in layers.items() if not isinstance(m, (nn.Embedding, nn.Conv2d))],
                                 lambda: run_calibration(model), amax)
    recipe: dict[str, Any] = {}
    for name, m in layers.items():
        q = (precomputed or {}).get(name) or quantize_layer(m, config)
        smooth, alpha_info = None, {}
        if name in amax and not (precomputed and name in precomputed) and _int8_gemm_candidate(m, q, config):
            smooth, q, alpha_info = choose_smoothing(m, amax[name], samples.get(name), config)
        per_token, scale_errors = True, {}
        if name in samples and _int8_gemm_candidate(m, q, config):
            per_token, scale_errors = activation_scales(m, q, samples[name], smooth, config.activation_scales)
        exec_, reason, timing = choose_exec(m, q, config, samples.get(name), smooth, per_token)
        for_compiled = smooth is not None and exec_ != "int8-dynamic"
        if for_compiled:  # fp32 execution: plain codes; the factors are kept for compiled()
            q = quantize_layer(m, config)
        recipe[name] = {**layer_spec(m), "bits": q.bits, "scheme": q.scheme, "group_size": q.group_size,
                        "granularity": "group" if q.group_size else ("tensor" if q.scale.dim() == 0 else "channel"),
                        "exec": exec_, "reason": reason, "smoothquant": smooth is not None and not for_compiled,
                        "timing": timing}
        if for_compiled:
            recipe[name].update(int8_smooth=True, **alpha_info)
        if exec_ == "int8-dynamic":
            recipe[name].update(per_token=per_token, activation_scale_error=scale_errors, backend=timing["backend"],
                                **alpha_info)
        _set(model, name, _codes_module(m, q, exec_, smooth, per_token))
    return model, recipe


def _int8_output_error(m: nn.Module, q: Quantized, x: torch.Tensor, ref: torch.Tensor, smooth: torch.Tensor | None,
                       per_token: bool) -> float:
    """Relative error ||int8 layer(x) - x W^T|| / ||x W^T|| of one int8 GEMM layer (bias left out)."""
    layer = _codes_module(m, q, "int8-dynamic", smooth, per_token)
    if layer.bias is not None:
        layer.bias.zero_()
    return float((layer(x) - ref).norm() / ref.norm().clamp(min=1e-12))


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


SMOOTH_ALPHA = 0.5  # the migration strength SmoothQuant found best for most models (its section 4); used uncalibrated


def gemm_codes(w: torch.Tensor, smooth: torch.Tensor | None = None) -> Quantized:
    """Symmetric per-channel int8 codes, the int8 GEMM's format, of W (or of W * diag(s) with SmoothQuant's s)."""
    return quantize(w * smooth if smooth is not None else w, 8, "sym", "channel", None)


def smoothing_factors(act_amax: torch.Tensor, weight: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha) per input channel j (SmoothQuant, eq. 4); 1 where a side is zero."""
    w_amax = weight.abs().amax(0).float()
    s = act_amax.clamp(min=1e-5).pow(alpha) / w_amax.clamp(min=1e-5).pow(1 - alpha)
    s = torch.where((act_amax > 0) & (w_amax > 0), s, torch.ones_like(s))
    return s.clamp(1e-3, 1e3)


def _int8_gemm_candidate(m: nn.Module, q: Quantized, config: CompressConfig) -> bool:
    return (not isinstance(m, (nn.Embedding, nn.Conv2d)) and q.bits == 8 and config.activations == "dynamic"
            and q.scheme == "sym" and q.group_size is None and q.scale.dim() > 0)


def _int8_codes(m: nn.Module) -> bool:
    """A linear layer kept in fp32 execution whose codes are symmetric per-channel int8 (the int8 GEMM's format)."""
    return (type(m) is WeightOnlyLinear and m.bits == 8 and m.group_size is None and m.signed
            and m.scale.dim() == 1 and bool((m.zero_point == 0).all()))


def empty_layer(spec: dict[str, Any]) -> nn.Module:
    """An empty quantized layer for one recipe row; load_state_dict fills it."""
    signed, bits, g = spec["scheme"] == "sym", spec["bits"], spec["group_size"]
    if spec["type"] == "embedding":
        return QuantEmbedding(*spec["shape"], bits, g, signed, spec.get("padding_idx"))
    if spec["type"] == "conv2d":
        return WeightOnlyConv2d(tuple(spec["shape"]), spec["bias"], bits, g, signed, True,
                                spec["stride"], spec["padding"], spec["dilation"], spec["groups"])
    out_f, in_f = spec["shape"]
    if spec["exec"] == "int8-dynamic":
        layer = Int8DynamicLinear(in_f, out_f, spec["bias"], spec.get("per_token", True))
        if spec.get("backend") in BACKENDS:  # else: the one this build has (the recorded one is missing here)
            layer.backend = spec["backend"]
        return layer
    return WeightOnlyLinear(in_f, out_f, spec["bias"], bits, g, signed, cache=spec["exec"] == "fp32-fallback",
                            int8_smooth=bool(spec.get("int8_smooth")))


def load_quantized(model: nn.Module, state_dict: dict[str, torch.Tensor], manifest: dict[str, Any]) -> nn.Module:
    """The artifact loader for int8 / int4 formats: rebuild the recorded layers, then load their codes."""
    for name, spec in manifest["quantization"]["layers"].items():
        _set(model, name, empty_layer(spec))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def compiled(fn: Callable, int8_everywhere: bool = True):
    """`fn` (a model, or one of its methods) under torch.compile for CPU inference with Inductor's freezing.

    Freezing makes the weights constants, so Inductor lowers the int8 layers' oneDNN GEMMs directly and fuses the
    passes around them (per-token min / max and coding, the rescale, the bias) with the neighbouring elementwise work
    (GELU, residual adds, LayerNorm). Those passes are what made some layers fall back to fp32 when compression timed
    them eagerly, so with `int8_everywhere` every linear layer whose codes are symmetric int8 runs oneDNN's int8 GEMM
    (a layer that fell back is requantized from its plain codes times the SmoothQuant factors that calibration chose
    for it, kept in its `int8_smooth` buffer; one without them gets per-token codes alone). Call the result under
    torch.inference_mode(); the first call of each input shape compiles (30-80 s for MiniLM on 2 cores).
    """
    owner = getattr(fn, "__self__", fn)
    onednn = "onednn" in BACKENDS
    if isinstance(owner, nn.Module):
        for name, m in list(owner.named_modules()):
            if int8_everywhere and onednn and _int8_codes(m):
                new = Int8DynamicLinear(m.shape[1], m.shape[0], m.bias is not None).to(m.qweight.device)
                if m.int8_smooth is None:
                    state = {k: v for k, v in m.state_dict().items() if k != "int8_smooth"}
                else:  # x W^T = (x / s) (W s)^T: code W s per output channel
                    q = gemm_codes(m.weight(), m.int8_smooth)
                    state = {"qweight": q.q, "scale": q.scale, "zero_point": q.zero_point, "smooth": m.int8_smooth}
                    if m.bias is not None:
                        state["bias"] = m.bias
                new.load_state_dict(state, strict=False)  # without factors `smooth` stays ones
                new.prepare()
                _set(owner, name, new)
                m = new
            if isinstance(m, Int8DynamicLinear):
                if onednn:
                    m.backend, m._packed = "onednn", None
                m.prepare()  # pack before tracing: the packed weight must be a constant of the graph
    import torch._inductor.config as inductor_config

    # static shapes: a method whose code was compiled before for other shapes (the fp32 model's `pooled`, say) would
    # otherwise start with a dynamic batch size, which Inductor's freezing of the int8 GEMM fails on (torch 2.13)
    fast = torch.compile(fn, dynamic=False)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        # the config is read when a call compiles; torch.compile(options={"freezing": True}) did not reach the
        # lowering of the oneDNN GEMM in torch 2.13 (it asserts that the packed weight is a graph constant)
        with inductor_config.patch(freezing=True):
            return fast(*args, **kwargs)

    return run
