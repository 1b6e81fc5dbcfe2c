"""The model-randomization sanity check (Adebayo et al. 2018) gives a verdict: the rank correlation over the features
where input and baseline differ, recomputed here with scipy, against the documented threshold; a model whose
randomization cannot change the rank order fails, one whose attributions come from its weights passes."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import tamer
from tamer.artifact import Artifact
from tamer.explanation import faithfulness
from tamer.explanation.config import ExplainConfig
from tamer.explanation.explainer import attribute_items
from tamer.explanation.faithfulness import SANITY_THRESHOLD
from tamer.explanation.subjects import Item, ImageSubject


class Squares(nn.Module):
    """logits = w * sum(x^2): with a zero baseline, IG gives pixel i the share x_i^2 / sum(x^2) of the output change
    under any weights, so randomizing them cannot change the rank order of |attributions|."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.05, -0.05]))

    def forward(self, pixels):
        return self.w * pixels.pow(2).flatten(1).sum(1, keepdim=True)


class Linear(nn.Module):
    """logits = W x: on images whose lit pixels are all equally bright, IG's rank order is that of the weights."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 2, bias=False)
        nn.init.normal_(self.lin.weight, std=0.5, generator=torch.Generator().manual_seed(1))

    def forward(self, pixels):
        return self.lin(pixels.flatten(1))


def _images(n: int, seed: int, binary: bool) -> list[Item]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lit = rng.random((1, 8, 8)) < 0.5  # half the pixels equal the zero baseline: they must not count
        values = np.ones((1, 8, 8)) if binary else rng.uniform(0.1, 1.0, (1, 8, 8))
        out.append(Item(f"#{i}", pixels=torch.tensor(np.where(lit, values, 0.0), dtype=torch.float32)))
    return out


def _check(task, model, items, seed=0):
    """Run the sanity check as the explainer does, keep what it re-explained, and recompute it with scipy."""
    subject = ImageSubject(task, model)
    config = ExplainConfig(index=(0,), n_steps=50, max_steps=50)
    targets = [0] * len(items)
    original, _ = attribute_items(subject, items, targets, config, "zero")
    seen = []

    def explain_with(m):
        seen.append(attribute_items(subject.with_model(m), items, targets, config, "zero")[0])
        return seen[-1]

    differs = subject.differs(items, "zero")
    result = faithfulness.sanity_check(model, explain_with, original, differs, "full", seed)
    expected = []
    for a, b, it in zip(original, seen[-1], items):
        keep = it.pixels.flatten().numpy() != 0
        expected.append(spearmanr(np.abs(np.asarray(a)[keep]), np.abs(np.asarray(b)[keep])).statistic)
    return result, float(np.mean(expected))


@pytest.mark.parametrize("model,binary,verdict", [(Squares, False, "fail"), (Linear, True, "pass")])
def test_verdict_is_the_threshold_on_scipy_spearman_over_differing_features(explain_digits, model, binary, verdict):
    task, _ = explain_digits.load_model()
    result, rho = _check(task, model(), _images(6, 0, binary))
    assert result["spearman_abs"] == pytest.approx(rho, abs=1e-9)
    assert result["verdict"] == ("fail" if rho > SANITY_THRESHOLD else "pass") == verdict
    assert result["threshold"] == SANITY_THRESHOLD and 20 < result["features"] < 44
    if verdict == "fail":
        assert rho > 0.99  # the rank order is the input's, whatever the weights
        assert "reflect the input more than" in result["meaning"]


def test_a_model_that_cannot_fail_gets_fail_in_the_report_json_and_page(explain_digits, tmp_path, monkeypatch, capsys):
    load = Artifact.load_model
    monkeypatch.setattr(Artifact, "load_model", lambda self: (load(self)[0], Squares()))
    from tamer.cli import main

    assert main(["explain", str(explain_digits.path), "--index", "0,1,2", "--out", str(tmp_path / "e"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sanity"]["verdict"] == "fail" and out["sanity"]["spearman_abs"] > SANITY_THRESHOLD
    assert out["metrics"]["sanity_passed"] == 0.0
    assert "FAILS" in tamer.explain(explain_digits, index=(0, 1, 2), out=tmp_path / "e2", progress=False).summary()
    assert "reflect the input more than what the model learned" in (tmp_path / "e" / "explanation.html").read_text()


def test_ties_share_their_mean_rank_like_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 12).astype(float), rng.integers(0, 4, 12).astype(float)
        assert faithfulness.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
