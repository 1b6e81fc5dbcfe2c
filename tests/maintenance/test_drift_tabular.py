"""Per-column tests on tables: PSI against its closed form, KS / chi-squared against scipy, Holm and BH by hand,
a shifted column flagged and the others not."""
import csv
import math

import numpy as np
import pytest
from scipy import stats

import tamer
from tamer.maintenance.drift_tabular import adjust, psi_from_fractions, table_tests


def test_psi_equals_its_closed_form_on_a_hand_example():
    # reference half and half, current a quarter and three quarters
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi_from_fractions([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.27465, abs=1e-5)
    rows = table_tests({"c": ["a", "b"] * 50}, {"c": ["a"] * 25 + ["b"] * 75}, bins=10, correction="holm")
    assert rows[0]["psi"] == pytest.approx(expected, rel=1e-12) and rows[0]["test"] == "chi2"


def test_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])  # 4*.01, max(3*.03, 2*.04), 3*.03, .5
    assert adjust(p, "bh") == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


def test_ks_and_chi_squared_are_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.2, 1, size=250)
    rows = table_tests({"x": [str(v) for v in a], "k": ["u"] * 100 + ["v"] * 200},
                       {"x": [str(v) for v in b], "k": ["u"] * 125 + ["v"] * 125}, bins=10, correction="holm")
    ks = stats.ks_2samp(a, b)
    assert rows[0]["test"] == "ks" and rows[0]["p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
    chi = stats.chi2_contingency([[100, 200], [125, 125]], correction=False)
    assert rows[1]["test"] == "chi2" and rows[1]["p_value"] == pytest.approx(chi.pvalue, rel=1e-9)


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "income", "city"])
        w.writerows(rows)
    return str(path)


def test_a_shifted_column_is_flagged_and_only_it(tmp_path):
    rng = np.random.default_rng(1)

    def table(n, shift):
        return [(f"{rng.normal(40, 10):.1f}", f"{rng.lognormal(10 + shift, 0.5):.0f}", rng.choice(["a", "b", "c"]))
                for _ in range(n)]

    ref, same, moved = _write(tmp_path / "r.csv", table(600, 0)), _write(tmp_path / "s.csv", table(600, 0)), \
        _write(tmp_path / "m.csv", table(600, 0.3))
    report = tamer.drift(ref, moved)
    assert report.drift and report.p_value <= 0.05
    assert [c["column"] for c in report.columns if c["drift"]] == ["income"]
    assert report.p_value == min(c["adjusted_p_value"] for c in report.columns)
    assert next(c for c in report.columns if c["column"] == "income")["psi"] > 0.25
    assert not tamer.drift(ref, same).drift
