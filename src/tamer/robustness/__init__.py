"""Robustness: adversarial attacks (FGSM, PGD, Square, text edits), adversarial training, stability and calibration."""
from .attack import attack
from .config import AttackConfig, HardenConfig, StabilityConfig
from .report import AttackReport, HardenReport

__all__ = ["AttackConfig", "AttackReport", "HardenConfig", "HardenReport", "StabilityConfig", "attack"]
