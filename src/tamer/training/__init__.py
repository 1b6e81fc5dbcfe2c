"""Training: the train verb on the one loop (tamer/loop.py), DDP / FSDP2 wrapping, checkpoints and evaluation."""
from .config import TrainConfig, recipe_options
from .evaluate import evaluate
from .loop import Start, fit, train
from .report import EvalReport, TrainReport

__all__ = ["EvalReport", "Start", "TrainConfig", "TrainReport", "evaluate", "fit", "recipe_options", "train"]
