"""Distillation: a teacher artifact -> a smaller student (fewer layers and/or narrower), trained on the teacher.

Loss per batch (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network"):

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task loss(student, labels)
    + hidden_weight * sum over student blocks of ||W_j h_j - H_m(j)||^2 / ||H_m(j)||^2   (transformers only)

the last term matches each student block's output h_j, through a learned projection W_j (dropped afterwards),
to the output of the teacher block m(j) it stands for (TinyBERT, Jiao et al. 2020). The student starts from the
teacher where shapes allow, as DistilBERT (Sanh et al. 2019) does: block j copies teacher block m(j) (every k-th
block), a narrower MLP keeps the teacher's neurons with the largest ||w_in|| * ||w_out||, and a narrower model
gets the teacher's embedding tables projected on the top principal directions of its word embeddings.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ..artifact import Artifact
from ..errors import UsageError
from ..progress import progress_bar
from ..tasks.base import Task
from .config import CompressConfig

# arch -> (sub-config holding the transformer sizes, spec key -> config key, block prefix in the state dict,
#          (MLP up-projection weight, its neuron dim), (down-projection weight, its neuron dim))
TRANSFORMERS: dict[str, dict[str, Any]] = {
    "EncoderClassifier": {
        "sub": "encoder",
        "keys": {"layers": "num_hidden_layers", "hidden": "hidden_size", "intermediate": "intermediate_size",
                 "heads": "num_attention_heads"},
        "blocks": "encoder.encoder.layer.", "up": ("intermediate.dense.weight", 0), "down": ("output.dense.weight", 1)},
    "CausalLM": {
        "sub": "decoder",
        "keys": {"layers": "n_layer", "hidden": "n_embd", "intermediate": "n_inner", "heads": "n_head"},
        "blocks": "model.transformer.h.", "up": ("mlp.c_fc.weight", 1), "down": ("mlp.c_proj.weight", 0)},
}
_NOT_SIZES = ("num_classes", "num_labels")


def student_config(model_config: dict[str, Any], sizes: dict[str, int], spec: str) -> dict[str, Any]:
    """The teacher's model config with the sizes the spec names replaced (heads and MLP width follow a new width)."""
    arch = model_config.get("arch")
    config = copy.deepcopy(model_config)
    if arch in TRANSFORMERS:
        info = TRANSFORMERS[arch]
        keys, inner = info["keys"], config[info["sub"]]
        unknown = sorted(set(sizes) - set(keys))
        if unknown:
            raise UsageError(f"--distill-into {spec!r}: key {unknown[0]!r} does not size the {arch} model; "
                             f"accepted keys: {', '.join(keys)}.")
        old_hidden, old_heads = inner[keys["hidden"]], inner[keys["heads"]]
        for key, value in sizes.items():
            inner[keys[key]] = value
        if "hidden" in sizes:
            if "heads" not in sizes:  # keep the teacher's head width
                inner[keys["heads"]] = max(1, sizes["hidden"] // max(1, old_hidden // old_heads))
            if "intermediate" not in sizes and inner.get(keys["intermediate"]) is not None:
                inner[keys["intermediate"]] = max(1, round(inner[keys["intermediate"]] * sizes["hidden"] / old_hidden))
        hidden, heads = inner[keys["hidden"]], inner[keys["heads"]]
        if hidden % heads:
            raise UsageError(f"--distill-into {spec!r}: hidden={hidden} is not a multiple of heads={heads}; "
                             "give a hidden size that the head count divides (or name heads=).")
        return config
    known = sorted(k for k, v in model_config.items()
                   if isinstance(v, int) and not isinstance(v, bool) and k not in _NOT_SIZES)
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise UsageError(f"--distill-into {spec!r}: key {unknown[0]!r} does not size the {arch} model; "
                         f"accepted keys: {', '.join(known) or 'none (this model has no integer sizes)'}.")
    config.update(sizes)
    return config


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher block that student block j stands for: every k-th, ending on the last (6 -> 2 gives [2, 5])."""
    if student_layers <= teacher_layers:
        return [(j + 1) * teacher_layers // student_layers - 1 for j in range(student_layers)]
    return [j * teacher_layers // student_layers for j in range(student_layers)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied tables are counted once


def _blocks(model: nn.Module, arch: str) -> nn.ModuleList | None:
    if arch == "EncoderClassifier":
        return model.encoder.encoder.layer
    if arch == "CausalLM":
        return model.model.transformer.h
    return None


@torch.no_grad()
def _principal_directions(table: torch.Tensor, k: int) -> torch.Tensor:
    """[d, k]: the top-k principal directions of the rows of `table` (PCA by SVD of the centred table)."""
    _, _, vh = torch.linalg.svd(table.float() - table.float().mean(0), full_matrices=False)
    return vh[:k].t().contiguous()


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module, arch: str | None, mapping: list[int]) -> dict[str, int]:
    """Copy what fits from the teacher into the student in place; returns how many tensors were copied, how."""
    info = TRANSFORMERS.get(arch or "")
    t_state, s_state = teacher.state_dict(), student.state_dict()
    tables = {f"{n}.weight" for n, m in student.named_modules() if isinstance(m, nn.Embedding)}
    first_table = next(iter(sorted(tables, key=lambda n: -s_state[n].shape[0])), None)
    projection, keep = None, {}
    counts = {"copied": 0, "projected": 0, "sliced": 0, "fresh": 0}
    for name, p in s_state.items():
        tname, j = name, None
        if info and name.startswith(info["blocks"]):
            index, rest = name[len(info["blocks"]):].split(".", 1)
            j = int(index)
            tname = f"{info['blocks']}{mapping[j]}.{rest}"
        t = t_state.get(tname)
        if t is None or t.dim() != p.dim():
            counts["fresh"] += 1
            continue
        if not p.is_floating_point():  # integer buffers (position ids)
            if t.shape == p.shape:
                p.copy_(t)
            continue
        diff = [d for d in range(p.dim()) if p.shape[d] != t.shape[d]]
        if not diff:
            p.copy_(t)
            counts["copied"] += 1
        elif name in tables and diff == [1] and first_table is not None:
            if projection is None:
                projection = _principal_directions(t_state[first_table], p.shape[1])
            p.copy_(t.float() @ projection)
            counts["projected"] += 1
        elif info and j is not None and len(diff) == 1 and p.shape[diff[0]] < t.shape[diff[0]]:
            if j not in keep:
                keep[j] = _kept_neurons(t_state, f"{info['blocks']}{mapping[j]}.", info)
            if keep[j] is None or t.shape[diff[0]] != keep[j][1]:  # not the MLP width that differs
                counts["fresh"] += 1
                continue
            p.copy_(t.index_select(diff[0], keep[j][0][: p.shape[diff[0]]].sort().values))
            counts["sliced"] += 1
        else:
            counts["fresh"] += 1
    return counts


def _kept_neurons(state: dict[str, torch.Tensor], prefix: str, info: dict) -> tuple[torch.Tensor, int] | None:
    """Teacher MLP neurons of one block ranked by ||w_in|| * ||w_out|| (the order structured pruning uses)."""
    (up, up_dim), (down, down_dim) = info["up"], info["down"]
    w_in, w_out = state.get(prefix + up), state.get(prefix + down)
    if w_in is None or w_out is None:
        return None
    w_in, w_out = w_in.movedim(up_dim, 0).flatten(1), w_out.movedim(down_dim, 0).flatten(1)
    score = w_in.norm(dim=1) * w_out.norm(dim=1)
    return score.argsort(descending=True), w_in.shape[0]


class _BlockOutputs:
    """Collects each block's output hidden states during a forward pass (forward hooks, removed by `close`)."""

    def __init__(self, blocks: nn.ModuleList | None):
        self.outputs: list[torch.Tensor] = []
        self.recording = False  # off during validation passes
        self.handles = [b.register_forward_hook(self._hook) for b in (blocks or [])]

    def _hook(self, module, args, output) -> None:
        if self.recording:
            self.outputs.append(output[0] if isinstance(output, (tuple, list)) else output)

    def start(self) -> None:
        self.outputs, self.recording = [], True

    def take(self) -> list[torch.Tensor]:
        out, self.outputs, self.recording = self.outputs, [], False
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def soft_loss(task: Task, student_out: torch.Tensor, teacher_out: torch.Tensor, batch: dict, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) of temperature-softened outputs (MSE to the teacher for regression)."""
    if task.kind == "regression":
        return F.mse_loss(student_out, teacher_out)
    if task.kind == "language-model":  # the positions that predict a next token
        mask = batch["labels"][:, 1:] != -100
        student_out, teacher_out = student_out[:, :-1][mask], teacher_out[:, :-1][mask]
    s = F.log_softmax(student_out.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_out.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


def augmented_view(batch: dict[str, torch.Tensor], generator: torch.Generator, replace: float = 0.2) -> dict | None:
    """A view of the batch that only the teacher can label: each float input mixed with another example's
    (mixup, weight ~ U(0, 1)); or, for token ids, `replace` of the real tokens swapped for tokens drawn from the
    batch. The teacher and the student see the same view ("consistent teaching", Beyer et al. 2022)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    floats = [k for k, v in inputs.items() if v.is_floating_point()]
    n = next(iter(inputs.values())).shape[0]
    if floats:
        other = torch.randperm(n, generator=generator)
        out = dict(batch)
        for k in floats:
            lam = torch.rand((n,) + (1,) * (inputs[k].dim() - 1), generator=generator)
            out[k] = lam * inputs[k] + (1 - lam) * inputs[k][other]
        return out
    ids = inputs.get("input_ids")
    if ids is None:
        return None
    real = inputs["attention_mask"].bool() if "attention_mask" in inputs else torch.ones_like(ids, dtype=torch.bool)
    pool = ids[real]
    swap = real & (torch.rand(ids.shape, generator=generator) < replace)
    new = ids.clone()
    new[swap] = pool[torch.randint(len(pool), (int(swap.sum()),), generator=generator)]
    return {**batch, "input_ids": new}


def hidden_loss(student_h: list[torch.Tensor], teacher_h: list[torch.Tensor], projections: nn.ModuleList,
                mapping: list[int], attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over student blocks of ||W_j h_j - H_m(j)||^2 / ||H_m(j)||^2 over real (unpadded) tokens."""
    total = 0.0
    for j, (h, proj) in enumerate(zip(student_h, projections)):
        target = teacher_h[mapping[j]]
        mask = (attention_mask if attention_mask is not None else torch.ones(target.shape[:2])).unsqueeze(-1).to(target.dtype)
        err = ((proj(h) - target) ** 2 * mask).sum()
        total = total + err / (target ** 2 * mask).sum().clamp(min=1e-12)
    return total / max(1, len(projections))


def train_student(task: Task, student: nn.Module, teacher: nn.Module | None, arch: str | None, mapping: list[int],
                  train, val, config: CompressConfig, lr: float, progress: bool = False) -> tuple[nn.Module, list[dict]]:
    """AdamW with a cosine schedule for `config.distill_epochs`; keeps the epoch with the best validation metric.

    With `teacher=None` the student trains alone on the task loss, with the same init, data order and dropout
    seeds: the baseline that distillation has to beat."""
    defaults = task.train_defaults()
    s_blocks, t_blocks = _blocks(student, arch or ""), _blocks(teacher, arch or "") if teacher is not None else None
    match = teacher is not None and config.hidden_weight > 0 and s_blocks is not None and t_blocks is not None
    torch.manual_seed(config.seed)
    projections = nn.ModuleList()
    if match:
        s_width, t_width = _width(student, arch), _width(teacher, arch)
        for _ in mapping:
            proj = nn.Linear(s_width, t_width, bias=False)
            if s_width == t_width:
                nn.init.eye_(proj.weight)
            projections.append(proj)
    loader = DataLoader(train, batch_size=defaults["batch_size"], shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(config.seed))
    params = list(student.parameters()) + list(projections.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    total = config.distill_epochs * len(loader)
    warm = max(1, int(0.06 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))
    views = torch.Generator().manual_seed(config.seed + 1)
    s_hooks = _BlockOutputs(s_blocks if match else None)
    t_hooks = _BlockOutputs(t_blocks if match else None)
    sign = 1.0 if task.higher_is_better else -1.0
    best_value, best_state, history = None, None, []
    if teacher is not None:
        teacher.eval()
    try:
        with progress_bar(progress) as bar:
            job = bar.add_task("distill" if teacher is not None else "train student", total=total)
            for epoch in range(1, config.distill_epochs + 1):
                student.train()
                sums = {"loss": 0.0, "soft": 0.0, "hard": 0.0, "hidden": 0.0}
                for step, batch in enumerate(loader):
                    torch.manual_seed(config.seed * 1_000_003 + epoch * 10_007 + step)  # dropout, same with or without teacher
                    if match:
                        s_hooks.start()
                        t_hooks.start()
                    out = task.forward(student, batch)
                    hard = task.loss(out, batch)
                    loss = hard if teacher is None else (1 - config.alpha) * hard
                    if teacher is not None:
                        with torch.no_grad():
                            t_out = task.forward(teacher, batch)
                        soft = soft_loss(task, out, t_out, batch, config.temperature)
                        loss = loss + config.alpha * soft
                        sums["soft"] += soft.item()
                        if match:
                            hid = hidden_loss(s_hooks.take(), t_hooks.take(), projections, mapping, batch.get("attention_mask"))
                            loss = loss + config.hidden_weight * hid
                            sums["hidden"] += hid.item()
                        view = augmented_view(batch, views) if config.distill_augment else None
                        if view is not None:
                            with torch.no_grad():
                                t_view = task.forward(teacher, view)
                            loss = loss + config.alpha * soft_loss(task, task.forward(student, view), t_view, view,
                                                                   config.temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    schedule.step()
                    sums["loss"] += loss.item()
                    sums["hard"] += hard.item()
                    bar.update(job, advance=1)
                value = task.evaluate(student, val)[task.metric]
                history.append({"epoch": epoch, **{k: v / max(1, len(loader)) for k, v in sums.items()},
                                f"val_{task.metric}": value})
                if best_value is None or sign * value > sign * best_value:
                    best_value, best_state = value, copy.deepcopy(student.state_dict())
    finally:
        s_hooks.close()
        t_hooks.close()
    student.load_state_dict(best_state)
    return student.eval(), history


def _width(model: nn.Module, arch: str) -> int:
    config = model.encoder.config if arch == "EncoderClassifier" else model.model.config
    return config.hidden_size


def build_student(task: Task, teacher: nn.Module, teacher_config: dict, spec: str, seed: int,
                  from_teacher: bool = True) -> tuple[nn.Module, dict, list[int], dict[str, int]]:
    """(student, its model config, teacher block of each student block, how its tensors were initialised)."""
    from .config import parse_student_spec

    try:
        sizes = parse_student_spec(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = student_config(teacher_config, sizes, spec)
    torch.manual_seed(seed)
    try:
        student = task.build_model(config)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--distill-into {spec!r} does not give a model that can be built ({exc}).") from None
    arch = teacher_config.get("arch")
    mapping = []
    if arch in TRANSFORMERS:
        layers = TRANSFORMERS[arch]["keys"]["layers"]
        sub = TRANSFORMERS[arch]["sub"]
        mapping = layer_map(teacher_config[sub][layers], config[sub][layers])
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    if s_params >= t_params:
        raise UsageError(f"--distill-into {spec!r} gives a student of {s_params:,} parameters, not fewer than the "
                         f"teacher's {t_params:,}; give fewer layers or smaller sizes.")
    init = init_from_teacher(student, teacher, arch, mapping) if from_teacher else {}
    return student, config, mapping, init


def distill_step(parent: Artifact, config: CompressConfig, out: Path, progress: bool):
    """Teacher artifact -> distilled student artifact (fp32) and its StepResult."""
    from .measure import calibration_batches, compare_latency, headline, latency_batch, output_agreement
    from .report import StepResult
    from .verb import _file_bytes, _seed, _write

    if parent.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"artifact {str(parent.path)!r} is {parent.manifest['format']}; distill from its fp32 parent, then quantize.")
    task, teacher = parent.load_model()
    teacher_config = parent.manifest["model_config"]
    student, s_config, mapping, init = build_student(task, teacher, teacher_config, config.distill_into, config.seed)
    splits = task.prepare(_seed(parent))
    arch = teacher_config.get("arch")
    lr = config.lr or default_lr(task, init)
    student, history = train_student(task, student, teacher, arch, mapping, splits.train, splits.val, config, lr, progress)
    parent_metrics, metrics = task.evaluate(teacher, splits.test), task.evaluate(student, splits.test)
    lat = {n: compare_latency(task, {"parent": teacher, "child": student}, latency_batch(task, splits.test, n)) for n in (1, 32)}
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    info = {"teacher_params": t_params, "student_params": s_params, "param_ratio": s_params / t_params,
            "layer_map": mapping, "init": init, "lr": lr, "temperature": config.temperature, "alpha": config.alpha,
            "hidden_weight": config.hidden_weight if mapping else 0.0, "learning_curve": history}
    child = _write(out, parent, task, student, s_config, config, "distill", "fp32", metrics, extra={"distillation": info})
    p_metric, c_metric = headline(task, parent_metrics), headline(task, metrics)
    extra = {"teacher_params": t_params, "student_params": s_params, "param_ratio": s_params / t_params}
    if p_metric and c_metric is not None and task.higher_is_better:
        extra["metric_kept"] = c_metric / p_metric
    detail = f"into {config.distill_into}, {config.distill_epochs} epoch(s), T={config.temperature:g}, alpha={config.alpha:g}"
    return child, StepResult(step="distill", artifact=str(child.path), id=child.id, detail=detail,
                             parent_bytes=_file_bytes(parent), child_bytes=_file_bytes(child), metric=task.metric,
                             parent_metric=p_metric, child_metric=c_metric,
                             latency_ms={f"batch{n}": v for n, v in lat.items()},
                             agreement=output_agreement(task, teacher, student, calibration_batches(task, splits.test, 64, 0)),
                             extra=extra)


def default_lr(task: Task, init: dict[str, int]) -> float:
    """The task's fine-tuning rate when the student is mostly the teacher's weights; at least 5e-4 when much of it
    starts fresh (a narrower student), since a fine-tuning rate such as BERT's 5e-5 barely moves random weights."""
    lr = task.train_defaults()["lr"]
    reused = init.get("copied", 0) + init.get("sliced", 0)
    return lr if reused >= init.get("fresh", 0) + init.get("projected", 0) else max(lr, 5e-4)
