"""ExplainConfig: what to explain, how, and how hard to check it. One name per option in Python, CLI and recipes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, field

METHODS = ("ig", "saliency", "gradxinput", "occlusion", "shap", "lime")
GLOBAL_EXAMPLES = 100  # what --global asks for: the global view over this many test examples
GLOBAL_FROM_BATCH = 8  # a batch of at least this many inputs is aggregated into the global view, no extra runs


@dataclass(frozen=True)
class ExplainConfig:
    input: str | None = field(None, "one text to explain (text tasks), or 64 comma-separated pixel values (digits)")
    input_file: str | None = field(None, "a file of inputs: one text per line, or a digits .npy/.npz (N x 8 x 8 or N x 64)")
    index: tuple[int, ...] = field((), "explain example N (or N,M,...) of the artifact's test split")
    method: Literal["ig", "saliency", "gradxinput", "occlusion", "shap", "lime"] = field("ig", "attribution method")
    target: str | None = field(None, "class (index or label) or next token id to explain; default: the prediction")
    baseline: Literal["zero", "pad", "mask", "blur"] | None = field(
        None, "what 'absent' means: images zero|blur|mask (mean gray), text pad|mask|zero (zero embedding); default zero / pad")
    n_steps: int = field(50, "integrated-gradients steps to start with")
    max_steps: int = field(800, "cap for the steps that are raised automatically while completeness is above tolerance")
    tolerance: float = field(1e-3, "completeness tolerance: |sum(attr) - (F(x) - F(baseline))| / |F(x) - F(baseline)|")
    n_samples: int = field(200, "perturbed samples per input for shap and lime")
    seed: int = field(0, "seed of shap / lime sampling, the random baseline and the sanity check")
    batch_size: int = field(32, "inputs explained per Captum call")
    faithfulness: bool = field(True, "measure deletion / insertion (images) or comprehensiveness / sufficiency (text)")
    sanity: Literal["none", "full", "cascading"] = field("full", "model-randomization sanity check (Adebayo et al. 2018)")
    sanity_examples: int = field(8, "inputs the sanity check re-explains")
    global_examples: int = field(0, "test examples aggregated into the per-class global view (--global: 100; 0: none, "
                                    "though a batch of 8 or more inputs is aggregated into one at no extra cost)")
    top_k: int = field(10, "tokens per class listed in the global view")

    def __post_init__(self):
        sources = sum(x is not None and x != () for x in (self.input, self.input_file, self.index))
        check(sources <= 1, "give only one of --input, --input-file and --index.")
        check(all(i >= 0 for i in self.index), f"--index {','.join(map(str, self.index))} is not accepted; use indices >= 0.")
        check(1 <= self.n_steps <= 10_000, f"--n-steps {self.n_steps} is out of range; use 1..10000.")
        check(self.n_steps <= self.max_steps <= 100_000, f"--max-steps {self.max_steps} is out of range; use --n-steps..100000.")
        check(0 < self.tolerance < 1, f"--tolerance {self.tolerance} is out of range; use a value in (0, 1).")
        check(10 <= self.n_samples <= 100_000, f"--n-samples {self.n_samples} is out of range; use 10..100000.")
        check(1 <= self.batch_size <= 4096, f"--batch-size {self.batch_size} is out of range; use 1..4096.")
        check(1 <= self.sanity_examples <= 1000, f"--sanity-examples {self.sanity_examples} is out of range; use 1..1000.")
        check(0 <= self.global_examples <= 100_000, f"--global-examples {self.global_examples} is out of range; use 0..100000.")
        check(1 <= self.top_k <= 1000, f"--top-k {self.top_k} is out of range; use 1..1000.")

    @property
    def has_source(self) -> bool:
        return self.input is not None or self.input_file is not None or bool(self.index)
