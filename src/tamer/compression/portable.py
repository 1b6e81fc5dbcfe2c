"""Compressed artifacts across machines. tamer's int8 GEMMs (fbgemm, oneDNN) are CPU kernels, so on another device an
int8 layer is dequantized once at load into a plain linear layer (the codes are exact; only the activations stay in
float), and the verb's report says so; int4 and weight-only layers dequantize with plain tensor ops and run anywhere.
The per-layer choice between int8 and fp32 execution was timed on the machine that compressed; a different CPU
(`machine()` differs) gets those layers re-timed at load and the report names the ones now slower than fp32."""
from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

import torch
from torch import nn

from ..device import current, note
from .layers import BACKENDS, REDUCE_RANGE, Int8DynamicLinear, replace_layer
from .timing import SMALL_CALL_SLACK, time_layer


def machine() -> dict[str, Any]:
    """What decides which int8 layers beat fp32 here: the CPU model, its int8 dot-product instructions, the int8
    backends this torch build has, and torch's version."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return {"cpu": name, "int8_dot_product": not REDUCE_RANGE, "int8_backends": list(BACKENDS), "torch": torch.__version__}


def fingerprint(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def dequantize_int8(model: nn.Module) -> list[str]:
    """Replace every int8 GEMM layer by an nn.Linear holding its dequantized weight (smoothing undone); the names."""
    names = [n for n, m in model.named_modules() if isinstance(m, Int8DynamicLinear)]
    for name in names:
        layer = model.get_submodule(name)
        plain = nn.Linear(layer.shape[1], layer.shape[0], bias=layer.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(layer.weight())
            if layer.bias is not None:
                plain.bias.copy_(layer.bias)
        replace_layer(model, name, plain.to(layer.qweight.device))
    return names


def slower_here(model: nn.Module, tokens: int = 32, reps: int = 3) -> tuple[list[str], int]:
    """The int8 layers that time slower than their fp32 twin on this machine (beyond the slack compress allows), and
    how many int8 layers there are; random activations, since only the shapes decide the time."""
    slow, layers = [], [(n, m) for n, m in model.named_modules() if isinstance(m, Int8DynamicLinear)]
    gen = torch.Generator().manual_seed(0)
    for name, layer in layers:
        twin = nn.Linear(layer.shape[1], layer.shape[0], bias=layer.bias is not None)
        with torch.no_grad():
            twin.weight.copy_(layer.weight())
        x = torch.randn(tokens, layer.shape[1], generator=gen)
        fp32_ms, int8_ms = time_layer(twin, layer, x, reps)
        if int8_ms > fp32_ms * SMALL_CALL_SLACK:
            slow.append(name)
    return slow, len(layers)


def make_portable(model: nn.Module, manifest: dict[str, Any], device: torch.device | None = None) -> nn.Module:
    """`model` (a loaded int8 / int4 artifact) made fit for `device` (the running verb's): int8 layers dequantized off
    the CPU; on a CPU unlike the one that compressed, the recorded int8 choices re-timed. Both are noted for the
    report; the weights' codes, and so the artifact, are unchanged."""
    device = device or current().device
    if device.type != "cpu":
        names = dequantize_int8(model)
        if names:
            note(f"{len(names)} int8 layers were dequantized to fp32 at load: tamer's int8 GEMMs (fbgemm, oneDNN) run "
                 f"on CPUs, not on {device.type}; int4 and weight-only layers dequantize on {device.type} as they run")
        return model
    recorded = (manifest.get("run", {}).get("quantization") or {}).get("machine")
    if recorded and fingerprint(recorded) != fingerprint(machine()):
        slow, total = slower_here(model)
        if total:
            note(f"the int8 / fp32 choice of each layer was timed on another machine ({recorded.get('cpu')}, torch "
                 f"{recorded.get('torch')}); re-timed here, {len(slow)} of {total} int8 layers are slower than fp32"
                 + (f" ({', '.join(slow[:5])}{', ...' if len(slow) > 5 else ''}): compress the fp32 parent again on "
                    f"this machine to choose for it" if slow else ""))
    return model
