"""The single-process loop: determinism, early stopping, L1, optimizers, checkpoints."""
import torch

import tamer


def _weights(art):
    return art.state_dict()


def test_same_seed_gives_identical_weights_and_id(tmp_path):
    a = tamer.train("digits", epochs=2, seed=7, out=tmp_path / "a", progress=False)
    b = tamer.train("digits", epochs=2, seed=7, out=tmp_path / "b", progress=False)
    c = tamer.train("digits", epochs=2, seed=8, out=tmp_path / "c", progress=False)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.id == b.id
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert a.id != c.id


def test_learning_curve_and_metrics_are_recorded(tmp_path):
    art = tamer.train("digits", epochs=3, out=tmp_path / "a", progress=False)
    curve = art.manifest["training"]["learning_curve"]
    assert [row["epoch"] for row in curve] == [1, 2, 3]
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]
    test = art.metrics["test"]
    assert 0 <= test["accuracy"] <= 1 and len(test["confusion_matrix"]) == 10
    assert sum(map(sum, test["confusion_matrix"])) == art.manifest["training"]["sizes"]["test"]


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    # a learning rate far too high makes validation stop improving: patience 1 must stop well before 30 epochs
    art = tamer.train("digits", epochs=30, lr=0.5, optimizer="sgd", patience=1, out=tmp_path / "a", progress=False)
    t = art.manifest["training"]
    curve = t["learning_curve"]
    assert t["stopped_early"] and len(curve) < 30
    best = max(curve, key=lambda r: r["val_accuracy"])
    assert t["best_epoch"] == best["epoch"]


def test_l1_penalty_shrinks_weights(tmp_path):
    plain = tamer.train("digits", epochs=3, out=tmp_path / "a", progress=False)
    sparse = tamer.train("digits", epochs=3, l1=1e-3, out=tmp_path / "b", progress=False)
    l1 = lambda art: sum(v.abs().sum().item() for k, v in art.state_dict().items() if v.dim() > 1)
    assert l1(sparse) < 0.8 * l1(plain)


def test_sgd_trains(tmp_path):
    art = tamer.train("digits", epochs=5, optimizer="sgd", lr=0.05, out=tmp_path / "a", progress=False)
    assert art.metrics["test"]["accuracy"] > 0.8


def test_resume_continues_exactly(tmp_path):
    opts = dict(patience=0, scheduler="constant", progress=False)
    full = tamer.train("digits", epochs=4, out=tmp_path / "full", checkpoint_dir=str(tmp_path / "ck1"), **opts)
    # a run that ended after 2 epochs, resumed to 4: the same weights as the uninterrupted run
    tamer.train("digits", epochs=2, out=tmp_path / "half", checkpoint_dir=str(tmp_path / "ck2"), **opts)
    resumed = tamer.train("digits", epochs=4, resume=True, out=tmp_path / "resumed",
                          checkpoint_dir=str(tmp_path / "ck2"), **opts)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
