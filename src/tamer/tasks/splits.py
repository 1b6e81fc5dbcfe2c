"""Seeded train / validation / test splits."""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle 0..n-1 with `seed` and cut it into train / val / test; each part keeps at least one example."""
    if n < 3:
        raise DataError(f"the dataset has {n} example(s); at least 3 are needed for train, validation and test splits.")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]
