"""The domain-classifier two-sample test (Lopez-Paz and Oquab 2017, "Revisiting Classifier Two-Sample Tests"): a
logistic regression learns to tell current rows from reference rows; under no drift its held-out scores carry no
signal, so its AUC is 0.5. Every row is scored by a model that did not see it (stratified k-fold), the AUC is taken
over all held-out scores, and the p-value is the one-sided Mann-Whitney U test of current scores above reference
scores (U / (n m) is that AUC). Within a fold the labels are exchangeable under no drift, so each fold's test is
exact; pooling the folds' scores (their models differ a little) is the usual approximation, and its false-alarm
rate is measured in tests/maintenance and bench/drift.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import mannwhitneyu

ROC_POINTS = 200  # points of the ROC curve kept for the report


@dataclass
class DomainResult:
    auc: float
    p_value: float
    folds: int
    fpr: list[float] = field(default_factory=list)
    tpr: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "p_value": self.p_value, "folds": self.folds, "classifier": "logistic regression",
                "test": "Mann-Whitney U on held-out scores (one-sided)",
                "roc": {"fpr": [round(v, 5) for v in self.fpr], "tpr": [round(v, 5) for v in self.tpr]}}


def domain_classifier_test(x, y, folds: int = 5, seed: int = 0) -> DomainResult:
    """Cross-validated AUC of a logistic regression telling rows `y` (current) from rows `x` (reference), with
    its Mann-Whitney p-value. Dense features are standardized within each fold; sparse ones (TF-IDF) are not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_curve
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sparse = sp.issparse(x) or sp.issparse(y)
    z = sp.vstack([sp.csr_matrix(x), sp.csr_matrix(y)]).tocsr() if sparse else np.concatenate([x, y])
    labels = np.r_[np.zeros(x.shape[0], dtype=int), np.ones(y.shape[0], dtype=int)]
    folds = min(folds, x.shape[0], y.shape[0])
    model = make_pipeline(StandardScaler(with_mean=not sparse),
                          LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, z, labels, cv=cv, method="decision_function")
    test = mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater")
    auc = float(test.statistic) / (x.shape[0] * y.shape[0])
    fpr, tpr, _ = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).round().astype(int))
    return DomainResult(auc, float(test.pvalue), folds, fpr[keep].tolist(), tpr[keep].tolist())
