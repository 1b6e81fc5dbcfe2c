"""Rebuilding a quantized model from its artifact, and `compiled()`: the model under torch.compile with the int8
layers lowered to oneDNN's GEMM."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn

from .layers import BACKENDS, Int8DynamicLinear, QuantEmbedding, WeightOnlyConv2d, WeightOnlyLinear, replace_layer
from .smoothing import gemm_codes


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
    from .portable import make_portable

    for name, spec in manifest["quantization"]["layers"].items():
        replace_layer(model, name, empty_layer(spec))
    model.load_state_dict(state_dict, strict=True)
    return make_portable(model, manifest).eval()  # int8 dequantized off the CPU; choices re-timed on another CPU


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
                replace_layer(owner, name, new)
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

