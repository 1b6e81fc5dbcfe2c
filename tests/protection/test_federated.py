"""FedAvg: the weighted average, identical clients == centralised training, one full-batch step == centralised GD."""
import copy
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from tamer.cli import main
from tamer.protection.federated import FederateConfig, deal, fedavg, run_rounds
from tamer.tasks import ListDataset, Splits, Task, register_task


@register_task
class _LinearTask(Task):
    """Logistic regression on fixed synthetic data: no dropout, so training is a pure function of the data."""

    name = "test-protect-linear"

    @dataclass(frozen=True)
    class Config:
        data: str | None = None

    def prepare(self, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(90, 5, generator=g)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
        rows = [{"input": x[i], "labels": int(y[i])} for i in range(90)]
        return Splits(ListDataset(rows[:60]), ListDataset(rows[60:75]), ListDataset(rows[75:]))

    def collate(self, examples):
        return {"input": torch.stack([e["input"] for e in examples]), "labels": torch.tensor([e["labels"] for e in examples])}

    def model_config(self):
        return {"in": 5, "classes": 3}

    def build_model(self, model_config):
        torch.manual_seed(0)
        return nn.Linear(model_config["in"], model_config["classes"])


def _setup():
    task = _LinearTask()
    return task, task.prepare(0).train, task.build_model(task.model_config())


def test_fedavg_is_the_sample_weighted_mean():
    a, b = {"w": torch.tensor([0.0, 3.0]), "n": torch.tensor(1)}, {"w": torch.tensor([3.0, 0.0]), "n": torch.tensor(2)}
    out = fedavg([a, b], [1, 2])
    assert torch.allclose(out["w"], torch.tensor([2.0, 1.0])) and out["n"] == 1


def test_identical_clients_equal_centralised_training():
    task, train, model = _setup()
    config = FederateConfig(clients=4, rounds=3, local_epochs=2, batch_size=8, lr=0.1, momentum=0.9)
    federated = run_rounds(task, copy.deepcopy(model), [train] * 4, config)
    centralised = run_rounds(task, copy.deepcopy(model), [train], config)  # one client holding all the data
    for name, value in federated.state_dict().items():
        assert torch.allclose(value, centralised.state_dict()[name], atol=1e-6), name


def test_one_full_batch_step_per_round_equals_centralised_gradient_descent():
    task, train, model = _setup()
    shards = [ListDataset(train.examples[:10]), ListDataset(train.examples[10:35]), ListDataset(train.examples[35:])]
    config = FederateConfig(rounds=4, local_epochs=1, batch_size=1000, lr=0.5, momentum=0.0)
    federated = run_rounds(task, copy.deepcopy(model), shards, config)
    reference = copy.deepcopy(model)  # plain gradient descent on the union, written out by hand
    batch = task.collate(train.examples)
    for _ in range(4):
        reference.zero_grad()
        nn.functional.cross_entropy(reference(batch["input"]), batch["labels"]).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.5 * p.grad
    for name, value in federated.state_dict().items():
        assert torch.allclose(value, reference.state_dict()[name], atol=1e-5), name
    equal = _equal_weight_run(task, model, shards, config)  # the sample weights matter
    assert not torch.allclose(equal.weight, federated.weight, atol=1e-4)


def _equal_weight_run(task, model, shards, config):
    from tamer.protection import federated

    original = federated.fedavg
    federated.fedavg = lambda states, weights: original(states, [1] * len(states))
    try:
        return run_rounds(task, copy.deepcopy(model), shards, config)
    finally:
        federated.fedavg = original


@pytest.mark.parametrize("split,alpha", [("iid", 1.0), ("dirichlet", 0.1), ("dirichlet", 100.0)])
def test_deal_covers_every_example_once(split, alpha):
    labels = np.repeat(np.arange(10), 50)
    shards = deal(labels, 7, split, alpha, seed=3)
    joined = np.sort(np.concatenate(shards))
    assert np.array_equal(joined, np.arange(500))
    if split == "iid":
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # skew: share of each client's most common label, averaged; small alpha -> near 1, large alpha -> near 0.1
    top = np.mean([np.bincount(labels[s], minlength=10).max() / max(1, len(s)) for s in shards if len(s)])
    if alpha == 0.1:
        assert top > 0.5
    if alpha == 100.0:
        assert top < 0.25


def test_cli_federate_digits_and_bad_options(tmp_path, capsys):
    out = tmp_path / "fed"
    assert main(["federate", "digits", "--clients", "3", "--rounds", "2", "--split", "dirichlet", "--dirichlet-alpha", "0.5",
                 "--channels", "8", "--hidden", "16", "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["report"]["history"]) == 2 and payload["report"]["clients"] == 3
    assert main(["evaluate", str(out), "--json"]) == 0
    capsys.readouterr()
    for bad in (["--clients", "0"], ["--split", "random"], ["--dirichlet-alpha", "0"], ["--max-update-norm", "0"], ["--rounds", "x"], ["--epsilon", "-1"],
                ["--no-such-option", "1"], ["--private", "--max-grad-norm", "1"]):
        assert main(["federate", "digits", "--out", str(tmp_path / "x"), *bad]) == 2, bad
        assert "error" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_federate_clips_updates_by_its_own_name(tmp_path):
    """--max-grad-norm is DP-SGD's per-example clipping; federate clips each client's update (--max-update-norm)."""
    import tamer
    from tamer.errors import UsageError

    with pytest.raises(UsageError, match="max_update_norm"):
        tamer.federate("digits", out=tmp_path / "f", private=True, max_grad_norm=1.0, progress=False)
    assert not (tmp_path / "f").exists()


def test_fedavg_on_a_skewed_digits_split_learns_with_the_default_budget():
    """Dirichlet(0.5) shards, the default local epochs: the global model improves round over round to a sane accuracy
    (with one local epoch, 20 rounds reached only 0.64 on digits; a regression guard for the defaults)."""
    from torch.utils.data import Subset

    from tamer.tasks import make_task

    task = make_task("digits", {"channels": 8, "hidden": 32})
    splits = task.prepare(0)
    labels = np.asarray([splits.train[i]["labels"] for i in range(len(splits.train))])
    shards = deal(labels, 5, "dirichlet", 0.5, seed=0)
    assert np.mean([np.bincount(labels[s], minlength=10).max() / len(s) for s in shards]) > 0.2  # really skewed
    torch.manual_seed(0)
    model = task.build_model(task.model_config())
    history = []
    config = FederateConfig(clients=5, rounds=4, split="dirichlet", dirichlet_alpha=0.5)
    run_rounds(task, model, [Subset(splits.train, s.tolist()) for s in shards], config,
               after_round=lambda r: history.append(task.evaluate(model, splits.val)["accuracy"]))
    assert history[-1] > history[0] and history[-1] >= 0.85, history
