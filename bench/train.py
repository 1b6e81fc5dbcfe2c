"""Bench for `train`: digits accuracy and time, tamer's loop vs a hand-written PyTorch loop, MiniLM on yelp/amazon.

    .venv/bin/python bench/train.py [--json] [--skip-minilm] [--threads 2]

Peers run in the same process and run, interleaved, so the machine's load hits both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import tamer
from tamer.tasks import make_task
from tamer.training import TrainConfig
from tamer.training.loop import fit

SENTIMENT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment"


def plain_loop(task, splits, epochs: int, batch_size: int, lr: float, seed: int, checkpoint: Path | None = None) -> float:
    """What people write by hand: shuffle, forward, loss, backward, step; validate each epoch (and, with
    `checkpoint`, save model and optimizer there atomically each epoch, as tamer does). Returns seconds."""
    torch.manual_seed(seed)
    model = task.build_model(task.model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        g = torch.Generator().manual_seed(seed + epoch)
        for batch in DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=g, collate_fn=task.collate):
            loss = task.loss(task.forward(model, batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for batch in DataLoader(splits.val, batch_size=256, collate_fn=task.collate):
                task.forward(model, batch).argmax(-1)
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch}, checkpoint / "tmp.pt")
            os.replace(checkpoint / "tmp.pt", checkpoint / "last.pt")
    return time.perf_counter() - t0


def tamer_loop(task, splits, epochs: int, batch_size: int, lr: float, seed: int, checkpoint: Path | None = None) -> float:
    """tamer's fit: validation with loss, accuracy, macro-F1 and confusion each epoch, the best epoch kept, and with
    `checkpoint` a torch.distributed.checkpoint (resumable at any world size) each epoch."""
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=0, scheduler="constant")
    t0 = time.perf_counter()
    fit(task, splits, config, checkpoint, show_progress=False)
    return time.perf_counter() - t0


def throughput(task_name: str, options: dict, epochs: int, batch_size: int, lr: float, repeats: int,
               checkpoints: bool = False) -> dict:
    task = make_task(task_name, options)
    splits = task.prepare(0)
    n = len(splits.train) * epochs
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        ckpt = (Path(a), Path(b)) if checkpoints else (None, None)
        for r in range(repeats):  # interleaved, the order alternating, so warm-up and load changes hit both alike
            if r % 2:
                ours.append(n / tamer_loop(task, splits, epochs, batch_size, lr, r, ckpt[0]))
                theirs.append(n / plain_loop(task, splits, epochs, batch_size, lr, r, ckpt[1]))
            else:
                theirs.append(n / plain_loop(task, splits, epochs, batch_size, lr, r, ckpt[1]))
                ours.append(n / tamer_loop(task, splits, epochs, batch_size, lr, r, ckpt[0]))
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"tamer_examples_per_s": a, "plain_examples_per_s": b, "ratio": a / b}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only-loop", action="store_true", help="only the throughput rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, out = [], {}

    if not args.only_loop:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            art = tamer.train("digits", out=Path(tmp) / "digits", progress=False)
            wall = time.perf_counter() - t0
            acc = art.metrics["test"]["accuracy"]
            out["digits"] = {"test_accuracy": acc, "train_seconds": art.manifest["run"]["seconds"], "wall_seconds": wall,
                             "epochs": len(art.manifest["training"]["learning_curve"])}
            rows.append(("digits test accuracy (goal >= 0.97)", f"{acc:.4f}", "pass" if acc >= 0.97 else "FAIL"))
            rows.append(("digits training seconds (goal <= 60)", f"{art.manifest['run']['seconds']:.1f}",
                         "pass" if art.manifest["run"]["seconds"] <= 60 else "FAIL"))

    for checkpoints in (False, True):
        t = throughput("digits", {}, epochs=5, batch_size=32, lr=2e-3, repeats=args.repeats, checkpoints=checkpoints)
        out["loop_digits" + ("_checkpoints" if checkpoints else "")] = t
        rows.append((f"digits loop throughput, tamer / hand-written{', both checkpointing each epoch' if checkpoints else ''} (goal >= 0.95)",
                     f"{t['ratio']:.3f} ({t['tamer_examples_per_s']:.0f} vs {t['plain_examples_per_s']:.0f} ex/s)",
                     "pass" if t["ratio"] >= 0.95 else "FAIL"))

    if not args.skip_minilm and (SENTIMENT / "yelp_labelled.txt").is_file():
        yelp, amazon = SENTIMENT / "yelp_labelled.txt", SENTIMENT / "amazon_cells_labelled.txt"
        t = throughput("text-classification", {"data": str(yelp), "encoder": "minilm"}, epochs=1, batch_size=16,
                       lr=5e-5, repeats=2)
        out["loop_minilm"] = t
        rows.append(("MiniLM loop throughput, tamer / hand-written (goal >= 0.95)",
                     f"{t['ratio']:.3f} ({t['tamer_examples_per_s']:.1f} vs {t['plain_examples_per_s']:.1f} ex/s)",
                     "pass" if t["ratio"] >= 0.95 else "FAIL"))
        if not args.only_loop:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                art = tamer.train("text-classification", data=str(yelp), out=Path(tmp) / "yelp", progress=False)
                wall = time.perf_counter() - t0
                held = art.metrics["test"]["accuracy"]
                cross = tamer.evaluate(art, data=str(amazon)).metrics["accuracy"]
            out["minilm"] = {"yelp_heldout_accuracy": held, "amazon_accuracy": cross, "wall_seconds": wall}
            rows.append(("MiniLM fine-tuned on yelp: held-out yelp accuracy (goal >= 0.85)", f"{held:.4f}",
                         "pass" if held >= 0.85 else "FAIL"))
            rows.append(("  same model on amazon sentences (other domain)", f"{cross:.4f}", "-"))
            rows.append(("  MiniLM fine-tune wall seconds", f"{wall:.0f}", "-"))

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print("| measure | value | goal |\n|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
