"""Compression on real MiniLM (all-MiniLM-L6-v2), sequence length 128, 2 threads: tamer against its peers in one run.

Every variant is timed in the same interleaved loop (the machine is shared), medians reported as ratios to fp32
eager. Cosine is of the mean-pooled embedding against fp32: the worst and the mean of the 32 sentences.
Like is compared with like: tamer's int8 quantizes the embedding tables too (MiniLM's word table is half its
weights), so each peer quantizes them as well where it can (torch.ao: float-qparams rows; torchao: int8 rows;
ONNX Runtime: its dynamic mode quantizes Gather), tamer also runs with `embeddings=False` beside the linear-only
torch.ao row, and every row's `scope` column counts the layers it quantized, read from the model or graph itself.

Then, on the sentiment data (yelp + amazon, 2,000 labelled lines), a MiniLM teacher fine-tuned here is
quantized (int8, int4 round-to-nearest vs GPTQ), distilled into a student of <= 1/4 of its parameters, and
pruned (50% of MLP neurons, or of attention heads, structured) with a short fine-tune: test accuracy of each against the teacher.
And a causal-lm ("small" preset trained here on the same lines): int4 perplexity, round-to-nearest vs GPTQ.

    .venv/bin/python bench/compress.py [--json] [--no-torchao] [--no-compile] [--reps 5]
        [--no-latency] [--no-sentiment] [--no-lm] [--distill-baseline] [--teacher-epochs 3] [--distill-epochs 10]
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from quant_scope import module_scope, onnx_scope, scope, tamer_scope  # bench/ is on the path

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
    ap.add_argument("--no-compile", action="store_true", help="skip fp32 and tamer int8 under torch.compile (70-85 s of compile per shape on 2 cores)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-latency", action="store_true", help="skip the MiniLM size / cosine / latency table")
    ap.add_argument("--no-sentiment", action="store_true", help="skip the sentiment accuracy table (fine-tunes MiniLM: minutes)")
    ap.add_argument("--no-lm", action="store_true", help="skip the causal-lm int4 perplexity table")
    ap.add_argument("--distill-baseline", action="store_true", help="also train the student alone (same init, epochs, seed)")
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--distill-epochs", type=int, default=10)
    ap.add_argument("--student", default="layers=6,hidden=256,vocab=3000")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(2)
    result: dict = {"threads": 2, "seq": 128}
    if not args.no_latency:
        result.update(latency_table(args))
    if not args.no_sentiment:
        result["sentiment"] = sentiment_table(args)
    if not args.no_lm:
        result["lm"] = lm_table(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_tables(result)
    return 0


def latency_table(args) -> dict:
    import tamer
    from tamer.artifact import Artifact, save_artifact
    from tamer.compression import compiled
    from tamer.tasks import make_task

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

    def add(name, fn, mb, scope_, note=""):
        variants[name] = {"fn": fn, "size_mb": mb, "scope": scope_, "note": note}

    pooled = lambda m: (lambda ids, mask: m.pooled(ids, mask))  # noqa: E731
    fp32_scope = scope(0, 0)
    add("fp32 eager", pooled(fp32), size_mb(parent.path / "model.safetensors"), fp32_scope)

    t0 = time.perf_counter()
    q8 = tamer.compress(parent, out=work / "int8", progress=False, quantize="int8", calibration_samples=32)
    rep8 = q8.report
    timings["tamer int8 compress s"] = time.perf_counter() - t0
    _, m8 = Artifact.load(q8.path).load_model()  # the load path rebuilds the fast execution
    layers = q8.manifest["quantization"]["layers"]
    why = q8.manifest["run"]["quantization"]["layers"]  # reasons quote timings: per-run, outside the id
    fell = {n: why[n]["reason"] for n, r in layers.items() if r["exec"] == "fp32-fallback"}
    from tamer.compression.layers import BACKEND

    add(f"tamer int8 ({BACKEND} per-token, SmoothQuant, int8 embeddings)", pooled(m8), size_mb(q8.path / "model.safetensors"),
        tamer_scope(q8), f"{sum(r['exec'] == 'int8-dynamic' for r in layers.values())} linear layers run int8, {len(fell)} fell back")
    q8l = tamer.compress(parent, out=work / "int8-linear", progress=False, quantize="int8", calibration_samples=32,
                         embeddings=False)
    _, m8l = q8l.load_model()
    lin = q8l.manifest["quantization"]["layers"]
    add("tamer int8, embeddings left fp32 (embeddings=False)", pooled(m8l), size_mb(q8l.path / "model.safetensors"),
        tamer_scope(q8l), f"{sum(r['exec'] == 'int8-dynamic' for r in lin.values())} linear layers run int8; "
                          "like with like for the linear-only torch.ao row")
    if not args.no_compile:
        fp32c = compiled(copy.deepcopy(fp32).pooled)
        with torch.inference_mode():
            for ids, mask in batches.values():
                fp32c(ids, mask)
        add("fp32 + torch.compile (freezing)", fp32c, size_mb(parent.path / "model.safetensors"), fp32_scope, "compile alone")
        _, m8c = Artifact.load(q8.path).load_model()
        fn = compiled(m8c.pooled)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for ids, mask in batches.values():
                fn(ids, mask)
        timings["tamer int8 compile s"] = time.perf_counter() - t0
        add("tamer int8 + torch.compile (freezing)", fn, size_mb(q8.path / "model.safetensors"), tamer_scope(q8), "same artifact")

    q8a = tamer.compress(parent, out=work / "int8-auto", progress=False, quantize="int8", calibration_samples=32,
                            activation_scales="auto")
    _, m8a = q8a.load_model()
    auto = q8a.manifest["quantization"]["layers"]
    add("tamer int8 --activation-scales auto", pooled(m8a), size_mb(q8a.path / "model.safetensors"), tamer_scope(q8a),
        f"{sum(bool(r.get('per_token')) for r in auto.values())} of {sum(r['exec'] == 'int8-dynamic' for r in auto.values())}"
        " int8 layers per token")

    for calib in ("rtn", "gptq"):
        t0 = time.perf_counter()
        q4 = tamer.compress(parent, out=work / f"int4-{calib}", progress=False, quantize="int4", group_size=64,
                               calibration=calib, calibration_samples=32)
        timings[f"tamer int4 {calib} compress s"] = time.perf_counter() - t0
        _, m4 = q4.load_model()
        ex = q4.manifest["quantization"]["layers"]
        add(f"tamer int4 g64 {calib}", pooled(m4), size_mb(q4.path / "model.safetensors"), tamer_scope(q4),
            f"{sum(r['exec'] == 'int4-on-the-fly' for r in ex.values())} layers packed int4 at run time")

    t0 = time.perf_counter()
    pr = tamer.compress(parent, out=work / "pruned", progress=False, prune=0.5, prune_kind="structured")
    timings["tamer prune compress s"] = time.perf_counter() - t0
    _, mp = pr.load_model()
    add("tamer structured prune 50% MLP (no fine-tune)", pooled(mp), size_mb(pr.path / "model.safetensors"),
        "pruned: MLP neurons, no quantization", "cosine before any fine-tune")
    heads = tamer.compress(parent, out=work / "heads", progress=False, prune=0.5, prune_kind="structured",
                              prune_units="heads", calibration_samples=32)
    _, mh = heads.load_model()
    add("tamer structured prune 50% heads (no fine-tune)", pooled(mh), size_mb(heads.path / "model.safetensors"),
        "pruned: attention heads, no quantization", "cosine before any fine-tune")
    both = tamer.compress(pr, out=work / "mlp-heads", progress=False, prune=0.5, prune_kind="structured",
                             prune_units="heads", calibration_samples=32)
    _, mb = both.load_model()
    add("tamer structured prune 50% MLP, then 50% heads", pooled(mb), size_mb(both.path / "model.safetensors"),
        "pruned: MLP neurons + heads, no quantization", "cosine before any fine-tune")

    from torch.ao.quantization import float_qparams_weight_only_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    for label, spec in (("+ embeddings (float-qparams uint8 rows)", {torch.nn.Embedding: float_qparams_weight_only_qconfig}),
                        ("linear only", {})):
        tao = quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear: per_channel_dynamic_qconfig, **spec})
        tao_path = work / f"torch_ao-{len(spec)}.pt"
        torch.save(tao.state_dict(), tao_path)
        add(f"torch.ao quantize_dynamic per-channel, {label}", pooled(tao), size_mb(tao_path), module_scope(tao))

    try:
        from tamer.compression.export import ort_session

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
        add("ONNX Runtime int8 per-channel (dynamic: MatMul + Gather)", lambda ids, mask: torch.from_numpy(
            sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]), size_mb(onnx_dir / "int8.onnx"),
            onnx_scope(onnx_dir / "int8.onnx"))
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        print(f"ONNX Runtime peer skipped: {exc}", file=sys.stderr)

    if not args.no_torchao:
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, IntxWeightOnlyConfig, quantize_
            from torchao.quantization.granularity import PerAxis

            ao = copy.deepcopy(fp32)
            # the embedding tables as tamer's: int8, one scale per row (torchao's documented embedding recipe)
            quantize_(ao, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
                      filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
            quantize_(ao, Int8DynamicActivationInt8WeightConfig())
            ao_path = work / "torchao.pt"
            torch.save(ao.state_dict(), ao_path)
            # freezing, as torchao documents for CPU: without it Inductor leaves torch._int_mm to ATen's reference
            # CPU kernel (measured 15-20x slower than fp32 here); with it, to oneDNN's int8 GEMM. compiled() is
            # torch.compile with freezing (set where torch 2.13 reads it); it finds no tamer layer to move here
            ao_fn = compiled(ao.pooled, int8_everywhere=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                for ids, mask in batches.values():
                    ao_fn(ids, mask)
            timings["torchao compile s"] = time.perf_counter() - t0
            add("torchao int8 dynamic, int8 embeddings, + compile (freezing)", ao_fn, size_mb(ao_path), module_scope(ao))
        except Exception as exc:  # noqa: BLE001
            print(f"torchao peer skipped: {exc}", file=sys.stderr)

    with torch.inference_mode():
        ref = variants["fp32 eager"]["fn"](*batches[32])
        for name, v in variants.items():
            out = v["fn"](*batches[32])
            cos = torch.nn.functional.cosine_similarity(out.float(), ref, dim=1)
            v["cosine"], v["cosine_mean"] = float(cos.min()), float(cos.mean())  # worst and mean of the 32 sentences
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
                     "cosine": round(v["cosine"], 5), "cosine_mean": round(v["cosine_mean"], 5), "b1_ms": round(v["b1_ms"], 1), "b1_ratio": round(v["b1_ms"] / base["b1_ms"], 2),
                     "b32_ms": round(v["b32_ms"], 1), "b32_ratio": round(v["b32_ms"] / base["b32_ms"], 2), "scope": v["scope"],
                     "note": v["note"]})
    return {"rows": rows, "timings_s": {k: round(x, 1) for k, x in timings.items()}, "int8_fallbacks": fell,
            "int8_report": rep8.summary(), "threads": torch.get_num_threads(), "seq": 128}


def sentiment_data(work: Path) -> Path:
    data = work / "sentiment.tsv"
    lines = []
    for name in ("yelp_labelled.txt", "amazon_cells_labelled.txt"):
        path = SHARED.parent / name
        if not path.is_file():
            raise SystemExit(f"{path} is missing; the sentiment table needs ../shared/data/sentiment (or pass --no-sentiment)")
        lines += [line for line in path.read_text().splitlines() if "\t" in line]
    data.write_text("\n".join(lines) + "\n")
    return data


def sentiment_table(args) -> dict:
    """Accuracy on the sentiment test split of a fine-tuned MiniLM teacher and of its compressed children."""
    import tamer

    work = Path(tempfile.mkdtemp(prefix="tamer-bench-sentiment-"))
    data = sentiment_data(work)
    t0 = time.perf_counter()
    teacher = tamer.train("text-classification", data=str(data), encoder="minilm", epochs=args.teacher_epochs,
                          out=work / "teacher", progress=False)
    times = {"teacher fine-tune s": time.perf_counter() - t0}
    acc = teacher.metrics["test"]["accuracy"]
    rows = [{"variant": f"MiniLM teacher fp32 (fine-tuned {args.teacher_epochs} epochs)", "accuracy": acc, "kept": 1.0,
             "size_ratio": 1.0, "param_ratio": 1.0, "latency_b32": 1.0, "goal": "", "scope": scope(0, 0)}]

    def run(name, goal, scope_=None, **options):
        t = time.perf_counter()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]  # every variant its own folder
        child = tamer.compress(teacher, out=work / slug, progress=False, **options)
        report = child.report
        times[f"{name} s"] = time.perf_counter() - t
        step = report.steps[-1]
        row = {"variant": name, "accuracy": step.child_metric, "kept": step.child_metric / acc,
               "size_ratio": step.size_ratio, "param_ratio": step.extra.get("param_ratio"),
               "latency_b32": step.latency_ratio("batch32"), "goal": goal,
               "scope": tamer_scope(child) if "quantization" in child.manifest else scope_}
        rows.append(row)
        return child, step

    run("int8", "", quantize="int8", calibration_samples=64)
    run("int4-rtn g64", "", quantize="int4", group_size=64, calibration="rtn", calibration_samples=64)
    run("int4-gptq g64", "drop <= 1 point", quantize="int4", group_size=64, calibration="gptq", calibration_samples=128)
    child, step = run(f"distilled student ({args.student})", ">= 97% kept at <= 1/4 params",
                      "a smaller student, nothing quantized", distill_into=args.student,
                      distill_epochs=args.distill_epochs)
    rows[-1]["metric_kept"] = step.extra.get("metric_kept")
    vocab = child.manifest["distillation"].get("vocabulary")
    if vocab:  # what the trimmed vocabulary alone costs: the teacher reading the same [UNK]s
        rows[-1]["note"] = (f"{vocab['test_tokens_unknown']:.1%} of test tokens outside its {vocab['kept']} kept; "
                            f"teacher reading them as [UNK]: {vocab['teacher_metric_trimmed']:.4f}")
    if args.distill_baseline:
        from tamer.compression import CompressConfig
        from tamer.compression.distill import train_student
        from tamer.compression.student import build_student
        from tamer.compression.measure import calibration_batches

        task, model = teacher.load_model()
        splits = task.prepare(0)
        config = CompressConfig(distill_into=args.student, distill_epochs=args.distill_epochs)
        student, _, mapping, init = build_student(task, model, teacher.manifest["model_config"], args.student, 0,
                                                  batches=calibration_batches(task, splits.train, 256, 0), train=splits.train)
        t = time.perf_counter()
        student, _ = train_student(task, student, None, "EncoderClassifier", mapping, splits.train, splits.val, config,
                                   child.manifest["distillation"]["lr"])
        times["student alone s"] = time.perf_counter() - t
        alone = task.evaluate(student, splits.test)["accuracy"]
        rows.append({"variant": "same student trained alone (same init, epochs, seed)", "accuracy": alone, "kept": alone / acc,
                     "size_ratio": None, "param_ratio": rows[-1]["param_ratio"], "latency_b32": None, "goal": "",
                     "scope": "a smaller student, nothing quantized"})
    run(f"structured prune 50% MLP + {args.finetune_epochs} epoch fine-tune", "drop <= 1 point, >= 1.5x faster",
        "pruned: MLP neurons, no quantization", prune=0.5, prune_kind="structured", finetune_epochs=args.finetune_epochs)
    run("structured prune 50% MLP, no fine-tune", "", "pruned: MLP neurons, no quantization", prune=0.5, prune_kind="structured")
    run(f"structured prune 50% heads + {args.finetune_epochs} epoch fine-tune", "", "pruned: attention heads, no quantization", prune=0.5, prune_kind="structured",
        prune_units="heads", finetune_epochs=args.finetune_epochs)
    return {"rows": rows, "test_examples": teacher.metrics["test"]["examples"],
            "timings_s": {k: round(v, 1) for k, v in times.items()}}


def lm_table(args) -> dict:
    """Perplexity of a small causal LM trained here, and of its int4 children (round-to-nearest vs GPTQ)."""
    import tamer

    work = Path(tempfile.mkdtemp(prefix="tamer-bench-lm-"))
    data = work / "lines.txt"
    texts = [t for t, _ in (line.rsplit("\t", 1) for name in ("yelp_labelled.txt", "amazon_cells_labelled.txt")
                            for line in (SHARED.parent / name).read_text().splitlines() if "\t" in line)]
    data.write_text("\n".join(texts) + "\n")
    lm = tamer.train("causal-lm", data=str(data), model="small", block_size=128, epochs=4, out=work / "lm", progress=False)
    ppl = lm.metrics["test"]["perplexity"]
    rows = [{"variant": "causal-lm small fp32", "perplexity": ppl, "increase": 0.0, "size_ratio": 1.0, "scope": scope(0, 0)}]
    for calib in ("rtn", "gptq"):
        child = tamer.compress(lm, out=work / calib, progress=False, quantize="int4", group_size=64, calibration=calib,
                               calibration_samples=64)
        step = child.report.steps[0]
        rows.append({"variant": f"int4 g64 {calib}", "perplexity": step.child_metric, "increase": step.child_metric / ppl - 1,
                     "size_ratio": step.size_ratio, "scope": tamer_scope(child)})
    return {"rows": rows}


def _f(x, fmt):
    return "—" if x is None else fmt.format(x)


def print_tables(result: dict) -> None:
    if "rows" in result:
        print_latency(result)
    if "sentiment" in result:
        s = result["sentiment"]
        print(f"\nsentiment (yelp + amazon, {s['test_examples']} test lines), MiniLM teacher vs its compressed children")
        print("| variant | scope | accuracy | kept vs teacher | params vs teacher | size vs teacher | b32 latency vs teacher | goal | note |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in s["rows"]:
            print(f"| {r['variant']} | {r['scope']} | {_f(r['accuracy'], '{:.4f}')} | {_f(r['kept'], '{:.3f}')} | {_f(r['param_ratio'], '{:.4f}x')} | "
                  f"{_f(r['size_ratio'], '{:.3f}x')} | {_f(r['latency_b32'], '{:.2f}x')} | {r['goal']} | {r.get('note', '')} |")
        print("one-off times (s):", s["timings_s"])
    if "lm" in result:
        print("\ncausal-lm (small preset, trained here on the same lines), int4 perplexity")
        print("| variant | scope | perplexity | increase | size vs fp32 |")
        print("|---|---|---|---|---|")
        for r in result["lm"]["rows"]:
            print(f"| {r['variant']} | {r['scope']} | {r['perplexity']:.3f} | {r['increase'] * 100:+.2f}% | {r['size_ratio']:.3f}x |")


def print_latency(result: dict) -> None:
    rows, fell = result["rows"], result["int8_fallbacks"]
    print("| variant | scope | size MB | size vs fp32 | cosine min | cosine mean | batch-1 ms | b1 vs fp32 | batch-32 ms | b32 vs fp32 | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['scope']} | {r['size_mb']} | {r['size_ratio']}x | {r['cosine']} | {r['cosine_mean']} | {r['b1_ms']} | {r['b1_ratio']}x | "
              f"{r['b32_ms']} | {r['b32_ratio']}x | {r['note']} |")
    print("\none-off times (s):", result["timings_s"])
    print(f"int8 layers that run fp32 ({len(fell)}):", json.dumps(fell, indent=1) if fell else "none")


if __name__ == "__main__":
    sys.exit(main())
