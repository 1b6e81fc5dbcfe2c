"""The drift verb's options: one name per option in Python, CLI flags and recipes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, field


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = field(0.05, "significance level of the verdict (family-wise, after the correction)")
    correction: Literal["holm", "bh"] = field(
        "holm", "tabular: correction across columns, holm (family-wise error, any dependence) or bh "
                "(Benjamini-Hochberg false discovery rate)")
    features: Literal["auto", "artifact", "words", "raw"] = field(
        "auto", "text and arrays: the artifact's embeddings (auto when --artifact is given), words (TF-IDF) or raw "
                "values (flattened arrays); tabular data is always tested column by column")
    permutations: int = field(500, "MMD permutation test: random relabellings of the pooled rows")
    bandwidth: float | None = field(None, "Gaussian kernel width sigma; default the median pairwise distance")
    tile_rows: int = field(2048, "MMD: rows per kernel tile (memory grows with its square)")
    folds: int = field(5, "domain classifier: cross-validation folds")
    psi_bins: int = field(10, "population stability index: quantile bins of the reference, per numeric column")
    batch_size: int = field(64, "examples per embedding batch through the artifact")
    seed: int = field(0, "seed of the permutations, the bandwidth subsample and the folds")

    def __post_init__(self):
        check(0 < self.alpha < 1, f"--alpha {self.alpha} is out of range; use a value in (0, 1).")
        check(self.permutations >= 19, f"--permutations {self.permutations} is too few; use at least 19 (p >= 0.05 "
                                       f"is the smallest a test of 19 can reach).")
        check(self.bandwidth is None or self.bandwidth > 0, f"--bandwidth {self.bandwidth} is not accepted; use a value > 0.")
        check(16 <= self.tile_rows <= 65536, f"--tile-rows {self.tile_rows} is out of range; use 16..65536.")
        check(2 <= self.folds <= 20, f"--folds {self.folds} is out of range; use 2..20.")
        check(2 <= self.psi_bins <= 100, f"--psi-bins {self.psi_bins} is out of range; use 2..100.")
        check(1 <= self.batch_size <= 4096, f"--batch-size {self.batch_size} is out of range; use 1..4096.")
