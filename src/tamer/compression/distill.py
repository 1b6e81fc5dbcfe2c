"""Distillation: a teacher artifact -> a smaller student (fewer layers and/or narrower), trained on the teacher.

Loss per batch (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network"):

    distill_alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - distill_alpha) * task loss(student, labels)
    + hidden_weight * sum over student blocks of ||W_j h_j - H_m(j)||^2 / ||H_m(j)||^2   (transformers only)

the last term matches each student block's output h_j, through a learned projection W_j (dropped afterwards),
to the output of the teacher block m(j) it stands for (TinyBERT, Jiao et al. 2020), with W_j starting at the
least-squares fit. Augmented views (tokens swapped within the batch, or mixup for float inputs) are matched the
same way, outputs and hidden states: only the teacher can label them, which is what stretches a small training set.
How the student is built and started from the teacher: student.py.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ..artifact import Artifact
from ..errors import UsageError
from ..loop import Callback, Loop, ProgressBar, Where
from ..progress import progress_bar
from ..tasks.base import ListDataset, Task
from .config import CompressConfig
from .student import layer_blocks, block_sizes, build_student, count_parameters

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


class BestEpoch(Callback):
    """Validates at every epoch end, records the loss terms' means, and keeps the weights of the best epoch."""

    def __init__(self, task: Task, val, sums: dict[str, float], steps: int):
        self.task, self.val, self.sums, self.steps = task, val, sums, steps
        self.sign = 1.0 if task.higher_is_better else -1.0
        self.value, self.state, self.history = None, None, []

    def on_epoch_end(self, loop: Loop) -> None:
        value = self.task.evaluate(loop.model, self.val)[self.task.metric]
        self.history.append({"epoch": loop.state.epoch, **{k: v / max(1, self.steps) for k, v in self.sums.items()},
                             f"val_{self.task.metric}": value})
        self.sums.update(dict.fromkeys(self.sums, 0.0))
        if self.value is None or self.sign * value > self.sign * self.value:
            self.value, self.state = value, copy.deepcopy(loop.model.state_dict())


def train_student(task: Task, student: nn.Module, teacher: nn.Module | None, arch: str | None, mapping: list[int],
                  train, val, config: CompressConfig, lr: float, progress: bool = False) -> tuple[nn.Module, list[dict]]:
    """AdamW with a cosine schedule for `config.distill_epochs`; keeps the epoch with the best validation metric.

    With `teacher=None` the student trains alone on the task loss, with the same init, data order and dropout
    seeds: the baseline that distillation has to beat."""
    defaults = task.train_defaults()
    s_blocks, t_blocks = layer_blocks(student, arch or ""), layer_blocks(teacher, arch or "") if teacher is not None else None
    match = teacher is not None and config.hidden_weight > 0 and s_blocks is not None and t_blocks is not None
    torch.manual_seed(config.seed)
    projections = nn.ModuleList()
    if match:
        s_width, t_width = block_sizes(student, arch)[0], block_sizes(teacher, arch)[0]
        projections.extend(nn.Linear(s_width, t_width, bias=False) for _ in mapping)
    loader = DataLoader(train, batch_size=defaults["batch_size"], shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(config.seed))
    s_hooks = _BlockOutputs(s_blocks if match else None)
    t_hooks = _BlockOutputs(t_blocks if match else None)
    if match:  # each projection starts at the least-squares map from the student's states to the teacher's
        _fit_projections(task, student, teacher, projections, mapping,
                          task.collate([train[i] for i in range(min(len(train), 64))]), s_hooks, t_hooks)
    params = list(student.parameters()) + list(projections.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    total = config.distill_epochs * len(loader)
    warm = max(1, int(0.06 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))
    views = torch.Generator().manual_seed(config.seed + 1)
    sums = dict.fromkeys(("loss", "soft", "hard", "hidden"), 0.0)

    def distill_loss(student: nn.Module, batch: dict) -> torch.Tensor:
        """(1 - alpha) hard + alpha soft + hidden_weight hidden, on the batch and on its augmented view."""
        if match:
            s_hooks.start()
            t_hooks.start()
        out = task.forward(student, batch)
        hard = task.loss(out, batch)
        loss = hard if teacher is None else (1 - config.distill_alpha) * hard
        if teacher is not None:
            with torch.no_grad():
                t_out = task.forward(teacher, batch)
            soft = soft_loss(task, out, t_out, batch, config.temperature)
            loss = loss + config.distill_alpha * soft
            sums["soft"] += soft.item()
            if match:
                hid = hidden_loss(s_hooks.take(), t_hooks.take(), projections, mapping, batch.get("attention_mask"))
                loss = loss + config.hidden_weight * hid
                sums["hidden"] += hid.item()
            view = augmented_view(batch, views) if config.distill_augment else None
            if view is not None:  # the view is matched as the batch is: outputs and hidden states
                if match:
                    s_hooks.start()
                    t_hooks.start()
                with torch.no_grad():
                    t_view = task.forward(teacher, view)
                loss = loss + config.distill_alpha * soft_loss(task, task.forward(student, view), t_view, view,
                                                       config.temperature)
                if match:
                    loss = loss + config.hidden_weight * hidden_loss(
                        s_hooks.take(), t_hooks.take(), projections, mapping, view.get("attention_mask"))
        sums["loss"] += loss.item()
        sums["hard"] += hard.item()
        return loss

    def seed_dropout(batch: dict, where: Where) -> dict:  # the same with or without a teacher
        torch.manual_seed(config.seed * 1_000_003 + where.epoch * 10_007 + where.step)
        return batch

    best = BestEpoch(task, val, sums, len(loader))
    if teacher is not None:
        teacher.eval()
    try:
        with progress_bar(progress) as bar:
            job = bar.add_task("distill" if teacher is not None else "train student", total=total)
            Loop(student, opt, loader, distill_loss, config.distill_epochs, scheduler=schedule,
                 transforms=[seed_dropout], after_backward=[lambda: nn.utils.clip_grad_norm_(params, 1.0)],
                 callbacks=[ProgressBar(bar, job), best]).run()
    finally:
        s_hooks.close()
        t_hooks.close()
    best_state, history = best.state, best.history
    student.load_state_dict(best_state)
    return student.eval(), history


@torch.no_grad()
def _fit_projections(task: Task, student: nn.Module, teacher: nn.Module, projections: nn.ModuleList, mapping: list[int],
                     batch: dict, s_hooks: "_BlockOutputs", t_hooks: "_BlockOutputs", ridge: float = 1e-3) -> None:
    """W_j = argmin ||h_j W_j^T - H_m(j)||^2 + ridge * ||h_j||^2/width * ||W_j||^2 over the real tokens of one batch."""
    student.eval()
    s_hooks.start()
    task.forward(student, batch)
    t_hooks.start()
    task.forward(teacher, batch)
    s_h, t_h = s_hooks.take(), t_hooks.take()
    real = batch.get("attention_mask", torch.ones(s_h[0].shape[:2])).reshape(-1).bool()
    for j, proj in enumerate(projections):
        x = s_h[j].reshape(-1, s_h[j].shape[-1])[real].double()
        y = t_h[mapping[j]].reshape(-1, t_h[mapping[j]].shape[-1])[real].double()
        gram = x.T @ x
        gram += torch.eye(len(gram), dtype=gram.dtype) * ridge * gram.diagonal().mean()
        proj.weight.copy_(torch.linalg.solve(gram, x.T @ y).T.float())


def distill_step(parent: Artifact, config: CompressConfig, out: Path, progress: bool):
    """Teacher artifact -> distilled student artifact (fp32) and its StepResult."""
    from .measure import calibration_batches, compare_latency, headline, latency_batch, output_agreement
    from .report import StepResult
    from .child import weights_bytes, compress_seed, write_child

    if parent.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"artifact {str(parent.path)!r} is {parent.manifest['format']}; distill from its fp32 parent, then quantize.")
    task, teacher = parent.load_model()
    teacher_config = parent.manifest["model_config"]
    splits = task.splits(compress_seed(parent))
    student, s_config, mapping, init = build_student(task, teacher, teacher_config, config.distill_into, config.seed,
                                                     batches=calibration_batches(task, splits.train, 256, config.seed),
                                                     train=splits.train)
    arch = teacher_config.get("arch")
    lr = config.lr or default_lr(task, init)
    student, history = train_student(task, student, teacher, arch, mapping, splits.train, splits.val, config, lr, progress)
    parent_metrics, metrics = task.evaluate(teacher, splits.test), task.evaluate(student, splits.test)
    lat = {n: compare_latency(task, {"parent": teacher, "child": student}, latency_batch(task, splits.test, n)) for n in (1, 32)}
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    info = {"teacher_params": t_params, "student_params": s_params, "param_ratio": s_params / t_params,
            "layer_map": mapping, "init": init, "lr": lr, "temperature": config.temperature, "distill_alpha": config.distill_alpha,
            "hidden_weight": config.hidden_weight if mapping else 0.0, "learning_curve": history}
    if s_config.get("token_map_size"):
        unk = task.tokenizer.unk_token_id
        reading = trimmed_inputs(splits.test, student.token_map, unk)
        info["vocabulary"] = {**vocabulary_coverage(splits.test, reading, unk, s_config["encoder"]["vocab_size"],
                                                    s_config["token_map_size"]),
                              "teacher_metric_trimmed": headline(task, task.evaluate(teacher, reading))}
    child = write_child(out, parent, task, student, s_config, config, "distill", "fp32", metrics, extra={"distillation": info})
    p_metric, c_metric = headline(task, parent_metrics), headline(task, metrics)
    extra = {"teacher_params": t_params, "student_params": s_params, "param_ratio": s_params / t_params}
    if p_metric and c_metric is not None and task.higher_is_better:
        extra["metric_kept"] = c_metric / p_metric
    detail = f"into {config.distill_into}, {config.distill_epochs} epoch(s), T={config.temperature:g}, alpha={config.distill_alpha:g}"
    if "vocabulary" in info:
        v = info["vocabulary"]
        extra["test_tokens_unknown"] = v["test_tokens_unknown"]
        detail += (f"; kept {v['kept']:,} of {v['of']:,} tokens, {v['test_tokens_unknown']:.1%} of test tokens "
                   f"fall outside (were {v['test_tokens_unknown_before']:.1%}); the teacher reading the same [UNK]s "
                   f"scores {v['teacher_metric_trimmed']:.4g}")
    return child, StepResult(step="distill", artifact=str(child.path), id=child.id, detail=detail,
                             parent_bytes=weights_bytes(parent), child_bytes=weights_bytes(child), metric=task.metric,
                             parent_metric=p_metric, child_metric=c_metric,
                             latency_ms={f"batch{n}": v for n, v in lat.items()},
                             agreement=output_agreement(task, teacher, student, calibration_batches(task, splits.test, 64, 0)),
                             extra=extra)


def vocabulary_coverage(test, reading, unk: int, kept: int, full: int) -> dict:
    """How much of the test data a trimmed vocabulary of `kept` of `full` tokens covers: the share of test tokens
    that are [UNK] as it reads them (`reading`, from `trimmed_inputs`) and as the tokenizer itself made them."""
    tokens = sum(len(e["input_ids"]) for e in reading)
    unknown = sum(list(e["input_ids"]).count(unk) for e in reading)
    before = sum(list(test[i]["input_ids"]).count(unk) for i in range(len(test)))
    return {"kept": kept, "of": full, "test_tokens": tokens, "test_tokens_unknown": unknown / max(1, tokens),
            "test_tokens_unknown_before": before / max(1, tokens)}


def trimmed_inputs(dataset, token_map: torch.Tensor, unk: int) -> ListDataset:
    """The dataset as a trimmed vocabulary reads it: every token that was not kept replaced by [UNK] (what the
    teacher scores on this tells the vocabulary's loss apart from the smaller network's)."""
    unk_row = int(token_map[unk])
    out = []
    for i in range(len(dataset)):
        example = dict(dataset[i])
        ids = torch.as_tensor(example["input_ids"], dtype=torch.long)
        example["input_ids"] = torch.where((token_map[ids] == unk_row) & (ids != unk), unk, ids).tolist()
        out.append(example)
    return ListDataset(out)


def default_lr(task: Task, init: dict[str, int]) -> float:
    """The task's fine-tuning rate when the student keeps the teacher's width; at least 2e-4 when it is the teacher
    width-pruned (narrowed tensors outnumber whole copies), at least 5e-4 when most of it starts fresh, since a
    fine-tuning rate such as BERT's 5e-5 barely moves weights that no longer fit together."""
    lr = task.train_defaults()["lr"]
    copied, sliced, fresh = init.get("copied", 0), init.get("sliced", 0), init.get("fresh", 0)
    if fresh > copied + sliced:
        return max(lr, 5e-4)
    return max(lr, 2e-4) if sliced > copied else lr
