"""CompressConfig: the options of `tamer compress` (one name across Python, CLI flags and recipes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, field

GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class CompressConfig:
    quantize: Literal["int8", "int4"] | None = field(None, "quantize weights to int8 or int4 (embeddings included)")
    scheme: Literal["sym", "asym"] = field("sym", "symmetric (zero-point 0) or asymmetric (zero-point per scale) codes")
    granularity: Literal["tensor", "channel", "group"] | None = field(
        None, "one scale per tensor, per output channel or per group of input columns (default: channel for int8, group for int4)")
    group_size: int = field(64, "input columns per scale with --granularity group: 32, 64 or 128")
    activations: Literal["dynamic", "weight-only"] = field(
        "dynamic", "int8: also quantize activations per call (int8 GEMM) or keep them fp32")
    activation_scales: Literal["token", "auto", "tensor"] = field(
        "token", "int8 GEMM: one activation scale per token (most accurate, a few extra passes), one per call "
                 "(fastest), or auto: per token only in layers where one scale per call errs 2x more on calibration data")
    smooth_alpha: float | None = field(
        None, "int8 GEMM: SmoothQuant migration strength in [0, 1] (0: off); default: the alpha of 0, 0.1 .. 1 whose "
              "int8 output errs least on calibration data, chosen per layer")
    calibration: Literal["rtn", "gptq"] = field("rtn", "round-to-nearest, or GPTQ (Frantar et al. 2022) on calibration data")
    calibration_samples: int = field(128, "examples from the training split used for calibration and layer timing")
    embeddings: bool = field(True, "quantize embedding tables too (int8 / int4 rows with their own scales)")
    prune: float = field(0.0, "fraction of weights (unstructured, 2:4) or MLP neurons / channels (structured) to remove")
    prune_kind: Literal["unstructured", "structured", "2:4"] = field("unstructured", "what pruning removes")
    prune_units: Literal["mlp", "heads", "channels"] = field(
        "mlp", "what --prune-kind structured removes: MLP neurons, attention heads (BERT / GPT-2) or convolution "
               "channels (the digits CNN)")
    finetune_epochs: int = field(0, "epochs of fine-tuning after pruning")
    lr: float | None = field(None, "learning rate of the fine-tune / distillation (default: the task's; at least 2e-4 for a narrower student)")
    distill_into: str | None = field(None, "student shape, e.g. 'layers=2' or 'layers=2,hidden=128,intermediate=512' (transformers; an encoder classifier also takes vocab=N: keep the N most frequent training tokens) or 'hidden=32,channels=8' (digits)")
    distill_epochs: int = field(3, "epochs of distillation")
    temperature: float = field(2.0, "softening temperature of teacher and student logits in distillation")
    distill_alpha: float = field(0.5, "weight of the soft (KL) loss against the hard-label loss in distillation")
    distill_augment: bool = field(True, "distillation also matches the teacher on augmented inputs that only it can label: "
                                        "mixup of images / random token replacement in texts (Beyer et al. 2022)")
    hidden_weight: float = field(1.0, "weight of hidden-state matching (transformers) in distillation; 0 turns it off")
    export: Literal["onnx"] | None = field(None, "also write model.onnx into the artifact, checked against PyTorch")
    seed: int = field(0, "seed of calibration sampling, fine-tuning and distillation")

    def __post_init__(self):
        check(self.group_size in GROUP_SIZES,
              f"--group-size {self.group_size} is not accepted; use one of {', '.join(map(str, GROUP_SIZES))}.")
        check(0.0 <= self.prune < 1.0, f"--prune {self.prune} is out of range; give a fraction in [0, 1).")
        check(self.prune_kind != "2:4" or self.prune in (0.0, 0.5),
              f"--prune {self.prune} does not fit --prune-kind 2:4, which removes exactly 0.5; pass --prune 0.5.")
        check(self.finetune_epochs >= 0, f"--finetune-epochs {self.finetune_epochs} must be 0 or more.")
        check(self.distill_epochs >= 1, f"--distill-epochs {self.distill_epochs} must be 1 or more.")
        check(1 <= self.calibration_samples <= 100_000, f"--calibration-samples {self.calibration_samples} is out of range; use 1..100000.")
        check(self.temperature > 0, f"--temperature {self.temperature} must be positive.")
        check(0.0 <= self.distill_alpha <= 1.0, f"--distill-alpha {self.distill_alpha} is out of range; use a value in [0, 1].")
        check(self.hidden_weight >= 0, f"--hidden-weight {self.hidden_weight} must be 0 or more.")
        if self.distill_into is not None:
            parse_student_spec(self.distill_into)
        check(self.smooth_alpha is None or 0.0 <= self.smooth_alpha <= 1.0,
              f"--smooth-alpha {self.smooth_alpha} is out of range; give a value in [0, 1], or leave it out to search per layer.")
        check(self.lr is None or self.lr > 0, f"--lr {self.lr} must be positive.")
        check(self.calibration == "rtn" or self.quantize is not None, "--calibration gptq needs --quantize int8 or int4.")

    @property
    def student_sizes(self) -> dict[str, int]:
        return parse_student_spec(self.distill_into) if self.distill_into else {}

    @property
    def bits(self) -> int:
        return 4 if self.quantize == "int4" else 8

    @property
    def resolved_granularity(self) -> str:
        return self.granularity or ("group" if self.quantize == "int4" else "channel")

    @property
    def steps(self) -> list[str]:
        out = []
        if self.distill_into:
            out.append("distill")
        if self.prune > 0:
            out.append("prune")
        if self.quantize:
            out.append("quantize")
        return out


def parse_student_spec(spec: str) -> dict[str, int]:
    """'layers=2,hidden=128' -> {'layers': 2, 'hidden': 128}; which keys a model accepts is checked by distill."""
    out: dict[str, int] = {}
    for part in spec.split(","):
        key, sep, value = (x.strip() for x in part.partition("="))
        check(bool(sep and key), f"--distill-into {spec!r} is not accepted: {part.strip()!r} is not KEY=NUMBER; "
                                 "write e.g. 'layers=2,hidden=128' or 'hidden=32,channels=8'.")
        check(value.isdigit() and int(value) >= 1,
              f"--distill-into {spec!r} is not accepted: {key}={value!r} needs a positive whole number.")
        check(key not in out, f"--distill-into {spec!r} names {key!r} twice; give each size once.")
        out[key] = int(value)
    return out
