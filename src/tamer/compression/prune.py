"""Pruning: unstructured magnitude, 2:4 (two of every four consecutive weights kept) and structured.

Structured pruning removes whole units, the same number in every block, and writes the smaller shape into the
model config, so the child artifact really is smaller and faster:
- MLP neurons (rows of the up-projection and columns of the down-projection), ranked by ||w_in|| * ||w_out||;
- attention heads (their query / key / value rows and output-projection columns; BERT and GPT-2), ranked by how much
  each head writes into the output projection on calibration data (mean |context| times the projection's column
  norm, the activation-based importance of Minitron, Muralidharan et al. 2024; Michel et al. 2019 showed most heads
  can go);
- convolution channels (the digits CNN: a first-layer channel with the second layer's inputs from it, a second-layer
  channel with the classifier's columns it feeds), ranked by ||w_in|| * ||w_out||.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import UsageError
from .config import CompressConfig

_PRUNABLE = (nn.Linear, nn.Conv2d)


def _prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of linear / conv layers; embeddings (and output layers tied to them) stay dense."""
    tied = {m.weight.data_ptr() for m in model.modules() if isinstance(m, nn.Embedding)}
    out = {}
    for name, m in model.named_modules():
        if (isinstance(m, _PRUNABLE) or type(m).__name__ == "Conv1D") and m.weight.data_ptr() not in tied:
            out[f"{name}.weight"] = m.weight
    return out


@torch.no_grad()
def magnitude_masks(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Per layer, 0 for the `fraction` smallest |w|, 1 elsewhere."""
    masks = {}
    for name, w in _prunable(model).items():
        k = int(round(fraction * w.numel()))
        mask = torch.ones_like(w)
        if k:
            idx = w.abs().reshape(-1).argsort()[:k]
            mask.view(-1)[idx] = 0
        masks[name] = mask
    return masks


@torch.no_grad()
def two_four_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """In every group of four consecutive input weights, keep the two largest |w| (NVIDIA's 2:4 sparsity)."""
    masks = {}
    for name, w in _prunable(model).items():
        rows = w.reshape(w.shape[0], -1) if type(model.get_submodule(name[:-7])).__name__ != "Conv1D" else w.t()
        if rows.shape[1] % 4:
            continue
        groups = rows.abs().reshape(rows.shape[0], -1, 4)
        keep = groups.argsort(-1, descending=True)[..., :2]
        mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0).reshape(rows.shape)
        masks[name] = mask.t().contiguous() if type(model.get_submodule(name[:-7])).__name__ == "Conv1D" else mask.reshape(w.shape)
    return masks


def _mlp_pairs(model: nn.Module, model_config: dict) -> tuple[list[tuple[nn.Module, nn.Module, bool]], list[str]]:
    """(up, down, is_conv1d) for every MLP block, and the model_config path of the width to rewrite."""
    arch = model_config.get("arch")
    if arch == "EncoderClassifier":
        layers = model.encoder.encoder.layer
        return [(b.intermediate.dense, b.output.dense, False) for b in layers], ["encoder", "intermediate_size"]
    if arch == "CausalLM":
        blocks = model.model.transformer.h
        return [(b.mlp.c_fc, b.mlp.c_proj, True) for b in blocks], ["decoder", "n_inner"]
    if arch == "DigitsCNN":
        return [(model.classifier[1], model.classifier[4], False)], ["hidden"]
    raise UsageError(f"structured pruning does not know model {arch!r}; it prunes BERT-style and GPT-2 MLPs and the "
                     "digits CNN's hidden layer. Use --prune-kind unstructured or 2:4.")


@torch.no_grad()
def structured_prune(model: nn.Module, model_config: dict, fraction: float) -> tuple[nn.Module, dict, dict[str, Any]]:
    """Remove `fraction` of the neurons of every MLP; returns the smaller model and its model config."""
    pairs, path = _mlp_pairs(model, model_config)
    width = pairs[0][0].weight.shape[1] if pairs[0][2] else pairs[0][0].weight.shape[0]
    keep_n = max(1, int(round(width * (1 - fraction))))
    for up, down, conv1d in pairs:
        w_in = up.weight.t() if conv1d else up.weight            # [width, in]
        w_out = down.weight if conv1d else down.weight.t()       # [width, out]
        score = w_in.norm(dim=1) * w_out.norm(dim=1)
        keep = score.argsort(descending=True)[:keep_n].sort().values
        if conv1d:
            up.weight = nn.Parameter(up.weight[:, keep].clone()); up.nf = keep_n
            down.weight = nn.Parameter(down.weight[keep].clone())
        else:
            up.weight = nn.Parameter(up.weight[keep].clone()); up.out_features = keep_n
            down.weight = nn.Parameter(down.weight[:, keep].clone()); down.in_features = keep_n
        up.bias = nn.Parameter(up.bias[keep].clone())
    config = copy.deepcopy(model_config)
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = keep_n
    return model, config, {"mlp_width": f"{width} -> {keep_n}", "blocks": len(pairs)}


@torch.no_grad()
def _prune_heads(task, model: nn.Module, model_config: dict, fraction: float, batches: list[dict]) -> tuple[nn.Module, dict, dict]:
    """Remove `fraction` of the attention heads of every block (the same count in each): a BERT encoder or GPT-2."""
    from .student import TRANSFORMERS, layer_blocks, teacher_importance

    arch = model_config.get("arch")
    info = TRANSFORMERS.get(arch or "")
    sub = model_config.get(info["sub"], {}) if info else {}
    if info is None or sub.get("model_type") not in ("bert", "gpt2"):
        raise UsageError(f"--prune-units heads removes attention heads of BERT or GPT-2 models, and this model is "
                         f"{sub.get('model_type') or arch!r}; use --prune-units mlp.")
    config_heads = sub[info["keys"]["heads"]]
    head_dim = sub[info["keys"]["hidden"]] // config_heads
    heads = model_config.get("attention_heads", config_heads)
    keep_n = max(1, int(round(heads * (1 - fraction))))
    score = teacher_importance(model, arch, task, batches)["att"]
    keep = []
    for j in range(len(layer_blocks(model, arch))):
        top = score[j].reshape(heads, head_dim).sum(1).argsort(descending=True)[:keep_n].sort().values
        keep.append((top[:, None] * head_dim + torch.arange(head_dim)).flatten())
    width = heads * head_dim
    sliced = {}
    for name, t in model.state_dict().items():
        if name.startswith(info["blocks"]):
            j, rest = name[len(info["blocks"]):].split(".", 1)
            for d, role in enumerate(info["block_roles"].get(rest, ())):
                if role == "att":
                    t = t.index_select(d, keep[int(j)])
                elif role == "att3":  # q | k | v packed in one tensor (GPT-2's c_attn)
                    t = t.index_select(d, torch.cat([keep[int(j)] + i * width for i in range(3)]))
        sliced[name] = t
    config = copy.deepcopy(model_config)
    config["attention_heads"] = keep_n
    pruned = task.build_model(config)
    pruned.load_state_dict(sliced)
    return pruned, config, {"attention_heads": f"{heads} -> {keep_n}", "blocks": len(keep)}


@torch.no_grad()
def _prune_channels(task, model: nn.Module, model_config: dict, fraction: float) -> tuple[nn.Module, dict, dict]:
    """Remove `fraction` of the channels of both convolutions of the digits CNN (the second has twice the first's)."""
    if model_config.get("arch") != "DigitsCNN":
        raise UsageError(f"--prune-units channels removes convolution channels of the digits CNN, and this model is "
                         f"{model_config.get('arch')!r}; use --prune-units mlp (or heads for a transformer).")
    state = model.state_dict()
    w1, w2, fc = state["features.0.weight"], state["features.3.weight"], state["classifier.1.weight"]
    c = w1.shape[0]
    keep_n = max(1, int(round(c * (1 - fraction))))
    pos = fc.shape[1] // w2.shape[0]  # spatial positions per second-layer channel in the flattened features
    score1 = w1.flatten(1).norm(dim=1) * w2.transpose(0, 1).flatten(1).norm(dim=1)
    score2 = w2.flatten(1).norm(dim=1) * fc.reshape(fc.shape[0], -1, pos).transpose(0, 1).flatten(1).norm(dim=1)
    k1 = score1.argsort(descending=True)[:keep_n].sort().values
    k2 = score2.argsort(descending=True)[:2 * keep_n].sort().values
    cols = (k2[:, None] * pos + torch.arange(pos)).flatten()
    sliced = dict(state)
    sliced["features.0.weight"], sliced["features.0.bias"] = w1[k1], state["features.0.bias"][k1]
    sliced["features.3.weight"], sliced["features.3.bias"] = w2[k2][:, k1], state["features.3.bias"][k2]
    sliced["classifier.1.weight"] = fc[:, cols]
    config = dict(model_config, channels=keep_n)
    pruned = task.build_model(config)
    pruned.load_state_dict(sliced)
    return pruned, config, {"channels": f"{c} -> {keep_n} (first conv), {2 * c} -> {2 * keep_n} (second)"}


def prune_step(parent: Artifact, config: CompressConfig, out: Path, progress: bool):
    from .finetune import finetune
    from .measure import compare_latency, headline, latency_batch, output_agreement, calibration_batches
    from .report import StepResult
    from .child import weights_bytes, compress_seed, write_child

    if parent.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"artifact {str(parent.path)!r} is {parent.manifest['format']}; prune its fp32 parent, then quantize.")
    task, fp32 = parent.load_model()
    splits = task.splits(compress_seed(parent))
    model = copy.deepcopy(fp32)
    model_config = parent.manifest["model_config"]
    masks, info = None, {}
    if config.prune_kind == "structured" and config.prune_units == "heads":
        model, model_config, info = _prune_heads(task, model, model_config, config.prune,
                                                 calibration_batches(task, splits.train, config.calibration_samples, config.seed))
    elif config.prune_kind == "structured" and config.prune_units == "channels":
        model, model_config, info = _prune_channels(task, model, model_config, config.prune)
    elif config.prune_kind == "structured":
        model, model_config, info = structured_prune(model, model_config, config.prune)
    else:
        masks = magnitude_masks(model, config.prune) if config.prune_kind == "unstructured" else two_four_masks(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        zeros = sum(int((m == 0).sum()) for m in masks.values())
        info = {"sparsity": zeros / max(1, sum(m.numel() for m in masks.values()))}
    before_ft = None
    if config.finetune_epochs:
        before_ft = headline(task, task.evaluate(model, splits.test))
        model = finetune(task, model, splits.train, config.finetune_epochs, config.lr, config.seed, masks, progress)
    parent_metrics, metrics = task.evaluate(fp32, splits.test), task.evaluate(model, splits.test)
    lat = {n: compare_latency(task, {"parent": fp32, "child": model}, latency_batch(task, splits.test, n)) for n in (1, 32)}
    child = write_child(out, parent, task, model, model_config, config, "prune", "fp32", metrics,
                   extra={"pruning": {"kind": config.prune_kind, "fraction": config.prune, **info}})
    if before_ft is not None:
        info["metric_before_finetune"] = before_ft
    units = f" {config.prune_units}" if config.prune_kind == "structured" else ""
    detail = f"{config.prune_kind}{units} {config.prune:g}" + (f", fine-tune {config.finetune_epochs} epoch(s)" if config.finetune_epochs else "")
    return child, StepResult(step="prune", artifact=str(child.path), id=child.id, detail=detail,
                             parent_bytes=weights_bytes(parent), child_bytes=weights_bytes(child), metric=task.metric,
                             parent_metric=headline(task, parent_metrics), child_metric=headline(task, metrics),
                             latency_ms={f"batch{n}": v for n, v in lat.items()},
                             agreement=output_agreement(task, fp32, model, calibration_batches(task, splits.test, 64, 0)),
                             extra=info)
