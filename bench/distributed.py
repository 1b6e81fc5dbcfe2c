"""Bench for distributed training and augmentation (issue 3), peers measured in the same run.

    .venv/bin/python bench/distributed.py [--json] [--epochs 3] [--aug-epochs 15] [--repeats 2]

1. Per-rank bytes of parameters + gradients + AdamW state for a 58.7M-parameter model on 2 ranks, tamer's FSDP2
   wrapping vs DDP, counted from the (sharded) local tensors after one optimizer step.
2. Throughput (examples/s) of tamer's loop (`fit`) under DDP vs a hand-written DDP loop (DistributedSampler, DDP,
   AdamW), same model, data, global batch and epochs, interleaved in the same worker processes.
3. 1 vs 2 processes: on 2 shared cores two processes show overhead, not speed-up.
4. Digits test accuracy with and without `--augment default`, also on the test set shifted by one pixel and
   rotated by 10 degrees (scipy.ndimage, independent of tamer's own augmentation code).
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

import torch
from torch import nn

HERE = Path(__file__).resolve()


class BigMLP(nn.Module):
    """7 residual MLP blocks of width 1024 (8.4M parameters each): 58.7M parameters."""

    def __init__(self, width: int = 1024, depth: int = 7):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
                                    for _ in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


def local_bytes(t) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def worker_memory(strategy: str) -> dict:
    from tamer.training.distributed import join, leave, wrap

    world = join(600)
    torch.manual_seed(0)
    model = wrap(BigMLP(), strategy, world)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(4, 1024)).pow(2).mean().backward()
    opt.step()
    params = sum(local_bytes(p) for p in model.parameters())
    grads = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    state = sum(local_bytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    n = sum(p.numel() for p in model.parameters()) if strategy == "ddp" else None
    leave(world)
    return {"rank": world.rank, "params": params, "grads": grads, "optimizer": state, "total": params + grads + state,
            "parameters": n}


def hand_ddp(task, splits, epochs: int, batch_size: int, lr: float) -> tuple[float, int]:
    """The DDP loop people write by hand; validation each epoch on every rank, like tamer. (seconds, examples)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    size = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.manual_seed(0)
    model = task.build_model(task.model_config())
    if size > 1:
        model = DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sampler = DistributedSampler(splits.train, num_replicas=size, rank=rank, shuffle=True, seed=0)
    seen = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        for batch in DataLoader(splits.train, batch_size=batch_size // size, sampler=sampler, collate_fn=task.collate):
            loss = task.loss(task.forward(model, batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(batch["labels"]) * size
        task.evaluate(getattr(model, "module", model), splits.val)
    return time.perf_counter() - t0, seen


def worker_throughput(epochs: int, repeats: int) -> dict:
    from tamer.tasks import make_task
    from tamer.training import TrainConfig
    from tamer.training.distributed import join, leave
    from tamer.training.loop import fit

    world = join(600)
    task = make_task("digits")
    splits = task.prepare(0)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, patience=0)
    hand, ours = [], []
    for _ in range(repeats):  # interleaved, so the machine's load hits both alike
        seconds, seen = hand_ddp(task, splits, epochs, 32, 2e-3)
        hand.append(seen / seconds)
        fitted = fit(task, splits, config, None, False, world)
        ours.append(fitted.examples_per_second)
    leave(world)
    return {"rank": world.rank, "world_size": world.size, "hand": max(hand), "tamer": max(ours)}


def torchrun(args: list[str], nproc: int = 2) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)), "BENCH_OUT": tmp}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                        str(HERE), *args], env=env, check=True, stdout=sys.stderr)
        return [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))]


def shifted(images: torch.Tensor) -> torch.Tensor:
    """Each image moved one pixel to the right (zeros enter on the left)."""
    out = torch.zeros_like(images)
    out[..., 1:] = images[..., :-1]
    return out


def rotated(images: torch.Tensor, degrees: float = 10.0) -> torch.Tensor:
    from scipy.ndimage import rotate

    arr = images.numpy()
    return torch.from_numpy(rotate(arr, degrees, axes=(-1, -2), reshape=False, order=1, mode="constant").astype("float32"))


def augmentation(epochs: int) -> dict:
    import tamer
    from tamer.tasks.base import ListDataset

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("plain", {}), ("augment default", {"augment": "default"})):
            art = tamer.train("digits", epochs=epochs, patience=0, out=Path(tmp) / name.replace(" ", "-"), progress=False, **extra)
            task, model = art.load_model()
            test = task.prepare(0).test
            pixels = torch.stack([e["pixels"] for e in test])
            labels = [e["labels"] for e in test]
            scores = {}
            for variant, x in (("test", pixels), ("shift 1 px", shifted(pixels)), ("rotate 10 deg", rotated(pixels))):
                data = ListDataset([{"pixels": x[i], "labels": labels[i]} for i in range(len(labels))])
                scores[variant] = task.evaluate(model, data)["accuracy"]
            rows[name] = scores
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of digits for the throughput runs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--aug-epochs", type=int, default=15)
    ap.add_argument("--worker", choices=["memory", "throughput"])
    ap.add_argument("--strategy", default="ddp")
    args = ap.parse_args()
    if args.worker:  # inside torchrun (or one plain process)
        result = worker_memory(args.strategy) if args.worker == "memory" else worker_throughput(args.epochs, args.repeats)
        out = os.environ.get("BENCH_OUT")
        if out:
            Path(out, f"rank{result['rank']}.json").write_text(json.dumps(result))
        else:
            print(json.dumps(result))
        return

    t0 = time.perf_counter()
    ddp = torchrun(["--worker", "memory", "--strategy", "ddp"])
    fsdp = torchrun(["--worker", "memory", "--strategy", "fsdp"])
    mem = {"parameters": ddp[0]["parameters"], "ddp_bytes": max(r["total"] for r in ddp),
           "fsdp_bytes": max(r["total"] for r in fsdp)}
    mem["fsdp_over_ddp"] = mem["fsdp_bytes"] / mem["ddp_bytes"]
    two = torchrun(["--worker", "throughput", "--epochs", str(args.epochs), "--repeats", str(args.repeats)])[0]
    torch.set_num_threads(os.cpu_count() or 1)
    one = worker_throughput(args.epochs, args.repeats)
    aug = augmentation(args.aug_epochs)
    result = {"memory": mem, "throughput": {"one_process": one, "two_processes": two}, "augmentation": aug,
              "cores": os.cpu_count(), "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(result))
        return
    mb = 2**20
    print(f"## tamer distributed bench ({os.cpu_count()} cores, CPU/gloo, {result['seconds']} s)\n")
    print("| measure | tamer | peer | ratio |\n|---|---|---|---|")
    print(f"| per-rank params+grads+AdamW state, {mem['parameters'] / 1e6:.1f}M params, 2 ranks (MB) | "
          f"FSDP2 {mem['fsdp_bytes'] / mb:.0f} | DDP {mem['ddp_bytes'] / mb:.0f} | {mem['fsdp_over_ddp']:.3f} |")
    print(f"| digits DDP x2 throughput (examples/s) | {two['tamer']:.0f} | hand-written DDP {two['hand']:.0f} | "
          f"{two['tamer'] / two['hand']:.3f} |")
    print(f"| digits 1 process throughput (examples/s) | {one['tamer']:.0f} | hand-written {one['hand']:.0f} | "
          f"{one['tamer'] / one['hand']:.3f} |")
    print(f"| tamer 2 processes vs 1 (examples/s) | {two['tamer']:.0f} | 1 process {one['tamer']:.0f} | "
          f"{two['tamer'] / one['tamer']:.3f} |")
    print("\nOn 2 shared cores, two processes split the same cores and add gradient all-reduce: overhead, not speed-up.\n")
    print(f"| digits CNN, {args.aug_epochs} epochs | test | shift 1 px | rotate 10 deg |\n|---|---|---|---|")
    for name, scores in aug.items():
        print(f"| {name} | {scores['test']:.3f} | {scores['shift 1 px']:.3f} | {scores['rotate 10 deg']:.3f} |")


if __name__ == "__main__":
    main()
