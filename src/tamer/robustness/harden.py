"""The harden verb: adversarial fine-tuning through the one loop. Images: PGD adversarial training (Madry et al.
2018) as a batch transform that swaps each batch's pixels for PGD adversarials, or TRADES (Zhang et al. 2019) as the
loss, CE(f(x), y) + beta * KL(f(x) || f(x')) with x' maximising the KL. Text: training on the training split plus a
perturbed copy of every sentence (random character edits within the budget). Writes a child naming its parent."""
from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..artifact import Artifact, save_artifact
from ..device import current, grad_scaler, model_device
from ..errors import UsageError, refuse_existing
from ..loop import Callback, Loop, ProgressBar, Where, task_loss
from ..progress import progress_bar
from ..tasks.base import ListDataset
from . import images
from .attack import measure
from .config import AttackConfig, HardenConfig
from .data import input_kind, texts_of
from .report import HardenReport
from .text import random_edits


IMAGE_EPOCHS = 40  # with the epsilon warm-up and best-epoch selection: 0.6+ PGD-20 on digits at epsilon 0.2 (README)


def eval_attack(kind: str, config: HardenConfig) -> AttackConfig:
    """The attack a hardened model is scored with: PGD with `eval_steps` in the training ball, or charflip."""
    if kind == "text":
        return AttackConfig(method="charflip", budget=config.budget, limit=config.limit, seed=config.seed)
    return AttackConfig(method="pgd", epsilon=config.epsilon, norm=config.norm, steps=config.eval_steps,
                        limit=config.limit, seed=config.seed)


class EpsilonRamp:
    """The training epsilon at each step: linear from 0 to `config.epsilon` over the first `epsilon_warmup` epochs
    (a full ball from the first step can stall training at chance; Gowal et al. 2018, Wong et al. 2020 ramp it)."""

    def __init__(self, config: HardenConfig, steps_per_epoch: int, epochs: int):
        self.config, self.ramp, self.step = config, min(config.epsilon_warmup, epochs) * steps_per_epoch, 0

    def __call__(self) -> float:
        self.step += 1
        return self.config.epsilon * min(1.0, self.step / self.ramp) if self.ramp else self.config.epsilon


def pgd_transform(task, model: nn.Module, config: HardenConfig, gen: torch.Generator, ramp: EpsilonRamp):
    """Batch transform: the batch with its pixels replaced by PGD adversarials of the current model (eval mode)."""

    def transform(batch: dict, where: Where) -> dict:
        space, eps = images.ImageSpace.of(task, batch), ramp()
        model.eval()
        x_adv = images.pgd(space.logits(task, model, batch), batch[space.key].float(), batch["labels"], eps,
                           config.norm, config.steps, 2.5 * eps / config.steps if config.step_size is None else
                           config.step_size, gen=gen, low=space.low, high=space.high)
        model.train()
        return {**batch, space.key: x_adv}

    return transform


def trades_loss(task, config: HardenConfig, gen: torch.Generator, ramp: EpsilonRamp):
    """Loss hook: CE on clean inputs + beta * KL(f(x) || f(x')), x' found by PGD on that KL (TRADES)."""
    kl = nn.KLDivLoss(reduction="none")

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        space, eps = images.ImageSpace.of(task, batch), ramp()
        f = space.logits(task, model, batch)
        x, y = batch[space.key].float(), batch["labels"]
        model.eval()
        with torch.no_grad():
            p_clean = f(x).softmax(1)
        x_adv = images.pgd(f, x, y, eps, config.norm, config.steps, 2.5 * eps / config.steps if config.step_size is
                           None else config.step_size, gen=gen, low=space.low, high=space.high,
                           loss=lambda z, _: kl(z.log_softmax(1), p_clean).sum(1))
        model.train()
        logits, logits_adv = f(x), f(x_adv)
        robust = kl(logits_adv.log_softmax(1), logits.softmax(1)).sum(1).mean()
        return nn.functional.cross_entropy(logits, y) + config.beta * robust

    return loss


class BestRobustEpoch(Callback):
    """After each epoch, PGD-10 robust accuracy on the validation split; the weights of the best epoch are kept
    and restored at the end (early stopping against robust overfitting, Rice et al. 2020)."""

    def __init__(self, task, model: nn.Module, val: list[dict], config: HardenConfig):
        self.task, self.model, self.val, self.best, self.state, self.epoch = task, model, val, -1.0, None, 0
        self.attack = AttackConfig(method="pgd", epsilon=config.epsilon, norm=config.norm, steps=10, limit=0,
                                   seed=config.seed)

    def on_epoch_end(self, loop) -> None:
        robust = measure(self.task, self.model, self.val, "image", self.attack)["robust_accuracy"]
        if robust > self.best:
            self.best, self.epoch = robust, loop.state.epoch
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self) -> None:
        if self.state is not None:
            self.model.load_state_dict(self.state)


def cosine(optimizer, total_steps: int):
    """Learning rate from its peak down to 0 along a half cosine over `total_steps`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps)
                                                                                      / total_steps)))


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
    epochs = config.epochs or (IMAGE_EPOCHS if kind == "image" else defaults["epochs"])
    train = perturbed_copies(task, splits.train, config.budget, config.seed) if kind == "text" else splits.train
    loader = DataLoader(train, batch_size=defaults["batch_size"], shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(config.seed))
    transforms, loss, ramp = (), task_loss(task), EpsilonRamp(config, len(loader), epochs)
    if kind == "image" and config.method == "pgd":
        transforms = [pgd_transform(task, model, config, gen, ramp)]
    elif kind == "image":
        loss = trades_loss(task, config, gen, ramp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr or defaults["lr"])
    scheduler = cosine(optimizer, epochs * len(loader)) if config.scheduler == "cosine" else None
    best = BestRobustEpoch(task, model, [splits.val[i] for i in range(len(splits.val))], config) \
        if kind == "image" and config.keep_best else None
    with progress_bar(progress) as bar:
        job = bar.add_task(f"harden ({config.method})", total=epochs * len(loader))
        Loop(model, optimizer, loader, loss, epochs, scheduler=scheduler, transforms=transforms,
             callbacks=[ProgressBar(bar, job), *([best] if best else [])],
             scaler=grad_scaler(current().precision, model_device(model))).run()  # fp16: scaled, as train is
    if best is not None:
        best.restore()
    model.eval()
    after = measure(task, model, test, kind, scored)
    keep = ("clean_accuracy", "robust_accuracy", "success_rate")
    metrics = {**task.evaluate(model, splits.test), **{k: after[k] for k in keep},
               "robust_attack": f"{scored.method}" + (f"-{scored.steps} {scored.norm} {scored.epsilon:g}" if kind == "image"
                                                       else f" budget {scored.budget}"),
               **({"selected_epoch": best.epoch, "val_robust_accuracy": best.best} if best is not None else {})}
    seconds = time.perf_counter() - t0
    child = save_artifact(out, model.state_dict(), task=task.to_manifest(), model_config=artifact.manifest["model_config"],
                          verb="harden", options={**dataclasses.asdict(config), "split_seed": artifact.split_seed},
                          metrics={"test": metrics}, parents=[artifact.id], extra={"run": {"seconds": seconds}},
                          write_files=task.write_files)
    report = HardenReport(task=artifact.task, artifact=str(out), parent=str(artifact.path), method=config.method,
                          epsilon=config.epsilon, epochs=epochs, before={k: before[k] for k in keep},
                          after={k: after[k] for k in keep}, seconds=seconds, options=dataclasses.asdict(config), kind=kind)
    return child.with_report(report)
