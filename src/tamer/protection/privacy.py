"""Differentially private training (DP-SGD through Opacus): noise calibrated so the final epsilon stays in budget.

It runs the one loop (tamer/loop.py) with Opacus' `make_private` as its wrapper, `noise_only_step` as its step for an
empty Poisson batch and `EpsilonBudget` as a callback. Opacus's search finds the noise multiplier for the planned
steps under its RDP accountant; before every epoch the callback asks what epsilon that epoch would bring and stops
instead of exceeding the target. Per-example clipping is Opacus's ghost clipping
when the task's loss can be taken per example (1.3 s instead of 2.3 s for digits' 200 steps; hooks otherwise).
The model is the final one (no checkpoint picked by validation), and the artifact it writes is a normal one.
The noise and the Poisson sampling come from `SecureRandom` (OS entropy through AES-CTR), never from the seed: the
seed governs initialisation, the data split and dropout, so two runs with one seed spend the same epsilon and end
with different weights, and nobody can replay a run to subtract the noise.
A task may offer a DP-friendly model (`task.private_model_config()`, e.g. digits' tanh MLP: per-step noise grows
with the number of weights, and tempered activations suit clipped, noisy gradients); the private path builds that
one and records it in the artifact, otherwise the task's usual model.
It runs at `--device` (the model there, batches moved by the task, the noise drawn on the CPU and moved to each
parameter's device) and in fp32 only: see `private_precision` for why bf16 / fp16 are refused.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..artifact import Artifact, save_artifact
from ..device import placed, resolve_device
from ..errors import DataError, UsageError, refuse_existing
from ..loop import Callback, Loop, ProgressBar
from ..progress import progress_bar
from ..report import Report, table_html
from ..tasks.base import Task
from .config import PrivacyConfig
from .secure_random import SecureRandom

# Chosen for DP-SGD on small data, on digits' validation split at epsilon 3 (1,257 training images, the tanh MLP):
# a large batch (sampling rate 0.2) and AdamW at 0.02, five times the usual rate (0.01: 3 points lower on validation;
# 60 epochs: no better, the accountant then needs sigma 5.3 instead of 4.4; batch 512 for 20 epochs: 1 point lower).
# Clipping at the default --max-grad-norm 1.0 scored as well as 0.1 (AdamW rescales the clipped, noisy mean).
# Rechecked on test accuracy over seeds 0-9 (each its own split): 0.937 mean; a cosine decay, an average of the
# weights (EMA 0.9 / 0.97), batch 128 or 512, lr 0.01 or 0.03, clipping 0.1 or 0.3 were no better.
DP_DEFAULTS = {"epochs": 40, "batch_size": 256, "lr": 2e-2, "optimizer": "adamw", "weight_decay": 0.0, "seed": 0,
               "eval_batch_size": 256}
PLACEMENT = {"device": "auto", "precision": "fp32"}  # where it runs: recorded under `run`, outside the artifact's id


def private_precision(precision: str) -> str:
    """DP-SGD trains in fp32 only. Under autocast Opacus (1.6) computes each example's gradient, and the norm it
    clips by, in the low precision: on digits' DP MLP at --max-grad-norm 1.0, about 40% of the clipped bf16 gradients
    came out above the bound, by up to 0.6% (fp32: none beyond 1e-6; tests/protection/test_privacy_device.py), so the
    sensitivity that the accountant's epsilon assumes would not hold."""
    if precision != "fp32":
        raise UsageError(f"--precision {precision} is refused with --private: Opacus would compute each example's "
                         f"gradient and its clipping norm in {precision}, so clipped gradients exceed --max-grad-norm "
                         f"(bf16: by up to 0.6%) and epsilon would no longer bound what was spent; use --precision fp32.")
    return precision


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon spent by `steps` of the subsampled Gaussian mechanism, by Opacus's RDP accountant."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta))


def noise_for(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier that keeps `steps` steps within (epsilon, delta): Opacus's own search, over the
    accountant's integer orders only. Its fractional orders cost 10 to 100 times more per evaluation (0.4 s a search
    on digits); fewer orders can only overstate epsilon, so the full accountant finds the noise within budget too."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    orders = [a for a in RDPAccountant.DEFAULT_ALPHAS if float(a).is_integer()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha" for the loosest candidates
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant="rdp", alphas=orders))


def epsilon_after(noise_multiplier: float, sample_rate: float, delta: float):
    """steps -> epsilon, by Opacus's RDP accountant; the per-step RDP is computed once (it adds up over steps),
    so asking before every epoch costs microseconds instead of an accountant run (40 ms here)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    orders = RDPAccountant.DEFAULT_ALPHAS
    per_step = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=orders)
    return lambda steps: float(get_privacy_spent(orders=orders, rdp=per_step * steps, delta=delta)[0]) if steps else 0.0


def per_example_loss(task: Task):
    """The task's loss per example, which Opacus's ghost clipping needs, or None when the task has its own loss."""
    return task.example_losses if type(task).loss is Task.loss else None


class _GhostCriterion:
    """What Opacus's ghost clipping wraps: a loss with a `reduction` it switches to 'none' for the per-example pass."""

    reduction = "mean"

    def __init__(self, each):
        self.each = each

    def __call__(self, outputs, batch):
        losses = self.each(outputs, batch)
        return losses if self.reduction == "none" else losses.mean()


def refuse_unsupported_layers(model: torch.nn.Module, task: Task) -> None:
    """BatchNorm mixes examples in a batch, which per-example clipping cannot bound: refuse with the fix."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise UsageError(f"task {task.name!r} builds a model DP-SGD cannot train ({str(errors[0]).splitlines()[0]}); "
                         f"replace BatchNorm with GroupNorm (opacus.validators.ModuleValidator.fix does this) "
                         f"or train without --private.")


def private_model_config(task: Task) -> dict[str, Any]:
    """The model DP-SGD trains: the task's DP-friendly variant when it offers one, else its usual model."""
    variant = getattr(task, "private_model_config", None)
    return variant() if callable(variant) else task.model_config()


def refuse_fitted_state(task: Task, verb: str) -> None:
    """State fitted on the training split (a tokenizer's vocabulary) is outside any epsilon: a rare word of one
    record, a name, would be stored in it. Refuse it with the task's own way out."""
    fitted = task.fitted_on_training_data()
    if fitted:
        what, remedy = next(iter(fitted.items()))
        raise UsageError(f"{verb} would fit the {what} of task {task.name!r} on the private training data, outside any "
                         f"privacy guarantee (rare words such as names end up in it); {remedy}.")


def frozen_for_privacy(model: torch.nn.Module, task: Task, model_config: dict[str, Any]) -> list[str]:
    """Freeze what the task keeps at its public, pretrained values under DP-SGD; returns the prefixes frozen."""
    prefixes = list(task.private_frozen(model_config))
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)
    return prefixes


class SecurePoissonSampler:
    """Batches of indices for DP-SGD: every example joins every batch independently with probability `sample_rate`
    (the sampling the RDP accountant assumes), drawn from `SecureRandom`; a batch may be empty."""

    def __init__(self, size: int, sample_rate: float, steps: int, rng: SecureRandom):
        self.size, self.sample_rate, self.steps, self.rng = size, sample_rate, steps, rng

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield torch.nonzero(self.rng.bernoulli(self.size, self.sample_rate)).flatten().tolist()


def add_secure_noise(optimizer, rng: SecureRandom) -> None:
    """Make an Opacus DP optimizer draw its Gaussian noise from `rng` (what its `secure_mode` does with torchcsprng,
    which no longer builds against current torch): the same mechanism and standard deviation, a secure source.
    A sum of clipped gradients is noised once: noising it twice in one step is refused, as Opacus refuses it."""
    def add_noise() -> None:
        std = getattr(optimizer, "_adjusted_noise_multiplier", optimizer.noise_multiplier) * optimizer.max_grad_norm
        for p in optimizer.params:
            summed = p.summed_grad
            if getattr(summed, "tamer_noised", False):
                raise RuntimeError("a sum of clipped gradients was about to be noised twice in one step.")
            p.grad = (summed + rng.normal(summed.shape, std, summed.dtype, summed.device)).view_as(p)
            summed.tamer_noised = True

    optimizer.add_noise = add_noise


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_private(model: torch.nn.Module, optimizer, loader: DataLoader, task: Task, noise_multiplier: float,
                 max_grad_norm: float, mode: str | None = None, rng: SecureRandom | None = None):
    """Opacus's engine, model, optimizer, Poisson-sampling loader and loss. Ghost clipping (Opacus's fast gradient
    clipping: per-example gradient norms without per-example gradients, then a second backward pass weighted by the
    clipping factors) when the task's loss can be taken per example; else per-example gradients by hooks.
    Sampling and noise come from `rng` (a fresh `SecureRandom` unless one is given), never from torch's seeded
    generators: `loader` is replaced by one whose batches `SecurePoissonSampler` draws, as many per epoch."""
    from opacus import PrivacyEngine

    rng = rng or SecureRandom()
    sampler = SecurePoissonSampler(len(loader.dataset), 1.0 / len(loader), len(loader), rng)
    collate = loader.collate_fn
    loader = DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=lambda xs: collate(xs) if xs else None)
    each = per_example_loss(task)
    mode = mode or ("ghost" if each is not None else "hooks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # secure-RNG advice and full-backward-hook notices
        engine = PrivacyEngine(accountant="rdp")
        if mode == "ghost":
            model, optimizer, criterion, loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, criterion=_GhostCriterion(each),
                noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, grad_sample_mode="ghost",
                poisson_sampling=False)  # the loader samples by Poisson already, from the secure source
        else:
            model, optimizer, loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm, grad_sample_mode=mode, poisson_sampling=False)
            criterion = task.loss
    add_secure_noise(optimizer, rng)
    return engine, model, optimizer, loader, criterion, mode


def noise_only_step(optimizer, params: list[torch.Tensor], mode: str) -> None:
    """A step for a Poisson batch that drew no example: the mechanism still adds its noise and the accountant
    counts the step (Opacus skips both when no gradient was computed)."""
    for p in params:
        if mode == "ghost":
            p.grad = torch.zeros_like(p)
        else:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
    optimizer.step()


class EpsilonBudget(Callback):
    """Stops before an epoch that would spend more than the target epsilon; records each epoch's validation and spend."""

    def __init__(self, spent_after, target: float, steps_per_epoch: int, task: Task, val, opts: dict[str, Any]):
        self.spent_after, self.target, self.steps_per_epoch = spent_after, target, steps_per_epoch
        self.task, self.val, self.opts, self.t0 = task, val, opts, 0.0

    def before_epoch(self, loop: Loop) -> None:
        s = loop.state
        if self.spent_after(s.global_step + self.steps_per_epoch) > self.target + 1e-9:
            s.stop = f"stopped before epoch {s.epoch}: it would have spent more than epsilon {self.target}"
        self.t0 = time.perf_counter()

    def on_epoch_end(self, loop: Loop) -> None:
        s, task = loop.state, self.task
        loop.optimizer.zero_grad(set_to_none=True)
        val = task.evaluate(loop.model._module, self.val, self.opts["eval_batch_size"])
        s.history.append({"epoch": s.epoch, "train_loss": s.loss_sum / max(s.count, 1), "val_loss": val["loss"],
                          f"val_{task.metric}": val[task.metric], "lr": self.opts["lr"],
                          "epsilon": self.spent_after(s.global_step), "seconds": round(time.perf_counter() - self.t0, 3)})


def train_private(task: Task, options: dict[str, Any], privacy: PrivacyConfig, out: str | Path,
                  show_progress: bool = True) -> Artifact:
    """Train `task`'s model with DP-SGD within (epsilon, delta) and write an artifact recording the spend."""
    out = refuse_existing(out)
    opts = {**DP_DEFAULTS, **PLACEMENT, **task.private_train_defaults(), **{k: v for k, v in options.items() if v is not None}}
    unsupported = sorted(k for k in opts if k not in DP_DEFAULTS and k not in PLACEMENT)
    if unsupported:
        raise UsageError(f"option {unsupported[0]!r} is not supported with --private; accepted: "
                         f"{', '.join([*DP_DEFAULTS, *PLACEMENT])}.")
    device, precision = resolve_device(opts.pop("device")), private_precision(opts.pop("precision"))
    refuse_fitted_state(task, "train --private")
    _seed(opts["seed"])
    splits = task.prepare(opts["seed"])
    n = len(splits.train)
    if n == 0 or len(splits.val) == 0:
        raise DataError("the train or validation split is empty; give more data or change the split fractions.")
    if privacy.delta >= 1.0 / n:
        raise UsageError(f"--delta {privacy.delta} is not below 1/{n} (one over the training examples); a delta that "
                         f"large allows leaking a whole example. Use a smaller one, such as {10 ** math.floor(math.log10(0.1 / n)):g}.")
    model_config = private_model_config(task)
    model = task.build_model(model_config)
    frozen = frozen_for_privacy(model, task, model_config)
    refuse_unsupported_layers(model, task)
    model.to(device)  # before the optimizer and Opacus see its parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.SGD(params, lr=opts["lr"], momentum=0.9, weight_decay=opts["weight_decay"])
                 if opts["optimizer"] == "sgd" else torch.optim.AdamW(params, lr=opts["lr"], weight_decay=opts["weight_decay"]))
    loader = DataLoader(splits.train, batch_size=min(opts["batch_size"], n), collate_fn=task.collate)
    # each example joins each step with probability 1 / len(loader), len(loader) steps an epoch (make_private)
    steps_per_epoch = len(loader)
    q = 1.0 / steps_per_epoch
    sigma = noise_for(privacy.epsilon, privacy.delta, q, steps_per_epoch * opts["epochs"])
    opacus: dict[str, Any] = {}

    def wrap(model, optimizer, loader):  # Opacus' make_private: per-example clipping, secure sampling and noise
        opacus["engine"], model, optimizer, loader, opacus["criterion"], opacus["mode"] = make_private(
            model, optimizer, loader, task, sigma, privacy.max_grad_norm)
        # a Poisson batch that drew no example comes as None: the loop runs `empty_step` for it
        return model, optimizer, lambda epoch, first: (batch if isinstance(batch, dict) and len(batch["labels"])
                                                       else None for batch in loader)

    spent_after = epsilon_after(sigma, q, privacy.delta)
    started = time.perf_counter()
    budget = EpsilonBudget(spent_after, privacy.epsilon, steps_per_epoch, task, splits.val, opts)
    loop = Loop(model, optimizer, loader, lambda m, batch: opacus["criterion"](task.forward(m, batch), batch),
                opts["epochs"], wrappers=[wrap], callbacks=[budget],
                transforms=[lambda batch, at: task.to_device(batch, device)])
    loop.prepare()
    engine, model, optimizer, mode = opacus["engine"], loop.model, loop.optimizer, opacus["mode"]
    loop.empty_step = lambda: noise_only_step(optimizer, params, mode)
    with progress_bar(show_progress) as bar, warnings.catch_warnings(), placed(device, precision) as where:
        warnings.simplefilter("ignore")  # Opacus's full-backward-hook notice on every step
        job = bar.add_task("train --private", total=steps_per_epoch * opts["epochs"])
        loop.callbacks = [budget, ProgressBar(bar, job, lambda s: f"epoch {s.epoch} loss {s.pending_loss / max(s.pending_count, 1):.4f}")]
        state = loop.run()
        history, stopped, steps = state.history, state.stop, state.global_step
        seconds = time.perf_counter() - started
        final = model._module.eval()
        test = task.evaluate(final, splits.test, opts["eval_batch_size"])
    peak_accelerator = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    final.cpu()
    spent = float(engine.get_epsilon(privacy.delta)) if steps else 0.0  # the engine's own accountant, every step it saw
    record = {"epsilon_target": privacy.epsilon, "epsilon": spent, "delta": privacy.delta,
              "max_grad_norm": privacy.max_grad_norm, "noise_multiplier": sigma, "sample_rate": q, "steps": steps,
              "accountant": "rdp (opacus)", "grad_sample_mode": mode, "stopped": stopped,
              "noise_source": "os entropy (AES-256-CTR), not the seed", "frozen": frozen}
    return save_artifact(
        out, final.state_dict(), task=task.to_manifest(), model_config=model_config, verb="train",
        options={**opts, "private": True, "epsilon": privacy.epsilon, "delta": privacy.delta,
                 "max_grad_norm": privacy.max_grad_norm},
        metrics={"test": test}, write_files=task.write_files,
        extra={"privacy": record,
               "training": {"learning_curve": history, "best_epoch": len(history), "stopped_early": bool(stopped),
                            "metric": task.metric, "sizes": {k: len(getattr(splits, k)) for k in ("train", "val", "test")}},
               "run": {"seconds": seconds, "examples_per_second": n * len(history) / max(seconds, 1e-9),
                       "epoch_seconds": [h["seconds"] for h in history], "data_files": task.data_files,
                       "device": str(device), "computed_in": sorted(where.computed),
                       "peak_accelerator_bytes": peak_accelerator}})


@dataclass
class PrivacyReport(Report):
    """What a DP training run spent and reached."""

    artifact: str
    artifact_id: str
    task: str
    epsilon: float
    epsilon_target: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    seconds: float
    test: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    title = "privacy"

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> "PrivacyReport":
        m = artifact.manifest
        p = m.get("privacy", {})
        return cls(artifact=str(artifact.path), artifact_id=artifact.id, task=artifact.task, epsilon=p.get("epsilon", 0.0),
                   epsilon_target=p.get("epsilon_target", 0.0), delta=p.get("delta", 0.0),
                   noise_multiplier=p.get("noise_multiplier", 0.0), sample_rate=p.get("sample_rate", 0.0),
                   steps=p.get("steps", 0), max_grad_norm=p.get("max_grad_norm", 0.0),
                   seconds=m.get("run", {}).get("seconds", 0.0), test=m.get("metrics", {}).get("test", {}),
                   history=m.get("training", {}).get("learning_curve", []), stopped=p.get("stopped", ""))

    def gate_metrics(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "delta": self.delta,
                **{k: v for k, v in self.test.items() if not isinstance(v, (list, dict))}}

    def summary(self) -> str:
        acc = self.test.get("accuracy")
        return (f"trained {self.task} privately: epsilon {self.epsilon:.3f} of {self.epsilon_target:g} "
                f"(delta {self.delta:g}, noise {self.noise_multiplier:.3f}, {self.steps} steps) in {self.seconds:.1f} s"
                + (f"; test accuracy {acc:.4f}" if acc is not None else "") + (f"\n{self.stopped}" if self.stopped else "")
                + f"\nartifact {self.artifact} (id {self.artifact_id})")

    def html(self) -> str:
        import matplotlib.pyplot as plt

        from ..report import figure_html

        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        epochs = [h["epoch"] for h in self.history]
        a.plot(epochs, [h["epsilon"] for h in self.history], marker="o")
        a.axhline(self.epsilon_target, color="tab:red", ls="--", label="budget")
        a.set_xlabel("epoch"); a.set_ylabel("epsilon spent"); a.legend(); a.grid(alpha=.3)
        key = next((k for k in (self.history[0] if self.history else {}) if k.startswith("val_") and k != "val_loss"), None)
        if key:
            b.plot(epochs, [h[key] for h in self.history], marker="o", color="tab:green")
            b.set_xlabel("epoch"); b.set_ylabel(key.replace("_", " ")); b.grid(alpha=.3)
        facts = [("epsilon spent / budget", f"{self.epsilon:.3f} / {self.epsilon_target:g}"), ("delta", self.delta),
                 ("noise multiplier", f"{self.noise_multiplier:.3f}"), ("sampling rate", f"{self.sample_rate:.4f}"),
                 ("steps", self.steps), ("clipping norm", self.max_grad_norm), ("time", f"{self.seconds:.1f} s"),
                 *[(f"test {k}", v) for k, v in self.test.items() if isinstance(v, float)]]
        return (f"<section><h2>Differential privacy · {self.task}</h2>{table_html(facts)}"
                f"<div class=figs>{figure_html(fig, 'epsilon per epoch')}</div></section>")
