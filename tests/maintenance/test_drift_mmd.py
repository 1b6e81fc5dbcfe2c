"""The chunked MMD permutation test against a direct numpy computation, chunked against unchunked, and its memory."""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from tamer.maintenance.drift_mmd import median_bandwidth, mmd_test


def direct_mmd2(x, y, sigma):
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) from the whole kernel matrix."""
    z = np.vstack([x, y])
    k = np.exp(-((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) / (2 * sigma**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_the_statistic_equals_the_direct_computation_and_the_bandwidth_is_the_median_distance():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(45, 5)) + 0.4
    result = mmd_test(x, y, permutations=99, tile_rows=16)
    z = np.vstack([x, y])
    distances = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(75, k=1)]
    assert result.bandwidth == pytest.approx(np.median(distances), rel=1e-12)
    assert result.statistic == pytest.approx(direct_mmd2(x, y, result.bandwidth), rel=1e-10, abs=1e-13)
    # sparse rows (TF-IDF) give the same number
    sparse = mmd_test(sp.csr_matrix(x), sp.csr_matrix(y), permutations=99, tile_rows=16)
    assert sparse.statistic == pytest.approx(result.statistic, rel=1e-10)


def test_each_permutation_is_the_exact_mmd_of_its_relabelling():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(9, 3))
    result = mmd_test(x, y, permutations=25, bandwidth=1.3, tile_rows=16, seed=4)
    z = np.vstack([x, y])
    perm_rng = np.random.default_rng(4)  # the test draws its relabellings in this order
    for null in result.null[:5]:
        mask = np.zeros(21, dtype=bool)
        mask[perm_rng.permutation(21)[:12]] = True
        assert null == pytest.approx(direct_mmd2(z[mask], z[~mask], 1.3), rel=1e-9, abs=1e-12)
    assert result.p_value == (1 + sum(v >= result.statistic for v in result.null)) / 26


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunking_gives_the_same_answer_as_one_tile(dtype):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 8)).astype(dtype), (rng.normal(size=(250, 8)) * 1.1).astype(dtype)
    small = mmd_test(x, y, permutations=200, tile_rows=64)
    whole = mmd_test(x, y, permutations=200, tile_rows=4096)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert small.statistic == pytest.approx(whole.statistic, abs=tol)
    assert np.allclose(small.null, whole.null, atol=tol, rtol=0)
    assert small.p_value == whole.p_value


def test_memory_grows_with_the_tile_not_with_the_kernel_matrix():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6000, 32)).astype(np.float32), rng.normal(size=(6000, 32)).astype(np.float32)
    tracemalloc.start()
    mmd_test(x, y, permutations=19, tile_rows=512)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full_kernel = 12000 * 12000 * 4
    assert peak < full_kernel / 10, peak  # rows, one 512 x 512 tile and the 12000 x 20 mask


def test_a_shift_is_detected_and_the_same_distribution_is_not():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 10))
    assert mmd_test(x, rng.normal(size=(200, 10)) + 0.5, permutations=199).p_value <= 0.01
    assert median_bandwidth(np.ones((5, 3))) == 1.0  # coinciding rows: no zero width
