"""The drift test: is `current` drawn from the same distribution as `reference`?

Tables: each column is tested on its own (Kolmogorov-Smirnov for numbers, chi-squared for categories; the PSI is
reported beside), the p-values are corrected across columns (Holm by default, or Benjamini-Hochberg), and the
deciding p-value is the smallest corrected one: drift when some column's corrected p-value is <= alpha.
Text and arrays: two tests on the same features (an artifact's embeddings, TF-IDF words or raw values): the MMD
permutation test (drift_mmd.py) and the domain classifier (drift_domain.py); the deciding p-value is their
Bonferroni-combined minimum, min(1, 2 min(p_mmd, p_auc)), so the verdict's false-alarm rate stays <= alpha."""
from __future__ import annotations

import time
from typing import Any

from ..errors import UsageError
from ..progress import progress_bar
from .drift_config import DriftConfig
from .drift_data import DriftData, check_comparable
from .drift_domain import domain_classifier_test
from .drift_features import artifact_embeddings, word_features
from .drift_mmd import mmd_test, tile_count
from .drift_report import DriftReport
from .drift_tabular import table_tests

TABLE_RULE = "the smallest {correction}-corrected p-value over columns"
KERNEL_RULE = "min(1, 2 * min(p_mmd, p_domain)): Bonferroni over the MMD and domain-classifier tests"


def _tabular(reference: DriftData, current: DriftData, config: DriftConfig) -> dict[str, Any]:
    columns = table_tests(reference.table, {k: current.table[k] for k in reference.table}, config.psi_bins,
                          config.correction)
    for c in columns:
        c["drift"] = c["adjusted_p_value"] <= config.alpha
    tests = [{"name": f"{c['column']} ({c['test']})", "statistic": c["statistic"], "p_value": c["p_value"],
              "adjusted_p_value": c["adjusted_p_value"], "psi": c["psi"], "drift": c["drift"]} for c in columns]
    p_value = min(c["adjusted_p_value"] for c in columns)
    name = "Holm" if config.correction == "holm" else "Benjamini-Hochberg"
    return {"columns": columns, "tests": tests, "p_value": p_value, "features": "columns",
            "rule": TABLE_RULE.format(correction=name)}


def features_of(reference: DriftData, current: DriftData, config: DriftConfig, artifact=None, progress: bool = False):
    """(reference rows, current rows, what they are) for text and arrays, as `config.features` asks."""
    choice = config.features
    if choice == "auto":
        choice = "artifact" if artifact is not None else ("words" if reference.kind == "text" else "raw")
    if choice == "artifact":
        if artifact is None:
            raise UsageError("--features artifact needs --artifact ARTIFACT; or use --features words (text) or raw.")
        with progress_bar(progress) as bar:
            job = bar.add_task("embedding", total=reference.rows + current.rows)
            step = lambda k: bar.update(job, advance=k)  # noqa: E731
            x = artifact_embeddings(artifact, reference.texts if reference.kind == "text" else reference.array,
                                    config.batch_size, step)
            y = artifact_embeddings(artifact, current.texts if current.kind == "text" else current.array,
                                    config.batch_size, step)
        return x, y, f"embeddings of artifact {artifact.id}"
    if choice == "words":
        if reference.kind != "text":
            raise UsageError(f"--features words needs text (.txt) data; {reference.path!r} is {reference.kind}.")
        x, y = word_features(reference.texts, current.texts)
        return x, y, "words (TF-IDF)"
    if reference.kind != "array":
        raise UsageError(f"--features raw needs arrays (.npy); {reference.path!r} is {reference.kind} (use words or "
                         f"artifact).")
    return reference.array, current.array, "raw values"


def kernel_tests(x, y, config: DriftConfig, progress: bool = False) -> dict[str, Any]:
    """The MMD permutation test and the domain classifier on the same rows, and their combined verdict."""
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        job = bar.add_task("MMD tiles", total=tile_count(x.shape[0] + y.shape[0], config.tile_rows))
        mmd = mmd_test(x, y, config.permutations, config.bandwidth, config.tile_rows, config.seed,
                       on_tile=lambda k: bar.update(job, advance=k))
    middle = time.perf_counter()
    domain = domain_classifier_test(x, y, config.folds, config.seed)
    seconds = {"mmd": middle - start, "domain": time.perf_counter() - middle}
    p_value = min(1.0, 2 * min(mmd.p_value, domain.p_value))
    tests = [{"name": "MMD (Gaussian kernel, permutations)", "statistic": mmd.statistic, "p_value": mmd.p_value,
              "adjusted_p_value": min(1.0, 2 * mmd.p_value)},
             {"name": "domain classifier AUC (Mann-Whitney)", "statistic": domain.auc, "p_value": domain.p_value,
              "adjusted_p_value": min(1.0, 2 * domain.p_value)}]
    for t in tests:
        t["drift"] = t["adjusted_p_value"] <= config.alpha
    return {"mmd": {**mmd.to_dict(), "seconds": seconds["mmd"]}, "domain": {**domain.to_dict(), "seconds": seconds["domain"]},
            "tests": tests, "p_value": p_value, "rule": KERNEL_RULE}


def detect_drift(reference: DriftData, current: DriftData, config: DriftConfig | None = None, artifact=None,
                 progress: bool = False) -> DriftReport:
    """Test `current` against `reference` (module docstring): a DriftReport whose `drift` is the verdict."""
    config = config or DriftConfig()
    start = time.perf_counter()
    check_comparable(reference, current)
    if reference.kind == "tabular":
        if config.features != "auto":
            raise UsageError(f"--features {config.features} applies to text and arrays; a table is tested column by "
                             f"column (leave --features auto).")
        found = _tabular(reference, current, config)
    else:
        x, y, what = features_of(reference, current, config, artifact, progress)
        found = {**kernel_tests(x, y, config, progress), "features": what}
    return DriftReport(reference=reference.path, current=current.path, kind=reference.kind, features=found["features"],
                       rows_reference=reference.rows, rows_current=current.rows,
                       drift=bool(found["p_value"] <= config.alpha), p_value=float(found["p_value"]),
                       alpha=config.alpha, rule=found["rule"], correction=config.correction, tests=found["tests"],
                       columns=found.get("columns", []), mmd=found.get("mmd", {}), domain=found.get("domain", {}),
                       artifact=str(artifact.path) if artifact is not None else "",
                       seconds=time.perf_counter() - start)
