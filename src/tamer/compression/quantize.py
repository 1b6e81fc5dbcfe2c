"""Quantize a model's layers and choose each layer's execution by timing it: the quantize step of `compress`.

Per layer the recipe records what is stored (bits, scheme, group size) and how it runs:
- `int8-dynamic`: fbgemm's int8 GEMM (oneDNN's under `compiled()`) with per-token activation scales and SmoothQuant factors from calibration
  (Linear, symmetric int8 only);
- `fp32-fallback`: codes on disk, dequantized once at load, fp32 GEMM (when int8 was not faster for the
  layer's shape, or the layer cannot run in int8: convolutions, asymmetric codes, --activations weight-only);
- `int4-on-the-fly`: packed int4 codes in memory, dequantized per call;
- `embedding`: int8 / int4 rows, only the looked-up rows dequantized.

SmoothQuant and the activation scales are chosen in smoothing.py, timings taken in timing.py, and a quantized
artifact is rebuilt by loading.py.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import UsageError
from .child import compress_seed, weights_bytes, write_child
from .config import CompressConfig
from .gptq import gptq_weights
from .layers import (BACKEND, Int8DynamicLinear, WeightOnlyLinear, is_conv1d, layer_from_codes, linear_weight,
                     quantizable, replace_layer)
from .measure import calibration_batches, compare_latency, headline, latency_batch, output_agreement, run_batches
from .qmath import Quantized, quantize
from .report import StepResult
from .smoothing import activation_scales, choose_smoothing, int8_gemm_candidate
from .portable import machine
from .timing import SMALL_CALL_SLACK, slower_than_fp32, time_layer


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
        fp32_ms, int4_ms = time_layer(m, layer_from_codes(m, q, "int4-on-the-fly"), sample)
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
    candidate = layer_from_codes(m, q, "int8-dynamic", smooth, per_token)
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
        if name in amax and not (precomputed and name in precomputed) and int8_gemm_candidate(m, q, config):
            smooth, q, alpha_info = choose_smoothing(m, amax[name], samples.get(name), config)
        per_token, scale_errors = True, {}
        if name in samples and int8_gemm_candidate(m, q, config):
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
        replace_layer(model, name, layer_from_codes(m, q, exec_, smooth, per_token))
    return model, recipe


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
            new = layer_from_codes(f, quantize_layer(f, config), "fp32-fallback", smooth=m.smooth.clone())
        else:
            new = WeightOnlyLinear(m.shape[1], m.shape[0], m.bias is not None, m.bits, m.group_size, m.signed, cache=True)
            new.load_state_dict(m.state_dict(), strict=False)  # an int8 layer's `smooth` (all ones) is not needed
        replace_layer(quant, name, new.eval())
        for key in ("per_token", "activation_scale_error", "backend") + (() if smoothed else ("smooth_alpha", "smooth_alpha_error")):
            row.pop(key, None)
        row.update(exec="fp32-fallback", reason=reason, smoothquant=False)
        if smoothed:
            row["int8_smooth"] = True
    return reason if moved else None


def quantize_step(parent: Artifact, config: CompressConfig, out: Path, progress: bool) -> tuple[Artifact, StepResult]:
    if parent.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"artifact {str(parent.path)!r} is already {parent.manifest['format']}; quantize its fp32 parent instead.")
    task, fp32 = parent.load_model()
    splits = task.splits(compress_seed(parent))
    calib = calibration_batches(task, splits.train, config.calibration_samples, config.seed)
    new_weights, rtn_metrics = None, None
    if config.calibration == "gptq":
        new_weights = gptq_weights(fp32, task, calib, config)
        rtn, _ = quantize_model(copy.deepcopy(fp32), dataclasses.replace(config, calibration="rtn", activations="weight-only"), None)
        rtn_metrics = task.evaluate(rtn, splits.test)
    quant, recipe = quantize_model(copy.deepcopy(fp32), config, lambda m: run_batches(task, m, calib), new_weights)
    measure = lambda: {n: compare_latency(task, {"parent": fp32, "child": quant}, latency_batch(task, splits.test, n))  # noqa: E731
                       for n in (1, 32)}
    lat = measure()
    # layers that each beat fp32 alone can still lose together (measured: MiniLM 1.07x of fp32 at batch 32 with 11
    # int8 layers); then every layer runs fp32 from its codes: the artifact stays small and is never slower
    whole = slower_than_fp32(lat)
    if whole is not None:
        whole = whole_model_fallback(quant, fp32, recipe, config, whole)
    if whole is not None:
        lat = measure()
    parent_metrics = task.evaluate(fp32, splits.test)
    metrics = task.evaluate(quant, splits.test)
    layer_error = layer_errors(fp32, quant, recipe)
    # the id covers what the weights are (each layer's codes and how it executes), not the timings that chose the
    # execution: those, and the reasons quoting them, go under `run`, so the same choices give the same id
    per_run = ("timing", "reason")
    layers = {n: {k: v for k, v in r.items() if k not in per_run} for n, r in recipe.items()}
    child = write_child(out, parent, task, quant, parent.manifest["model_config"], config, "quantize", config.quantize,
                   metrics, extra={"quantization": {"layers": layers, "bits": config.bits, "scheme": config.scheme,
                                                    "calibration": config.calibration,
                                                    "whole_model_fallback": whole is not None}},
                   run={"quantization": {"layers": {n: {k: r[k] for k in per_run if k in r} for n, r in recipe.items()},
                                         "whole_model_fallback": whole, "machine": machine()},
                        "latency_ms": {f"batch{n}": v for n, v in lat.items()}})
    fell_back = {n: r["reason"] for n, r in recipe.items() if r["exec"] == "fp32-fallback"}
    result = StepResult(
        step="quantize", artifact=str(child.path), id=child.id, detail=f"{config.quantize} {config.scheme} "
        f"{config.resolved_granularity}{' ' + str(config.group_size) if config.resolved_granularity == 'group' else ''}, {config.calibration}",
        parent_bytes=weights_bytes(parent), child_bytes=weights_bytes(child),
        parent_metric=headline(task, parent_metrics), child_metric=headline(task, metrics), metric=task.metric,
        latency_ms={f"batch{n}": v for n, v in lat.items()},
        agreement=output_agreement(task, fp32, quant, calib[:2]),
        layers=[{"layer": n, "exec": r["exec"], "bits": r["bits"], "granularity": r["granularity"],
                 "weight_rel_error": layer_error.get(n), "smooth_alpha": r.get("smooth_alpha"),
                 "output_rel_error": (r.get("activation_scale_error") or {}).get("token" if r.get("per_token") else "tensor"),
                 "reason": r["reason"]} for n, r in recipe.items()],
        fallbacks=fell_back, extra={"whole_model_fallback": whole} if whole else {},
        rtn_metric=headline(task, rtn_metrics) if rtn_metrics else None)
    return child, result


@torch.no_grad()
def layer_errors(fp32, quant, recipe) -> dict[str, float]:
    out = {}
    for name in recipe:
        a, b = fp32.get_submodule(name), quant.get_submodule(name)
        w = a.weight.detach() if isinstance(a, (torch.nn.Embedding, torch.nn.Conv2d)) else linear_weight(a)
        wq = b.weight if isinstance(b.weight, torch.Tensor) else b.weight()
        out[name] = float((w.reshape(wq.shape) - wq).norm() / w.norm().clamp(min=1e-12))
    return out
