"""Configs of attack, harden and stability: one name per option in Python, CLI flags and recipes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, field

IMAGE_METHODS = ("fgsm", "pgd", "square", "noise")
TEXT_METHODS = ("charflip", "wordswap")


@dataclass(frozen=True)
class AttackConfig:
    method: Literal["fgsm", "pgd", "square", "noise", "charflip", "wordswap"] = field(
        "pgd", "images: fgsm | pgd | square (gradient-free) | noise (random in the ball); text: charflip | wordswap")
    epsilon: float = field(0.2, "radius of the ball in pixel space (inputs in [0, 1])")
    norm: Literal["linf", "l2"] = field("linf", "the ball's norm (square: linf only)")
    steps: int = field(20, "PGD steps")
    step_size: float | None = field(None, "PGD step; default 2.5 * epsilon / steps (Madry et al. 2018)")
    restarts: int = field(1, "PGD runs from random starts; an example counts as broken if any run breaks it")
    random_start: bool = field(True, "start PGD from a random point in the ball")
    queries: int = field(1000, "Square attack: model queries per example")
    p_init: float = field(0.8, "Square attack: initial fraction of pixels in a square")
    budget: int = field(2, "text: edits per sentence")
    candidates: int = field(48, "text: candidate edits scored per greedy round")
    split: Literal["test", "val"] = field("test", "which split of the artifact's data to attack")
    limit: int = field(300, "attack at most this many examples (0: all)")
    batch_size: int = field(128, "examples per attack batch")
    seed: int = field(0, "seed of random starts, squares and edits")

    def __post_init__(self):
        check(self.epsilon >= 0, f"--epsilon {self.epsilon} is not accepted; use a value >= 0 (pixel space, inputs in [0, 1]).")
        check(self.steps >= 1, f"--steps {self.steps} is not accepted; use a positive integer.")
        check(self.step_size is None or self.step_size > 0, f"--step-size {self.step_size} is not accepted; use a value > 0.")
        check(self.restarts >= 1, f"--restarts {self.restarts} is not accepted; use a positive integer.")
        check(self.queries >= 1, f"--queries {self.queries} is not accepted; use a positive integer.")
        check(0 < self.p_init <= 1, f"--p-init {self.p_init} is out of range; use a value in (0, 1].")
        check(self.budget >= 1, f"--budget {self.budget} is not accepted; use at least 1 edit per sentence.")
        check(self.candidates >= 1, f"--candidates {self.candidates} is not accepted; use a positive integer.")
        check(self.limit >= 0, f"--limit {self.limit} is not accepted; use 0 (all) or a positive integer.")
        check(1 <= self.batch_size <= 4096, f"--batch-size {self.batch_size} is out of range; use 1..4096.")
        check(not (self.method == "square" and self.norm != "linf"),
              "--method square searches the linf ball only; pass --norm linf or use --method pgd for l2.")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps


@dataclass(frozen=True)
class HardenConfig:
    method: Literal["pgd", "trades"] = field("pgd", "adversarial training: pgd (Madry et al. 2018) or trades (Zhang et al. 2019)")
    epsilon: float = field(0.2, "radius of the training ball in pixel space")
    norm: Literal["linf", "l2"] = field("linf", "the ball's norm")
    steps: int = field(7, "PGD steps per training batch")
    step_size: float | None = field(None, "PGD step; default 2.5 * epsilon / steps")
    beta: float = field(6.0, "TRADES: weight of the robustness (KL) term")
    epochs: int | None = field(None, "epochs of adversarial fine-tuning from the artifact's weights (default: 40 on "
                                     "images, the task's training epochs on texts)")
    lr: float | None = field(None, "peak learning rate (default: the task's)")
    scheduler: Literal["cosine", "constant"] = field("cosine", "learning-rate schedule over the run")
    epsilon_warmup: int = field(5, "epochs over which the training epsilon grows linearly from 0 to --epsilon (0: none)")
    keep_best: bool = field(True, "images: keep the epoch of best PGD-10 robust accuracy on the validation split "
                                  "(against robust overfitting, Rice et al. 2020); else the last epoch")
    budget: int = field(2, "text: random edits per perturbed training copy")
    eval_steps: int = field(20, "PGD steps of the robust accuracy measured on the test split")
    limit: int = field(0, "test examples the robust accuracy is measured on (0: all)")
    seed: int = field(0, "seed of data order, random starts and edits")

    def __post_init__(self):
        check(self.epsilon >= 0, f"--epsilon {self.epsilon} is not accepted; use a value >= 0 (pixel space, inputs in [0, 1]).")
        check(self.steps >= 1, f"--steps {self.steps} is not accepted; use a positive integer.")
        check(self.step_size is None or self.step_size > 0, f"--step-size {self.step_size} is not accepted; use a value > 0.")
        check(self.beta >= 0, f"--beta {self.beta} is not accepted; use a value >= 0.")
        check(self.epochs is None or self.epochs >= 1, f"--epochs {self.epochs} is not accepted; use a positive integer.")
        check(self.epsilon_warmup >= 0, f"--epsilon-warmup {self.epsilon_warmup} is not accepted; use 0 or more epochs.")
        check(self.lr is None or self.lr > 0, f"--lr {self.lr} is not accepted; use a value > 0.")
        check(self.budget >= 1, f"--budget {self.budget} is not accepted; use at least 1 edit per copy.")
        check(self.eval_steps >= 1, f"--eval-steps {self.eval_steps} is not accepted; use a positive integer.")
        check(self.limit >= 0, f"--limit {self.limit} is not accepted; use 0 (all) or a positive integer.")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps


@dataclass(frozen=True)
class StabilityConfig:
    noise: tuple[float, ...] = field((0.05, 0.1, 0.2), "Gaussian noise strengths (pixel std; text: random edits per sentence)")
    draws: int = field(3, "noisy copies per example and strength")
    against: tuple[str, ...] = field((), "other artifacts (a reseeded or compressed model) to measure agreement with")
    bins: int = field(15, "bins of the expected calibration error and the reliability diagram")
    calibrate: bool = field(False, "fit temperature scaling (Guo et al. 2017) on the validation split and write a child")
    split: Literal["test", "val"] = field("test", "the split measured")
    limit: int = field(0, "measure at most this many examples (0: all)")
    seed: int = field(0, "seed of the noise")

    def __post_init__(self):
        check(len(self.noise) >= 1 and all(s >= 0 for s in self.noise),
              f"--noise {','.join(map(str, self.noise))} is not accepted; give strengths >= 0, e.g. 0.05,0.1,0.2.")
        check(self.draws >= 1, f"--draws {self.draws} is not accepted; use a positive integer.")
        check(2 <= self.bins <= 1000, f"--bins {self.bins} is out of range; use 2..1000.")
        check(self.limit >= 0, f"--limit {self.limit} is not accepted; use 0 (all) or a positive integer.")
