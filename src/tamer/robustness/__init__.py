"""Robustness: adversarial attacks (FGSM, PGD, Square, text edits), adversarial training, stability and calibration."""
from .attack import attack
from .config import AttackConfig, HardenConfig, StabilityConfig
from .harden import harden
from .report import AttackReport, HardenReport, StabilityReport
from .stability import stability

__all__ = ["AttackConfig", "AttackReport", "HardenConfig", "HardenReport", "StabilityConfig", "StabilityReport", "attack", "harden",
           "stability"]
