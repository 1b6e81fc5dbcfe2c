"""The task registry: built-ins, unknown names, and a user's own task (regression with MSE)."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import tamer
from tamer.errors import UsageError
from tamer.tasks import ListDataset, Splits, Task, make_task, register_task, task_names


def test_builtins_are_registered():
    assert {"digits", "text-classification", "causal-lm"} <= set(task_names())
    names = [t["name"] for t in tamer.list_tasks()]
    assert "digits" in names


def test_unknown_task_names_the_known_ones():
    with pytest.raises(UsageError, match="unknown task 'nope'.*digits"):
        make_task("nope")


def test_unknown_task_option_is_refused():
    with pytest.raises(UsageError, match="unknown option 'colour'"):
        make_task("digits", {"colour": 3})


@register_task
class LineTask(Task):
    """y = 3x - 1 with noise: a user's own regression task, trained with MSE."""

    name = "test-line"
    kind = "regression"
    metric = "mse"
    higher_is_better = False

    @dataclass(frozen=True)
    class Config:
        data: str | None = None

    def prepare(self, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(300, 1, generator=g) * 2 - 1
        y = 3 * x[:, 0] - 1 + 0.01 * torch.randn(300, generator=g)
        rows = [{"x": x[i], "labels": float(y[i])} for i in range(300)]
        return Splits(ListDataset(rows[:200]), ListDataset(rows[200:250]), ListDataset(rows[250:]))

    def collate(self, examples):
        return {"x": torch.stack([e["x"] for e in examples]), "labels": torch.tensor([e["labels"] for e in examples])}

    def model_config(self):
        return {"arch": "linear"}

    def build_model(self, model_config):
        class Lin(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(1, 1)

            def forward(self, x):
                return self.lin(x)

        return Lin()

    def train_defaults(self):
        return {"epochs": 60, "batch_size": 20, "lr": 0.05}


def test_user_task_trains_with_mse_to_the_closed_form(tmp_path):
    art = tamer.train("test-line", out=tmp_path / "a", progress=False, scheduler="constant", patience=0)
    sd = art.state_dict()
    assert sd["lin.weight"].item() == pytest.approx(3.0, abs=0.05)
    assert sd["lin.bias"].item() == pytest.approx(-1.0, abs=0.05)
    assert art.metrics["test"]["mse"] < 1e-3
    report = tamer.evaluate(art)
    assert report.metrics["mse"] == pytest.approx(art.metrics["test"]["mse"], rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_the_classification_meter_agrees_with_scikit_learn(seed):
    from sklearn.metrics import confusion_matrix, f1_score

    from tamer.tasks.meters import confusion_counts, macro_f1

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    labels, preds = rng.integers(0, k - 1, 200), rng.integers(0, k, 200)  # class k-1 never true, maybe never predicted
    confusion = confusion_counts(labels, preds, k)
    assert (confusion == confusion_matrix(labels, preds, labels=list(range(k)))).all()
    assert macro_f1(confusion) == pytest.approx(f1_score(labels, preds, labels=list(range(k)), average="macro", zero_division=0))
