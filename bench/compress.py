"""Compression on real MiniLM (all-MiniLM-L6-v2), sequence length 128, 2 threads: tamer against its peers in one run.

Every variant is timed in the same interleaved loop (the machine is shared), medians reported as ratios to fp32
eager. Cosine is of the mean-pooled embedding against fp32, minimum over the batch.

    .venv/bin/python bench/compress.py [--json] [--no-torchao] [--reps 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sentiment" / "yelp_labelled.txt"


def long_texts(n: int) -> list[tuple[str, str]]:
    """Lines of several review sentences joined, so that they fill 128 tokens."""
    if SHARED.is_file():
        rows = [line.rsplit("\t", 1) for line in SHARED.read_text().splitlines() if "\t" in line]
    else:
        rows = [(f"sentence {i} about food, service and the price of things in town", str(i % 2)) for i in range(400)]
    out = []
    for i in range(n):
        parts = [rows[(i * 7 + j) % len(rows)][0] for j in range(8)]
        out.append((" ".join(parts).replace("\t", " "), rows[i % len(rows)][1].strip()))
    return out


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-torchao", action="store_true", help="skip torchao + torch.compile (20-30 s of compile per shape)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    import tamer
    from tamer.artifact import Artifact, save_artifact
    from tamer.tasks.base import make_task

    work = Path(tempfile.mkdtemp(prefix="tamer-bench-compress-"))
    data = work / "long.tsv"
    data.write_text("".join(f"{t}\t{y}\n" for t, y in long_texts(240)))
    task = make_task("text-classification", {"data": str(data), "encoder": "minilm", "max_length": 128})
    task.prepare(0)
    fp32 = task.build_model(task.model_config()).eval()
    parent = save_artifact(work / "fp32", fp32.state_dict(), task=task.to_manifest(), model_config=task.model_config(),
                           verb="train", options={"seed": 0}, write_files=task.write_files)
    texts = [t for t, _ in long_texts(32)]
    enc = task.tokenizer(texts, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    batches = {32: (enc["input_ids"], enc["attention_mask"]), 1: (enc["input_ids"][:1], enc["attention_mask"][:1])}

    variants: dict[str, dict] = {}
    timings: dict[str, float] = {}

    def add(name, fn, mb, note=""):
        variants[name] = {"fn": fn, "size_mb": mb, "note": note}

    pooled = lambda m: (lambda ids, mask: m.pooled(ids, mask))  # noqa: E731
    add("fp32 eager", pooled(fp32), size_mb(parent.path / "model.safetensors"))

    t0 = time.perf_counter()
    q8, rep8 = tamer.compress(parent, out=work / "int8", progress=False, quantize="int8", calibration_samples=32)
    timings["tamer int8 compress s"] = time.perf_counter() - t0
    _, m8 = Artifact.load(q8.path).load_model()  # the load path rebuilds the fast execution
    layers = q8.manifest["quantization"]["layers"]
    fell = {n: r["reason"] for n, r in layers.items() if r["exec"] == "fp32-fallback"}
    add("tamer int8 (fbgemm dynamic, int8 embeddings)", pooled(m8), size_mb(q8.path / "model.safetensors"),
        f"{sum(r['exec'] == 'int8-dynamic' for r in layers.values())} linear layers int8, {len(fell)} fell back")

    for calib in ("rtn", "gptq"):
        t0 = time.perf_counter()
        q4, _ = tamer.compress(parent, out=work / f"int4-{calib}", progress=False, quantize="int4", group_size=64,
                               calibration=calib, calibration_samples=32)
        timings[f"tamer int4 {calib} compress s"] = time.perf_counter() - t0
        _, m4 = q4.load_model()
        ex = q4.manifest["quantization"]["layers"]
        add(f"tamer int4 g64 {calib}", pooled(m4), size_mb(q4.path / "model.safetensors"),
            f"{sum(r['exec'] == 'int4-on-the-fly' for r in ex.values())} layers packed int4 at run time")

    t0 = time.perf_counter()
    pr, _ = tamer.compress(parent, out=work / "pruned", progress=False, prune=0.5, prune_kind="structured")
    timings["tamer prune compress s"] = time.perf_counter() - t0
    _, mp = pr.load_model()
    add("tamer structured prune 50% MLP (no fine-tune)", pooled(mp), size_mb(pr.path / "model.safetensors"),
        "cosine before any fine-tune")

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    tao = quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    tao_path = work / "torch_ao.pt"
    torch.save(tao.state_dict(), tao_path)
    add("torch.ao quantize_dynamic per-channel", pooled(tao), size_mb(tao_path))

    try:
        from tamer.compress.export import ort_session

        onnx_dir = work / "onnx"
        onnx_dir.mkdir()

        class Pooled(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m.pooled(input_ids, attention_mask)

        torch.onnx.export(Pooled(fp32).eval(), batches[1], str(onnx_dir / "fp32.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["pooled"], dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
                          dynamo=False, opset_version=17)
        from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize

        ort_quantize(str(onnx_dir / "fp32.onnx"), str(onnx_dir / "int8.onnx"), per_channel=True, weight_type=QuantType.QInt8)
        sess = ort_session(onnx_dir / "int8.onnx")
        add("ONNX Runtime int8 per-channel", lambda ids, mask: torch.from_numpy(
            sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]), size_mb(onnx_dir / "int8.onnx"))
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        print(f"ONNX Runtime peer skipped: {exc}", file=sys.stderr)

    if not args.no_torchao:
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            ao = copy.deepcopy(fp32)
            quantize_(ao, Int8DynamicActivationInt8WeightConfig())
            ao_path = work / "torchao.pt"
            torch.save(ao.state_dict(), ao_path)
            compiled = torch.compile(ao.pooled)
            t0 = time.perf_counter()
            with torch.inference_mode():
                for ids, mask in batches.values():
                    compiled(ids, mask)
            timings["torchao compile s"] = time.perf_counter() - t0
            add("torchao int8 dynamic + compile", compiled, size_mb(ao_path))
        except Exception as exc:  # noqa: BLE001
            print(f"torchao peer skipped: {exc}", file=sys.stderr)

    with torch.inference_mode():
        ref = variants["fp32 eager"]["fn"](*batches[32])
        for name, v in variants.items():
            out = v["fn"](*batches[32])
            v["cosine"] = float(torch.nn.functional.cosine_similarity(out.float(), ref, dim=1).min())
        for b, reps in ((1, args.reps * 2), (32, args.reps)):
            times = {name: [] for name in variants}
            for v in variants.values():
                v["fn"](*batches[b])
            for _ in range(reps):
                for name, v in variants.items():
                    t = time.perf_counter()
                    v["fn"](*batches[b])
                    times[name].append(time.perf_counter() - t)
            for name, v in variants.items():
                v[f"b{b}_ms"] = statistics.median(times[name]) * 1e3

    base = variants["fp32 eager"]
    rows = []
    for name, v in variants.items():
        rows.append({"variant": name, "size_mb": round(v["size_mb"], 2), "size_ratio": round(v["size_mb"] / base["size_mb"], 3),
                     "cosine": round(v["cosine"], 5), "b1_ms": round(v["b1_ms"], 1), "b1_ratio": round(v["b1_ms"] / base["b1_ms"], 2),
                     "b32_ms": round(v["b32_ms"], 1), "b32_ratio": round(v["b32_ms"] / base["b32_ms"], 2), "note": v["note"]})
    result = {"rows": rows, "timings_s": {k: round(x, 1) for k, x in timings.items()}, "int8_fallbacks": fell,
              "int8_report": rep8.summary(), "threads": torch.get_num_threads(), "seq": 128}
    if args.json:
        print(json.dumps(result))
        return 0
    print("| variant | size MB | size vs fp32 | cosine | batch-1 ms | b1 vs fp32 | batch-32 ms | b32 vs fp32 | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['size_mb']} | {r['size_ratio']}x | {r['cosine']} | {r['b1_ms']} | {r['b1_ratio']}x | "
              f"{r['b32_ms']} | {r['b32_ratio']}x | {r['note']} |")
    print("\none-off times (s):", result["timings_s"])
    print(f"int8 layers that run fp32 ({len(fell)}):", json.dumps(fell, indent=1) if fell else "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
