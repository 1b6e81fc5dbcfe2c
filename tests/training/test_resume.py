"""Checkpoints: a run stopped mid-epoch and resumed ends with exactly the weights of an uninterrupted run."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import tamer
from tamer.tasks import make_task

SMALL = {"channels": 4, "hidden": 16}
OPTIONS = {"epochs": 2, "batch_size": 64, "lr": 0.01}


class Stop(Exception):
    pass


def stopping_task(after_steps: int):
    """A digits task whose training loss raises after `after_steps` steps, as if the process were killed."""
    task = make_task("digits", SMALL)
    loss, calls = task.loss, {"n": 0}

    def failing(outputs, batch):
        if outputs.requires_grad:
            calls["n"] += 1
            if calls["n"] > after_steps:
                raise Stop
        return loss(outputs, batch)

    task.loss = failing
    return task


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_resume_mid_epoch_is_exact(tmp_path):
    whole = tamer.train("digits", out=tmp_path / "whole", progress=False, **SMALL, **OPTIONS)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Stop):  # stops in epoch 2; last checkpoint at global step 25 (mid-epoch, with dropout)
        tamer.train(stopping_task(27), out=tmp_path / "cut", progress=False, checkpoint_dir=str(ckpt),
                    checkpoint_every=5, **OPTIONS)
    assert (ckpt / "latest").read_text() == "step-00000025" and not (tmp_path / "cut").exists()
    resumed = tamer.train("digits", out=tmp_path / "resumed", progress=False, checkpoint_dir=str(ckpt), resume=True,
                          checkpoint_every=5, **SMALL, **OPTIONS)
    a, b = weights(whole.path), weights(resumed.path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = lambda art: [r["train_loss"] for r in art.manifest["training"]["learning_curve"]]  # noqa: E731
    assert curve(whole) == pytest.approx(curve(resumed), abs=1e-12)


def test_accumulation_matches_one_big_batch(tmp_path):
    """--accumulate 4 splits each global batch of 64 into 4 micro-batches; the update is the same."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from dist_worker import run

    one = run(str(tmp_path / "one"), {**OPTIONS, "epochs": 1})
    four = run(str(tmp_path / "four"), {**OPTIONS, "epochs": 1, "accumulate": 4})
    a, b = weights(one.path), weights(four.path)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_resume_without_checkpoint_and_bad_options_exit_2(tmp_path, capsys):
    from tamer.cli import main

    out = tmp_path / "a"
    base = ["train", "digits", "--epochs", "1", "--quiet", "--out", str(out)]
    cases = [["--resume", "--checkpoint-dir", str(tmp_path / "none")], ["--nproc", "0"], ["--strategy", "zero"],
             ["--accumulate", "0"], ["--nnodes", "2"], ["--nnodes", "2", "--rdzv", "nohost"], ["--max-restarts", "-1"],
             ["--node-rank", "3"], ["--timeout", "0"], ["--checkpoint-every", "-2"], ["--batch-size", "1", "--accumulate", "2"]]
    for extra in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert "tamer: error:" in err and "Traceback" not in err, (extra, err)
        assert not out.exists()
