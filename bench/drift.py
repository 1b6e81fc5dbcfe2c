"""Drift detection on the UCI sentiment sentences, one thread: false-positive rate over random yelp-vs-yelp splits
and power for yelp -> amazon at n per side, through a MiniLM sentiment artifact's embeddings (tamer's --artifact
path: the pooled encoder output its head reads) and through TF-IDF word features; the same splits and the same
feature rows through alibi-detect's MMDDrift (pytorch backend) as the peer. Then the chunked MMD on 50k + 50k rows
of 384 floats: peak memory and time.

alibi-detect is a bench-only dependency (it pins numpy 1.26): it runs in its own venv (--peer-python, default
/work/venv-alibi/bin/python) on the feature rows saved to .npy and the split indices. Features are computed once for
all 2,000 sentences (TF-IDF fitted on the pooled 2,000, no labels), so both tools see identical rows; both run
--permutations relabellings per split (alibi's default is 100). tamer's verdict combines its MMD and domain-
classifier tests (Bonferroni); its MMD-alone verdict is the like-for-like row beside alibi.

    flock /tmp/tamer-bench.lock .venv/bin/python bench/drift.py [--splits 100] [--n 200] [--permutations 100]
        [--big-rows 50000] [--big-permutations 100] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data" / "sentiment"
CACHE = Path(tempfile.gettempdir()) / "tamer-bench-drift"

PEER = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from alibi_detect.cd import MMDDrift
import alibi_detect
features = np.load(sys.argv[1]).astype(np.float32)
splits = json.load(open(sys.argv[2]))
perms = int(sys.argv[3])
out = []
for ref, cur in splits:
    t = time.perf_counter()
    cd = MMDDrift(features[ref], backend="pytorch", p_val=0.05, n_permutations=perms)
    r = cd.predict(features[cur])
    out.append({"drift": bool(r["data"]["is_drift"]), "p": float(r["data"]["p_val"]), "s": time.perf_counter() - t})
print(json.dumps({"rows": out, "version": alibi_detect.__version__}))
"""

BIG = """
import json, sys, time, tracemalloc
import numpy as np
sys.path.insert(0, sys.argv[1])
from tamer.maintenance.drift_mmd import mmd_test
rows, perms = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(rows, 384)).astype(np.float32)
y = rng.normal(size=(rows, 384)).astype(np.float32)
tracemalloc.start()
t = time.perf_counter()
r = mmd_test(x, y, permutations=perms, tile_rows=2048)
seconds = time.perf_counter() - t
traced = tracemalloc.get_traced_memory()[1]
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "traced_peak": traced, "maxrss": hwm,
                  "p": r.p_value, "statistic": r.statistic}))
"""


def texts(name: str) -> list[str]:
    from tamer.maintenance.drift_data import load_drift_data

    return load_drift_data(str(DATA / name), "--reference").texts


def minilm_artifact():
    """A MiniLM sentiment artifact (one epoch on yelp), trained once and kept under the temp folder."""
    import tamer

    folder = CACHE / "minilm-yelp"
    if (folder / "manifest.json").is_file():
        return tamer.load(folder)
    CACHE.mkdir(parents=True, exist_ok=True)
    return tamer.train("text-classification", data=str(DATA / "yelp_labelled.txt"), epochs=1, max_length=64,
                       out=folder, progress=False)


def make_splits(count: int, n: int, seed: int = 0) -> tuple[list, list]:
    """(no-drift splits of yelp rows 0..999, drift draws yelp vs amazon rows 1000..1999), as index lists."""
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(count):
        idx = rng.permutation(1000)
        null.append((idx[:n].tolist(), idx[n:2 * n].tolist()))
    shift = [(rng.choice(1000, n, replace=False).tolist(), (1000 + rng.choice(1000, n, replace=False)).tolist())
             for _ in range(count)]
    return null, shift


def run_tamer(features, splits, permutations: int) -> list[dict]:
    from tamer.maintenance.drift import kernel_tests
    from tamer.maintenance.drift_config import DriftConfig

    config = DriftConfig(permutations=permutations)
    rows = []
    for ref, cur in splits:
        t = time.perf_counter()
        found = kernel_tests(features[ref], features[cur], config)
        rows.append({"drift": found["p_value"] <= 0.05, "mmd": found["mmd"]["p_value"] <= 0.05,
                     "s": time.perf_counter() - t, "mmd_s": found["mmd"]["seconds"]})
    return rows


def run_peer(python: str, features, splits, permutations: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "f.npy", features.toarray() if hasattr(features, "toarray") else features)
        (Path(tmp) / "s.json").write_text(json.dumps(splits))
        (Path(tmp) / "peer.py").write_text(PEER)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run([python, str(Path(tmp) / "peer.py"), str(Path(tmp) / "f.npy"), str(Path(tmp) / "s.json"),
                              str(permutations)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rate(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--permutations", type=int, default=100)
    ap.add_argument("--big-rows", type=int, default=50000)
    ap.add_argument("--big-permutations", type=int, default=100)
    ap.add_argument("--peer-python", default="/work/venv-alibi/bin/python")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from tamer.maintenance.drift_features import artifact_embeddings, word_features

    sentences = texts("yelp_labelled.txt") + texts("amazon_cells_labelled.txt")
    t = time.perf_counter()
    artifact = minilm_artifact()
    embeddings = artifact_embeddings(artifact, sentences, batch_size=64)
    embed_seconds = time.perf_counter() - t
    words, _ = word_features(sentences, [])
    null, shift = make_splits(args.splits, args.n)
    table = []
    for name, features in (("MiniLM embeddings", embeddings), ("TF-IDF words", words)):
        ours_null, ours_shift = run_tamer(features, null, args.permutations), run_tamer(features, shift, args.permutations)
        peer_null = run_peer(args.peer_python, features, null, args.permutations)
        peer_shift = run_peer(args.peer_python, features, shift, args.permutations)
        ours_s = sum(r["s"] for r in ours_null + ours_shift) / (2 * args.splits)
        mmd_s = sum(r["mmd_s"] for r in ours_null + ours_shift) / (2 * args.splits)
        peer_s = sum(r["s"] for r in peer_null["rows"] + peer_shift["rows"]) / (2 * args.splits)
        table.append({"features": name, "tool": "tamer (MMD + domain classifier)", "fpr": rate(ours_null, "drift"),
                      "power": rate(ours_shift, "drift"), "seconds_per_split": ours_s})
        table.append({"features": name, "tool": "tamer (MMD alone)", "fpr": rate(ours_null, "mmd"),
                      "power": rate(ours_shift, "mmd"), "seconds_per_split": mmd_s})
        table.append({"features": name, "tool": f"alibi-detect {peer_null['version']} MMDDrift",
                      "fpr": rate(peer_null["rows"], "drift"), "power": rate(peer_shift["rows"], "drift"),
                      "seconds_per_split": peer_s, "tamer_time_ratio": ours_s / peer_s,
                      "tamer_mmd_time_ratio": mmd_s / peer_s})
    result = {"splits": args.splits, "n": args.n, "permutations": args.permutations, "embedding_seconds": embed_seconds,
              "artifact": artifact.id, "table": table}
    if not args.json:  # the table first: the 50k run below takes minutes
        print(f"drift on UCI sentiment: {args.splits} yelp-vs-yelp splits (FPR) and {args.splits} yelp->amazon draws "
              f"(power), n = {args.n} per side, {args.permutations} permutations, alpha 0.05, one thread")
        print(f"{'features':<20}{'tool':<36}{'FPR':>6}{'power':>7}{'s/split':>9}  time vs peer (tamer both / MMD alone)")
        for r in table:
            ratio = f"{r['tamer_time_ratio']:.2f}x / {r['tamer_mmd_time_ratio']:.2f}x" if "tamer_time_ratio" in r else ""
            print(f"{r['features']:<20}{r['tool']:<36}{r['fpr']:>6.2f}{r['power']:>7.2f}{r['seconds_per_split']:>9.3f}"
                  f"  {ratio}", flush=True)
    big = subprocess.run([sys.executable, "-c", BIG, str(ROOT / "src"), str(args.big_rows), str(args.big_permutations)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    b = result["big"] = {"rows": args.big_rows, "permutations": args.big_permutations,
                         **json.loads(big.stdout.strip().splitlines()[-1])}
    if args.json:
        print(json.dumps(result))
        return
    print(f"MMD on {b['rows']} + {b['rows']} rows x 384 floats, {b['permutations']} permutations: {b['seconds']:.0f} s, "
          f"peak RSS (VmHWM of a fresh process) {b['maxrss'] / 2**30:.2f} GiB (numpy allocations peak "
          f"{b['traced_peak'] / 2**30:.2f} GiB; limit 2 GiB)")
    print(f"(MiniLM artifact {artifact.id}: embedding 2,000 sentences, with training when not cached, took "
          f"{embed_seconds:.0f} s)")

if __name__ == "__main__":
    main()
