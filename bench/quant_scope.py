"""What a quantized variant of bench/compress.py covers, read from the model, artifact or graph itself: the scope
column that keeps tamer and its peers comparing like with like."""
from __future__ import annotations

from pathlib import Path

import torch


def scope(linear: int, embeddings: int) -> str:
    """What a variant quantized: counts of linear layers (MatMuls) and embedding tables."""
    parts = [f"linear x{linear}"] + ([f"embeddings x{embeddings}"] if embeddings else [])
    return " + ".join(parts) if linear or embeddings else "nothing quantized"


def tamer_scope(artifact) -> str:
    kinds = [r["type"] for r in artifact.manifest["quantization"]["layers"].values()]
    return scope(kinds.count("linear"), kinds.count("embedding"))


def module_scope(model: torch.nn.Module) -> str:
    """torch.ao modules swapped in, or torchao's quantized tensor subclasses as weights, by layer kind."""
    from torch.ao.nn.quantized import Embedding as AoEmbedding
    from torch.ao.nn.quantized.dynamic import Linear as AoLinear

    def quantized(m):
        w = getattr(m, "weight", None)
        return isinstance(w, torch.Tensor) and type(w) not in (torch.Tensor, torch.nn.Parameter)

    mods = list(model.modules())
    linear = sum(isinstance(m, AoLinear) or (isinstance(m, torch.nn.Linear) and quantized(m)) for m in mods)
    emb = sum(isinstance(m, AoEmbedding) or (isinstance(m, torch.nn.Embedding) and quantized(m)) for m in mods)
    return scope(linear, emb)


def onnx_scope(path: Path) -> str:
    """Integer MatMuls, and Gathers reading an int8 / uint8 table, in a quantized ONNX graph."""
    import onnx

    graph = onnx.load(str(path)).graph
    int8 = {i.name for i in graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    linear = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger") for n in graph.node)
    emb = sum(n.op_type == "Gather" and n.input[0] in int8 for n in graph.node)
    return scope(linear, emb)
