"""Robustness on digits (pixels in [0, 1]), one thread: tamer's PGD against torchattacks' PGD on the same model,
epsilon, steps, step size and random start, then adversarial training.

torchattacks is a bench-only dependency, kept out of the project's environment: it runs in its own venv
(--peer-python, default /work/venv-attacks/bin/python) on the same traced model and the same test tensors. Time is the
median of --reps runs, interleaved one and one, over the whole test split (270 images, one batch), after a warm-up run each (the peer's
model is traced with TorchScript to cross the venv boundary; tamer's runs eager).

    .venv/bin/python bench/robust.py [--json] [--reps 5] [--harden-epochs 40] [--peer-python PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import tamer  # noqa: E402
from tamer.robustness import images  # noqa: E402
from tamer.robustness.data import image_batches, load_split  # noqa: E402

PEER = """
import json, statistics, sys, time, torch, torchattacks
torch.set_num_threads(1)
model = torch.jit.load(sys.argv[1]).eval()
x, y = torch.load(sys.argv[2])
eps, alpha, steps, reps = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
times, accs = [], []
for _ in range(2):  # TorchScript's profiling executor specialises the traced model over its first runs
    torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
for r in range(reps):
    torch.manual_seed(r)
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    t = time.perf_counter(); adv = atk(x, y); times.append(time.perf_counter() - t)
    with torch.no_grad():
        accs.append(float((model(adv).argmax(1) == y).float().mean()))
print(json.dumps({"seconds": statistics.median(times), "robust_accuracy": statistics.median(accs),
                  "version": torchattacks.__version__, "torch": torch.__version__}))
"""


def tamer_pgd(f, x, y, eps, alpha, steps, reps):
    times, accs = [], []
    images.pgd(f, x, y, eps, "linf", steps, alpha)  # warm-up, as the peer gets
    for r in range(reps):
        t = time.perf_counter()
        adv = images.pgd(f, x, y, eps, "linf", steps, alpha, gen=torch.Generator().manual_seed(r))
        times.append(time.perf_counter() - t)
        with torch.no_grad():
            accs.append(float((f(adv).argmax(1) == y).float().mean()))
    return {"seconds": statistics.median(times), "robust_accuracy": statistics.median(accs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--harden-epochs", type=int, default=40)
    ap.add_argument("--peer-python", default="/work/venv-attacks/bin/python")
    args = ap.parse_args()
    torch.set_num_threads(1)
    eps, steps = args.epsilon, args.steps
    alpha = 2.5 * eps / steps
    work = Path(tempfile.mkdtemp(prefix="tamer-bench-robust-"))
    t0 = time.perf_counter()
    base = tamer.train("digits", epochs=40, seed=0, out=work / "digits", progress=False)
    train_s = time.perf_counter() - t0
    task, model, examples, _ = load_split(base, "test", 0)
    batch, space, x, y = next(image_batches(task, examples, len(examples)))
    f = space.logits(task, model, batch)
    rows = {"clean_accuracy": float((f(x).argmax(1) == y).float().mean()), "train_seconds": train_s}
    ours, theirs = [], []
    if Path(args.peer_python).exists():
        torch.jit.trace(model, x[:2]).save(str(work / "model.pt"))
        torch.save((x, y), work / "data.pt")
        (work / "peer.py").write_text(PEER)
    for _ in range(args.reps):  # interleaved, so both see the same load on a shared machine
        ours.append(tamer_pgd(f, x, y, eps, alpha, steps, 1))
        if Path(args.peer_python).exists():
            out = subprocess.run([args.peer_python, str(work / "peer.py"), str(work / "model.pt"), str(work / "data.pt"),
                                  str(eps), str(alpha), str(steps), "1"], capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            theirs.append(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-300:]})
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    rows["tamer_pgd"] = {k: median(ours, k) for k in ("seconds", "robust_accuracy")}
    if theirs and "error" not in theirs[0]:
        rows["torchattacks_pgd"] = {**{k: median(theirs, k) for k in ("seconds", "robust_accuracy")},
                                    "version": theirs[0]["version"]}
    elif theirs:
        rows["torchattacks_pgd"] = theirs[0]
    square = tamer.attack(base, method="square", epsilon=eps, limit=0)
    rows["square_undefended"] = square.robust_accuracy
    t0 = time.perf_counter()
    hard = tamer.harden(base, method="pgd", epsilon=eps, epochs=args.harden_epochs, out=work / "hardened", progress=False)
    rows["harden_seconds"] = time.perf_counter() - t0
    rows["hardened"] = {"clean_accuracy": hard.report.after["clean_accuracy"],
                        "pgd20_robust_accuracy": hard.report.after["robust_accuracy"],
                        "square_robust_accuracy": tamer.attack(hard, method="square", epsilon=eps, limit=0).robust_accuracy}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    t, p = rows["tamer_pgd"], rows.get("torchattacks_pgd", {})
    print(f"digits, linf epsilon {eps}, PGD-{steps}, step {alpha:g}, random start, {len(y)} test images, 1 thread")
    print(f"| measure | tamer | torchattacks {p.get('version', '-')} | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| undefended PGD-{steps} robust accuracy | {t['robust_accuracy']:.3f} | {p.get('robust_accuracy', float('nan')):.3f} | "
          f"{t['robust_accuracy'] - p.get('robust_accuracy', float('nan')):+.3f} (difference) |")
    print(f"| seconds per batch of {len(y)} | {t['seconds']:.3f} | {p.get('seconds', float('nan')):.3f} | "
          f"{t['seconds'] / p.get('seconds', float('nan')):.2f}x |")
    h = rows["hardened"]
    print(f"| undefended clean accuracy / Square-1000 robust | {rows['clean_accuracy']:.3f} / {rows['square_undefended']:.3f} | | |")
    print(f"| harden --method pgd ({args.harden_epochs} epochs, {rows['harden_seconds']:.0f} s): clean accuracy | "
          f"{h['clean_accuracy']:.3f} (drop {rows['clean_accuracy'] - h['clean_accuracy']:+.3f}) | | |")
    print(f"| hardened PGD-{steps} robust accuracy | {h['pgd20_robust_accuracy']:.3f} | | |")
    print(f"| hardened Square-1000 robust accuracy | {h['square_robust_accuracy']:.3f} | | |")


if __name__ == "__main__":
    main()
