"""Activation checkpointing of transformer blocks (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
Cost"): each block keeps only its inputs in the forward pass and recomputes its activations in the backward pass."""
from __future__ import annotations

import functools

from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import UsageError


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: the items of its ModuleLists (Hugging Face encoders' `layer`, causal LMs'
    `h` / `layers`), outermost lists only, so a block is never checkpointed inside another."""
    found: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            found += list(module)
            inside.update(id(m) for block in module for m in block.modules())
    return found


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap each transformer block's forward in torch.utils.checkpoint (non-reentrant, RNG state kept, so dropout
    draws the same mask when recomputed and the gradients equal those without). Call before FSDP wraps the blocks;
    the weights, their names and the state dict stay as they were. Returns the number of blocks."""
    blocks = transformer_blocks(model)
    if not blocks:
        raise UsageError(f"--activation-checkpointing found no transformer blocks (a ModuleList of layers) in "
                         f"{type(model).__name__}; it applies to Hugging Face encoders and causal LMs, drop it here.")
    for block in blocks:
        if getattr(block, "_tamer_checkpointed", False):
            continue
        inner = block.forward
        block.forward = functools.partial(checkpoint, inner, use_reentrant=False)
        block._tamer_checkpointed = True
    return len(blocks)
