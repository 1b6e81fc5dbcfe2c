"""What scale costs: three tables from one run.

1. bf16 against fp32 training (autocast) on digits, and on MiniLM sentiment (a small subset) when its data and
   encoder are here: examples per second and the final test metric.
2. Each stage of the default recipe (`tamer run`): wall, CPU seconds, peak resident and GPU memory, FLOPs per example
   and energy where the machine exposes a counter (tamer/cost.py).
3. DDP against FSDP2, FSDP2 + activation checkpointing and FSDP2 + CPU offload, 2 ranks, on a >= 100M-parameter
   GPT-2 (768 wide, 12 heads, 14 blocks with the presets' 2,000-token tokenizer): every rank's peak memory and the
   throughput. With 2 GPUs under nccl, offload included; without, under gloo on the CPU (offload is GPU-only), a few
   optimizer steps on a short corpus.

    flock /tmp/tamer-bench.lock .venv/bin/python bench/scale.py [--json] [--epochs 10] [--minilm 300] [--lm-epochs 1] [--lm-lines 640]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import tamer  # noqa: E402
from tamer.tasks import make_task  # noqa: E402

SENTIMENT = ROOT.parent / "shared" / "data" / "sentiment" / "yelp_labelled.txt"
MIB = 2 ** 20


def precision_rows(work: Path, epochs: int, minilm: int) -> list[dict]:
    """fp32 and bf16 training, one after the other on the same task and seed."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = [("digits", {"epochs": epochs})]
    if minilm and SENTIMENT.is_file():
        subset = work / "sentiment.txt"
        subset.write_text("\n".join(SENTIMENT.read_text().splitlines()[:minilm]) + "\n")
        runs.append(("text-classification", {"data": str(subset), "epochs": 2}))
    rows = []
    for task, options in runs:
        for precision in ("fp32", "bf16"):
            try:
                a = tamer.train(task, out=work / f"{task}-{precision}", progress=False, device=device,
                                precision=precision, **options)
            except tamer.errors.TamerError as exc:  # e.g. no MiniLM package here
                rows.append({"task": task, "precision": precision, "error": str(exc)})
                continue
            run = a.manifest["run"]
            rows.append({"task": task, "precision": precision, "device": run["device"], "epochs": options["epochs"],
                         "examples_per_s": round(run["examples_per_second"], 1),
                         "accuracy": round(a.metrics["test"]["accuracy"], 4), "train_s": round(run["seconds"], 1)})
    return rows


def stage_rows(work: Path) -> tuple[list[dict], dict]:
    report = tamer.run(out=work / "run", progress=False)
    rows = []
    for s in report.stages:
        c = s.cost or {}
        rows.append({"stage": s.name, "wall_s": c.get("wall_s"), "cpu_s": c.get("cpu_s"),
                     "peak_rss_mib": round(c["peak_rss_bytes"] / MIB) if c.get("peak_rss_bytes") else None,
                     "peak_gpu_mib": round(c["peak_accelerator_bytes"] / MIB) if c.get("peak_accelerator_bytes") else None,
                     "flops_per_example": c.get("flops_per_example"), "energy_j": c.get("energy_j"),
                     "energy": c.get("energy_source")})
    return rows, {**report.cost, "energy_reason": next((s.cost.get("energy_reason") for s in report.stages
                                                        if s.cost and s.cost.get("energy_reason")), None)}


def lm_folder(work: Path, corpus: Path, layers: int | None, width: int, heads: int, block: int) -> tuple[Path, int]:
    """A GPT-2 of the given shape (`layers` None: the fewest blocks that make 100M parameters), freshly initialised,
    with a tokenizer fitted on the corpus: a Hugging Face folder that `tamer train causal-lm --model FOLDER` reads, and
    its parameter count (the tied embedding once)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    task = make_task("causal-lm", {"data": str(corpus), "model": "tiny", "block_size": block})
    task.prepare(0)
    layers = layers or lm_layers(len(task.tokenizer), block, width)
    folder = work / f"gpt2-{layers}x{width}"
    task.tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(task.tokenizer), n_positions=block, n_embd=width, n_layer=layers,
                                       n_head=heads, bos_token_id=task.tokenizer.bos_token_id,
                                       eos_token_id=task.tokenizer.eos_token_id))
    model.save_pretrained(folder)
    return folder, sum(p.numel() for p in model.parameters())


def lm_layers(vocab: int, block: int, width: int = 768, at_least: float = 100e6) -> int:
    """The fewest GPT-2 blocks of `width` that make the model at least `at_least` parameters with this vocabulary (the
    tied embedding and the positions counted once): 14 with the presets' 2,000-token BPE, where 12 blocks, GPT-2
    124M's depth with its 50,257 tokens, would make 87M."""
    per_block = 12 * width * width + 13 * width
    fixed = (vocab + block) * width + 2 * width
    return max(1, math.ceil((at_least - fixed) / per_block))


def memory_rows(work: Path, epochs: int, lines: int) -> tuple[list[dict], str]:
    """DDP against FSDP2 (+ activation checkpointing, + CPU offload on GPUs) at 2 ranks on a >= 100M-parameter GPT-2:
    every rank's peak memory over the fit and the throughput. Under nccl on 2 GPUs, else under gloo on the CPU, where
    `lines` sentences keep the run to a few optimizer steps (a 100M model takes seconds a step on one core)."""
    gpus = torch.cuda.device_count()
    corpus = work / "corpus.txt"
    text = [line.split("\t")[0] for line in SENTIMENT.read_text().splitlines()] if SENTIMENT.is_file() else \
        [f"line {i}: the quick brown fox jumps over the lazy dog {i % 7} times." for i in range(1000)]
    if gpus >= 2:
        block, device, batch = 256, "cuda", 16
        corpus.write_text("\n".join(text * 4) + "\n")
        setups = [("ddp", {}), ("fsdp", {}), ("fsdp", {"activation_checkpointing": True}), ("fsdp", {"offload": True})]
        note = "2 GPUs, nccl; peak GPU memory is torch.cuda.max_memory_allocated on each rank"
    else:
        block, device, batch = 128, "cpu", 8
        corpus.write_text("\n".join(text[:lines]) + "\n")
        setups = [("ddp", {}), ("fsdp", {}), ("fsdp", {"activation_checkpointing": True}),
                  ("ddp", {"allocator": "system"}), ("fsdp", {"allocator": "system"})]
        note = (f"this machine has {gpus} GPU(s): 2 ranks under gloo on the CPU, one thread each, peak resident memory "
                f"of each rank's process (torch and its libraries included); offload is GPU-only; the last two rows "
                f"run the workers on glibc's malloc instead of tcmalloc")
    folder, parameters = lm_folder(work, corpus, None, 768, 12, block)
    rows = []
    for strategy, extra in setups:
        out = work / f"lm-{strategy}-{'-'.join(f'{k}-{v}' for k, v in extra.items()) or 'plain'}"
        a = tamer.train("causal-lm", data=str(corpus), model=str(folder), block_size=block, epochs=epochs, nproc=2,
                        strategy=strategy, device=device, batch_size=batch, eval_batch_size=batch, progress=False,
                        out=out, **extra)
        run = a.manifest["run"]
        mib = lambda values: " / ".join(str(round(v / MIB)) for v in values) if all(values) else None  # noqa: E731
        rows.append({"setup": strategy.upper() + "".join(f" + {k.replace('_', ' ')}" for k in extra if k != "allocator"),
                     "allocator": run.get("allocator"),
                     "parameters_m": round(parameters / 1e6, 1),
                     "peak_rss_mib_rank0_1": mib(run["peak_rss_bytes_per_rank"]),
                     "peak_gpu_mib_rank0_1": mib(run["peak_accelerator_bytes_per_rank"]),
                     "steps": len(run["epoch_seconds"]) * math.ceil(a.manifest["training"]["sizes"]["train"] / batch),
                     "examples_per_s": round(run["examples_per_second"], 2),
                     "perplexity": round(a.metrics["test"]["perplexity"], 2), "id": a.id[:12]})
        shutil.rmtree(out, ignore_errors=True)
    return rows, note


def table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    text = [" | ".join(keys), " | ".join("---" for _ in keys)]
    for r in rows:
        text.append(" | ".join(json.dumps(r.get(k)) if isinstance(r.get(k), dict) else str(r.get(k, "")) for k in keys))
    return "\n".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--epochs", type=int, default=10, help="digits epochs for fp32 vs bf16")
    p.add_argument("--minilm", type=int, default=300, help="sentences of the MiniLM subset (0: skip)")
    p.add_argument("--lm-epochs", type=int, default=1)
    p.add_argument("--lm-lines", type=int, default=640, help="corpus sentences of the 2-rank run on CPUs (9 steps at 640)")
    p.add_argument("--skip", default="", help="comma-separated: precision, stages, memory")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="tamer-scale-"))
    old = os.getcwd()
    os.chdir(work)  # the default recipe writes its artifacts under the working folder
    try:
        out = {"machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "gpus": torch.cuda.device_count(),
                           "torch": torch.__version__}}
        if "precision" not in skip:
            out["precision"] = precision_rows(work, args.epochs, args.minilm)
        if "stages" not in skip:
            out["stages"], out["run_total"] = stage_rows(work)
        if "memory" not in skip:
            out["memory"], out["memory_note"] = memory_rows(work, args.lm_epochs, args.lm_lines)
    finally:
        os.chdir(old)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(f"machine: {out['machine']}")
    for key, title in (("precision", "fp32 vs bf16 training"), ("stages", "default recipe, per stage"),
                       ("memory", "2 ranks: DDP vs FSDP2 vs FSDP2 + activation checkpointing (+ offload on GPUs)")):
        if key in out:
            print(f"\n## {title}\n{table(out[key])}")
    if "run_total" in out:
        print(f"\nrun total: {json.dumps(out['run_total'])}")
    if "memory_note" in out:
        print(f"\nnote: {out['memory_note']}")


if __name__ == "__main__":
    main()
