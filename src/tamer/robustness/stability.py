"""The stability verb: how often predictions flip under Gaussian noise (text: random edits), how often the model
agrees with other artifacts (a reseeded or compressed one), its expected calibration error with a reliability diagram,
and, asked, temperature scaling (Guo et al. 2017) fitted on the validation split, written as a child artifact."""
from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Sequence

import torch

from ..artifact import Artifact, save_artifact
from ..errors import UsageError, refuse_existing
from .config import StabilityConfig
from .data import image_batches, load_split, texts_of
from .report import StabilityReport
from .text import random_edits

# manifest keys that save_artifact writes itself; every other key of the parent (how its weights were quantized or
# pruned, its privacy account) describes the same weights, so the calibrated child keeps it
MANIFEST_OWN = {"schema_version", "task", "model_config", "format", "metrics", "verb", "options", "parents", "parameters",
                "weights_sha256", "files", "versions", "id", "created_at", "run", "temperature"}


@torch.no_grad()
def logits_of(task, model, examples: list[dict], batch_size: int = 256) -> torch.Tensor:
    return torch.cat([task.forward(model, task.collate(examples[s:s + batch_size])).float()
                      for s in range(0, len(examples), batch_size)])


@torch.no_grad()
def flip_rates(task, model, examples: list[dict], kind: str, config: StabilityConfig) -> list[dict[str, float]]:
    """Share of predictions that change under noise, per strength, over `draws` noisy copies of each example."""
    clean = logits_of(task, model, examples).argmax(1)
    gen, rng, out = torch.Generator().manual_seed(config.seed), random.Random(config.seed), []
    texts = texts_of(task, examples) if kind == "text" else []
    for sigma in config.noise:
        flips = 0
        for _ in range(config.draws):
            if kind == "text":
                noisy = [random_edits(t, "char", max(1, round(sigma * len(t.split()))) if sigma else 0, rng) for t in texts]
                preds = torch.cat([task.forward(model, task.encode(noisy[s:s + 256])).argmax(1) for s in range(0, len(noisy), 256)])
            else:
                preds = []
                for batch, space, x, _ in image_batches(task, examples, 256):
                    x_noisy = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(space.low, space.high)
                    preds.append(space.logits(task, model, batch)(x_noisy).argmax(1))
                preds = torch.cat(preds)
            flips += int((preds != clean).sum())
        out.append({"noise": float(sigma), "flip_rate": flips / (config.draws * len(examples))})
    return out


def calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over `bins` equal-width confidence bins, and the bins (reliability diagram)."""
    conf, pred = probs.max(1)
    right = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece, rows = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        n = int(inside.sum())
        acc = float(right[inside].mean()) if n else 0.0
        c = float(conf[inside].mean()) if n else float((lo + hi) / 2)
        ece += n / len(labels) * abs(acc - c)
        rows.append({"low": float(lo), "high": float(hi), "count": n, "accuracy": acc, "confidence": c})
    return ece, rows


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (LBFGS on log T, so T stays positive)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def labels_of(examples: list[dict]) -> torch.Tensor:
    return torch.as_tensor([int(e["labels"]) for e in examples])


def stability(artifact: Artifact, config: StabilityConfig, others: Sequence[Artifact] = (),
              out: str | Path | None = None) -> StabilityReport | Artifact:
    """The report; with `config.calibrate`, the calibrated child written to `out`, the report attached."""
    if config.calibrate:
        if out is None:
            raise UsageError("--calibrate writes a calibrated child artifact; pass --out FOLDER for it.")
        out = refuse_existing(out)
    t0 = time.perf_counter()
    task, model, examples, kind = load_split(artifact, config.split, config.limit)
    torch.manual_seed(config.seed)
    logits, y = logits_of(task, model, examples), labels_of(examples)
    ece, bins = calibration_error(logits.softmax(1), y, config.bins)
    agreement = []
    for other in others:
        if other.task != artifact.task:
            raise UsageError(f"--against {str(other.path)!r} is a {other.task!r} model and {str(artifact.path)!r} a "
                             f"{artifact.task!r} one; compare models of the same task.")
        other_task, other_model = other.load_model()
        theirs = logits_of(other_task, other_model, examples).argmax(1)
        agreement.append({"artifact": str(other.path), "id": other.id, "agreement": float((theirs == logits.argmax(1)).float().mean())})
    report = StabilityReport(task=artifact.task, kind=kind, artifact=str(artifact.path), artifact_id=artifact.id,
                             examples=len(examples), accuracy=float((logits.argmax(1) == y).float().mean()),
                             flip_rates=flip_rates(task, model, examples, kind, config), agreement=agreement, ece=ece,
                             reliability=bins, options=dataclasses.asdict(config))
    if not config.calibrate:
        report.seconds = time.perf_counter() - t0
        return report
    val = load_split(artifact, "val", 0)[2]
    temperature = fit_temperature(logits_of(task, model, val), labels_of(val))
    ece_after, bins_after = calibration_error((logits / temperature).softmax(1), y, config.bins)
    total = temperature * float(artifact.manifest.get("temperature", 1.0))
    metrics = {**artifact.metrics.get("test", {}), "ece": ece_after, "ece_before": ece, "temperature": total}

    def write_files(folder: Path) -> None:
        task.write_files(folder)

    keep = {k: v for k, v in artifact.manifest.items() if k not in MANIFEST_OWN}  # quantization layers, pruning, ...
    child = save_artifact(out, artifact.state_dict(), task=task.to_manifest(), model_config=artifact.manifest["model_config"],
                          verb="stability", options={**dataclasses.asdict(config), "split_seed": artifact.split_seed},
                          metrics={"test": metrics}, parents=[artifact.id], fmt=artifact.manifest.get("format", "fp32"),
                          extra={**keep, "temperature": total}, write_files=write_files)
    report.calibration = {"temperature": total, "ece_before": ece, "ece_after": ece_after, "reliability": bins_after,
                          "artifact": str(out), "id": child.id}
    report.seconds = time.perf_counter() - t0
    return child.with_report(report)
