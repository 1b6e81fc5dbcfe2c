"""The attack verb: adversarial examples against an artifact's model on one split of its data, scored as clean
accuracy, robust accuracy, success rate (of the examples first classified correctly) and perturbation size."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..artifact import Artifact
from ..errors import UsageError, refuse_existing
from . import images
from .config import IMAGE_METHODS, AttackConfig
from .data import image_batches, load_split, text_scores, texts_of
from .report import SHOWN, AttackReport
from .text import greedy_attack


def check_method(method: str, kind: str, task_name: str) -> None:
    if kind == "text" and method in IMAGE_METHODS:
        raise UsageError(f"--method {method} attacks images, and artifact task {task_name!r} takes texts; use charflip or wordswap.")
    if kind == "image" and method not in IMAGE_METHODS:
        raise UsageError(f"--method {method} is a text attack, and artifact task {task_name!r} takes images; "
                         f"use fgsm, pgd, square or noise.")


def perturb_images(f, x: torch.Tensor, y: torch.Tensor, space, config: AttackConfig, gen: torch.Generator) -> torch.Tensor:
    """Adversarial pixels for one batch by `config.method`, inside the ball and [space.low, space.high]."""
    lo, hi, eps = space.low, space.high, config.epsilon
    if config.method == "fgsm":
        return images.fgsm(f, x, y, eps, config.norm, lo, hi)
    if config.method == "pgd":
        return images.pgd(f, x, y, eps, config.norm, config.steps, config.alpha, config.restarts, config.random_start,
                          gen, lo, hi)
    if config.method == "square":
        return images.square(f, x, y, eps, config.queries, config.p_init, gen, lo, hi)
    return images.noise(f, x, y, eps, config.norm, gen, lo, hi)


def attack_images(task, model, examples: list[dict], config: AttackConfig) -> dict:
    gen = torch.Generator().manual_seed(config.seed)
    clean, robust, sizes, pairs = [], [], [], []
    labels = getattr(task, "labels", None) or [str(i) for i in range(10)]
    for batch, space, x, y in image_batches(task, examples, config.batch_size):
        f = space.logits(task, model, batch)
        x_adv = perturb_images(f, x, y, space, config, gen)
        with torch.no_grad():
            p_clean, p_adv = f(x).argmax(1), f(x_adv).argmax(1)
        clean.append(p_clean == y)
        robust.append(p_adv == y)
        sizes.append(images.perturbation_size(x_adv, x, config.norm))
        for i in range(len(x)):
            if len(pairs) < SHOWN and bool(p_clean[i] == y[i]) and bool(p_adv[i] != y[i]):
                pairs.append({"label": labels[int(y[i])], "clean_label": labels[int(p_clean[i])],
                              "adversarial_label": labels[int(p_adv[i])], "original": x[i].tolist(),
                              "adversarial": x_adv[i].tolist()})
    return _scores(torch.cat(clean), torch.cat(robust), torch.cat(sizes), pairs)


def attack_texts(task, model, examples: list[dict], config: AttackConfig) -> dict:
    texts, labels = texts_of(task, examples), [int(e["labels"]) for e in examples]
    scores = text_scores(task, model)
    _, clean = scores(texts, labels)
    names = list(getattr(task, "labels", None) or [])
    robust, sizes, pairs = clean.clone(), torch.zeros(len(texts)), []
    right = [i for i in range(len(texts)) if bool(clean[i])]
    kind = "char" if config.method == "charflip" else "word"
    found = greedy_attack([texts[i] for i in right], [labels[i] for i in right], scores, kind, config.budget,
                          config.candidates, config.seed)
    for i, (adversarial, edits) in zip(right, found):
        _, ok = scores([adversarial], [labels[i]])
        robust[i] = bool(ok[0])
        sizes[i] = len(edits)
        if not bool(ok[0]) and len(pairs) < SHOWN:
            pred = int(task.forward(model, task.encode([adversarial])).argmax(1)[0])
            pairs.append({"label": names[labels[i]], "clean_label": names[labels[i]], "adversarial_label": names[pred],
                          "original": texts[i], "adversarial": adversarial, "edits": [e.op for e in edits]})
    return _scores(clean, robust, sizes[clean] if bool(clean.any()) else sizes, pairs)


def _scores(clean: torch.Tensor, robust: torch.Tensor, sizes: torch.Tensor, pairs: list) -> dict:
    right = int(clean.sum())
    broken = int((clean & ~robust).sum())
    return {"clean_accuracy": float(clean.float().mean()), "robust_accuracy": float((clean & robust).float().mean()),
            "success_rate": broken / right if right else 0.0, "mean_perturbation": float(sizes.float().mean()),
            "examples": len(clean), "pairs": pairs}


def measure(task, model, examples: list[dict], kind: str, config: AttackConfig) -> dict:
    """The attack's numbers on `examples` (the model in eval mode): what `attack` reports and `harden` records."""
    was = model.training
    model.eval()
    try:
        return attack_texts(task, model, examples, config) if kind == "text" else attack_images(task, model, examples, config)
    finally:
        model.train(was)


def attack(artifact: Artifact, config: AttackConfig, out: str | Path | None = None) -> AttackReport:
    """Attack `artifact`'s model on `config.split`; with `out`, write attack.html and attack.json there."""
    if out is not None:
        out = refuse_existing(out, "an attack report")
    t0 = time.perf_counter()
    task, model, examples, kind = load_split(artifact, config.split, config.limit)
    check_method(config.method, kind, artifact.task)
    torch.manual_seed(config.seed)
    found = measure(task, model, examples, kind, config)
    report = AttackReport(task=artifact.task, kind=kind, artifact=str(artifact.path), artifact_id=artifact.id,
                          method=config.method, norm=config.norm, epsilon=config.epsilon,
                          seconds=time.perf_counter() - t0, options=dataclasses.asdict(config), **found)
    if out is not None:
        report.out = str(out)
        report.write_files(out)
    return report
