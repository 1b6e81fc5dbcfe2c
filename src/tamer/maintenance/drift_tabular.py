"""Per-column drift tests for tables: two-sample Kolmogorov-Smirnov for numeric columns, chi-squared on the
2 x categories contingency table for the others (scipy.stats), the population stability index for both, and a
correction across columns: Holm (family-wise error under any dependence between columns) or Benjamini-Hochberg
(false discovery rate)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from scipy import stats

PSI_FLOOR = 1e-4  # an empty bin counts as this fraction, so the PSI's logarithm stays finite
RARE = 5  # categories seen fewer times than this in both tables together are pooled for the chi-squared test
MISSING = "(missing)"


def as_numbers(values: list[str]) -> np.ndarray | None:
    """The column as floats (empty cells as NaN), or None when a non-empty cell is not a number."""
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        v = v.strip()
        if not v:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            return None
    return out


def psi_from_fractions(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index sum_i (c_i - r_i) ln(c_i / r_i) over bins, fractions floored at PSI_FLOOR."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), PSI_FLOOR)
    c = np.maximum(np.asarray(current, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_bins(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), so each bin holds about 1 / bins of it."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return edges


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def numeric_column(name: str, ref: np.ndarray, cur: np.ndarray, bins: int) -> dict[str, Any]:
    r, c = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(r) == 0 or len(c) == 0:
        return {"column": name, "kind": "numeric", "test": "ks", "statistic": 0.0, "p_value": 1.0, "psi": 0.0,
                "note": "no numbers on one side", "bins": {}}
    ks = stats.ks_2samp(r, c)
    edges = numeric_bins(r, bins)
    rf, cf = _fractions(r, edges), _fractions(c, edges)
    labels = [f"< {edges[0]:.4g}"] + [f"{lo:.4g}..{hi:.4g}" for lo, hi in zip(edges[:-1], edges[1:])] + \
        [f">= {edges[-1]:.4g}"] if len(edges) else ["all"]
    return {"column": name, "kind": "numeric", "test": "ks", "statistic": float(ks.statistic),
            "p_value": float(ks.pvalue), "psi": psi_from_fractions(rf, cf),
            "mean_reference": float(r.mean()), "mean_current": float(c.mean()),
            "bins": {"labels": labels, "reference": rf.tolist(), "current": cf.tolist()}}


def categorical_column(name: str, ref: list[str], cur: list[str]) -> dict[str, Any]:
    ref = [v.strip() or MISSING for v in ref]
    cur = [v.strip() or MISSING for v in cur]
    cats = sorted(set(ref) | set(cur))
    rcount, ccount = Counter(ref), Counter(cur)
    rc = np.array([rcount[k] for k in cats], dtype=np.float64)
    cc = np.array([ccount[k] for k in cats], dtype=np.float64)
    psi = psi_from_fractions(rc / rc.sum(), cc / cc.sum())
    rare = (rc + cc) < RARE
    table = np.vstack([rc[~rare], cc[~rare]])
    if rare.any():
        table = np.hstack([table, [[rc[rare].sum()], [cc[rare].sum()]]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        statistic, p = 0.0, 1.0  # one category on both sides: nothing can differ
    else:
        res = stats.chi2_contingency(table, correction=False)
        statistic, p = float(res.statistic), float(res.pvalue)
    return {"column": name, "kind": "categorical", "test": "chi2", "statistic": statistic, "p_value": p, "psi": psi,
            "categories": len(cats),
            "bins": {"labels": cats[:30], "reference": (rc / rc.sum())[:30].tolist(),
                     "current": (cc / cc.sum())[:30].tolist()}}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): family-wise error control under any dependence."""
    k = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def adjust(p_values: list[float], correction: str) -> list[float]:
    """Adjusted p-values across columns: 'holm' or 'bh' (Benjamini and Hochberg 1995, scipy's
    false_discovery_control)."""
    if not p_values:
        return []
    if correction == "bh":
        return stats.false_discovery_control(np.asarray(p_values), method="bh").tolist()
    return holm(list(p_values))


def table_tests(reference: dict[str, list[str]], current: dict[str, list[str]], bins: int,
                correction: str) -> list[dict[str, Any]]:
    """One row per column: its test, statistic, p-value, corrected p-value and PSI. A column is numeric when every
    non-empty cell of both tables parses as a number."""
    rows = []
    for name in reference:
        r, c = as_numbers(reference[name]), as_numbers(current[name])
        if r is not None and c is not None and not (np.isnan(r).all() and np.isnan(c).all()):
            rows.append(numeric_column(name, r, c, bins))
        else:
            rows.append(categorical_column(name, reference[name], current[name]))
    for row, p in zip(rows, adjust([r["p_value"] for r in rows], correction)):
        row["adjusted_p_value"] = p if not math.isnan(p) else 1.0
    return rows
