"""The harden verb: adversarial fine-tuning through the one loop. Images: PGD adversarial training (Madry et al.
2018) as a batch transform that swaps each batch's pixels for PGD adversarials, or TRADES (Zhang et al. 2019) as the
loss, CE(f(x), y) + beta * KL(f(x) || f(x')) with x' maximising the KL. Text: training on the training split plus a
perturbed copy of every sentence (random character edits within the budget). Writes a child naming its parent."""
from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..artifact import Artifact, save_artifact
from ..errors import UsageError, refuse_existing
from ..loop import Loop, ProgressBar, Where, task_loss
from ..progress import progress_bar
from ..tasks.base import ListDataset
from . import images
from .attack import measure
from .config import AttackConfig, HardenConfig
from .data import input_kind, texts_of
from .report import HardenReport
from .text import random_edits


def eval_attack(kind: str, config: HardenConfig) -> AttackConfig:
    """The attack a hardened model is scored with: PGD with `eval_steps` in the training ball, or charflip."""
    if kind == "text":
        return AttackConfig(method="charflip", budget=config.budget, limit=config.limit, seed=config.seed)
    return AttackConfig(method="pgd", epsilon=config.epsilon, norm=config.norm, steps=config.eval_steps,
                        limit=config.limit, seed=config.seed)


def pgd_transform(task, model: nn.Module, config: HardenConfig, gen: torch.Generator):
    """Batch transform: the batch with its pixels replaced by PGD adversarials of the current model (eval mode)."""

    def transform(batch: dict, where: Where) -> dict:
        space = images.ImageSpace.of(task, batch)
        model.eval()
        x_adv = images.pgd(space.logits(task, model, batch), batch[space.key].float(), batch["labels"], config.epsilon,
                           config.norm, config.steps, config.alpha, gen=gen, low=space.low, high=space.high)
        model.train()
        return {**batch, space.key: x_adv}

    return transform


def trades_loss(task, config: HardenConfig, gen: torch.Generator):
    """Loss hook: CE on clean inputs + beta * KL(f(x) || f(x')), x' found by PGD on that KL (TRADES)."""
    kl = nn.KLDivLoss(reduction="none")

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        space = images.ImageSpace.of(task, batch)
        f = space.logits(task, model, batch)
        x, y = batch[space.key].float(), batch["labels"]
        model.eval()
        with torch.no_grad():
            p_clean = f(x).softmax(1)
        x_adv = images.pgd(f, x, y, config.epsilon, config.norm, config.steps, config.alpha, gen=gen, low=space.low,
                           high=space.high, loss=lambda z, _: kl(z.log_softmax(1), p_clean).sum(1))
        model.train()
        logits, logits_adv = f(x), f(x_adv)
        robust = kl(logits_adv.log_softmax(1), logits.softmax(1)).sum(1).mean()
        return nn.functional.cross_entropy(logits, y) + config.beta * robust

    return loss


def perturbed_copies(task, train, budget: int, seed: int) -> ListDataset:
    """The training split and one copy of every sentence with `budget` random character edits."""
    examples = [train[i] for i in range(len(train))]
    rng = random.Random(seed)
    texts = [random_edits(t, "char", budget, rng) for t in texts_of(task, examples)]
    copies = []
    for s in range(0, len(texts), 256):
        enc = task.encode(texts[s:s + 256])
        for row, mask, e in zip(enc["input_ids"], enc["attention_mask"], examples[s:s + 256]):
            copies.append({"input_ids": row[mask.bool()].tolist(), "labels": e["labels"]})
    return ListDataset(examples + copies)


def harden(artifact: Artifact, config: HardenConfig, out: str | Path, progress: bool = True) -> Artifact:
    out = refuse_existing(out)
    if artifact.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"artifact {str(artifact.path)!r} holds {artifact.manifest['format']} weights, which harden "
                         f"cannot train; harden its fp32 parent and compress the result.")
    t0 = time.perf_counter()
    task, model = artifact.load_model()
    if task.kind != "classification":
        raise UsageError(f"artifact task {artifact.task!r} is a {task.kind} task; harden trains classifiers.")
    splits = task.splits(artifact.split_seed)
    kind = input_kind(task, task.collate([splits.train[0]]))
    if kind == "text" and config.method == "trades":
        raise UsageError("--method trades needs images; harden a text model with --method pgd (perturbed copies).")
    test = [splits.test[i] for i in range(len(splits.test) if not config.limit else min(config.limit, len(splits.test)))]
    scored = eval_attack(kind, config)
    before = measure(task, model, test, kind, scored)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    defaults = task.train_defaults()
    train = perturbed_copies(task, splits.train, config.budget, config.seed) if kind == "text" else splits.train
    loader = DataLoader(train, batch_size=defaults["batch_size"], shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(config.seed))
    transforms, loss = (), task_loss(task)
    if kind == "image" and config.method == "pgd":
        transforms = [pgd_transform(task, model, config, gen)]
    elif kind == "image":
        loss = trades_loss(task, config, gen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr or defaults["lr"])
    with progress_bar(progress) as bar:
        job = bar.add_task(f"harden ({config.method})", total=config.epochs * len(loader))
        Loop(model, optimizer, loader, loss, config.epochs, transforms=transforms, callbacks=[ProgressBar(bar, job)]).run()
    model.eval()
    after = measure(task, model, test, kind, scored)
    keep = ("clean_accuracy", "robust_accuracy", "success_rate")
    metrics = {**task.evaluate(model, splits.test), **{k: after[k] for k in keep},
               "robust_attack": f"{scored.method}" + (f"-{scored.steps} {scored.norm} {scored.epsilon:g}" if kind == "image"
                                                       else f" budget {scored.budget}")}
    seconds = time.perf_counter() - t0
    child = save_artifact(out, model.state_dict(), task=task.to_manifest(), model_config=artifact.manifest["model_config"],
                          verb="harden", options={**dataclasses.asdict(config), "split_seed": artifact.split_seed},
                          metrics={"test": metrics}, parents=[artifact.id], extra={"run": {"seconds": seconds}},
                          write_files=task.write_files)
    report = HardenReport(task=artifact.task, artifact=str(out), parent=str(artifact.path), method=config.method,
                          epsilon=config.epsilon, epochs=config.epochs, before={k: before[k] for k in keep},
                          after={k: after[k] for k in keep}, seconds=seconds, options=dataclasses.asdict(config), kind=kind)
    return child.with_report(report)
