"""Adversarial training raises PGD robust accuracy on digits (epsilon 0.2, pixels in [0, 1])."""
import pytest

import tamer


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_hardening_raises_pgd_robust_accuracy(digits_artifact, tmp_path, method):
    child = tamer.harden(digits_artifact, method=method, epochs=12, out=tmp_path / method, progress=False)
    before, after = child.report.before, child.report.after
    assert after["robust_accuracy"] > before["robust_accuracy"] + 0.2
    assert after["clean_accuracy"] > before["clean_accuracy"] - 0.1
