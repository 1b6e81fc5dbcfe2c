"""The explain verb: read the inputs, attribute in batches, score completeness and faithfulness, run the sanity
check and (asked for, or from a batch) the global view, and write the HTML page, JSON and pictures (SVG for text,
PNG for images).

One input costs about two integrated-gradients runs (its own and the sanity check's); the global view over the test
split costs one run per example, so it runs only when asked for (`--global`)."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..artifact import Artifact
from ..errors import UsageError, refuse_existing
from ..progress import progress_bar
from . import aggregate, faithfulness
from .config import GLOBAL_FROM_BATCH, ExplainConfig
from .report import ExplainReport
from .subjects import Item, Subject, length_chunks, make_subject


def batches(subject: Subject, items: list[Item], batch_size: int) -> list[np.ndarray]:
    """Item indices per Captum call: up to `batch_size` items; texts sorted by length and cut where padding would
    exceed PADDING_SLACK, since every padded token costs a full token's forward and backward pass at every IG step."""
    if subject.kind != "text":
        return [np.arange(s, min(s + batch_size, len(items))) for s in range(0, len(items), batch_size)]
    return length_chunks([len(it.ids) for it in items], batch_size)


def attribute_items(subject: Subject, items: list[Item], targets: list[int], config: ExplainConfig, baseline: str,
                    bar=None, bar_task=None) -> tuple[list[list[float]], list[dict]]:
    """Attributions per feature for every item, up to `config.batch_size` items per Captum call (similar lengths together)."""
    scores: list = [None] * len(items)
    info: list = [None] * len(items)
    for idx in batches(subject, items, config.batch_size):
        chunk = [items[i] for i in idx]
        values, a = subject.attribute(chunk, torch.as_tensor([targets[i] for i in idx]), config, baseline)
        for j, i in enumerate(idx):
            scores[i] = values[j]
            info[i] = ({"n_steps": a.steps[j], "completeness_error": a.errors[j], "output_change": a.deltas[j]}
                       if a.steps is not None else {})
        if bar is not None:
            bar.update(bar_task, advance=len(idx))
    return scores, info


def resolve_targets(subject: Subject, items: list[Item], config: ExplainConfig, batch_size: int = 64):
    """(targets, probabilities of the targets, predicted classes): the asked-for target or the prediction."""
    probs = torch.cat([subject.predict(items[s:s + batch_size]) for s in range(0, len(items), batch_size)])
    fixed = subject.parse_target(config.target)
    predicted = probs.argmax(-1)
    targets = predicted if fixed is None else torch.full_like(predicted, fixed)
    return targets.tolist(), probs[torch.arange(len(items)), targets].tolist(), predicted.tolist()


def explain(artifact: Artifact, config: ExplainConfig, out: str | Path, progress: bool = True) -> ExplainReport:
    out = refuse_existing(out, "an explanation")
    if not config.has_source:
        raise UsageError("nothing to explain; give --input TEXT, --input-file FILE or --index N.")
    t0 = time.perf_counter()
    task, model = artifact.load_model()
    subject = make_subject(task, model)
    baseline = subject.check_baseline(config.baseline)
    seed = artifact.split_seed  # a compressed child's test split is its parent's (its own `seed` is the compress seed)
    subject.parse_target(config.target)  # bad targets fail before any work
    items = subject.read_inputs(config, seed)
    targets, target_probs, predicted = resolve_targets(subject, items, config)

    with progress_bar(progress) as bar:
        job = bar.add_task(f"explain ({config.method})", total=len(items))
        scores, info = attribute_items(subject, items, targets, config, baseline, bar, job)

    faith = None
    if config.faithfulness:
        faith = (faithfulness.image_curves if subject.kind == "image" else faithfulness.eraser)(
            subject, items, scores, targets, baseline, config.seed)
    quick = dataclasses.replace(config, max_steps=config.n_steps)  # the sanity check and global view report no completeness
    sanity = None
    if config.sanity != "none":
        k = min(config.sanity_examples, len(items))
        sanity = faithfulness.sanity_check(
            model, lambda m: attribute_items(subject.with_model(m), items[:k], targets[:k], quick, baseline)[0],
            scores[:k], subject.differs(items[:k], baseline), config.sanity, config.seed)
    global_view = None
    if not getattr(subject, "lm", False):
        global_view = _global_view(subject, items, scores, targets, config, quick, baseline, seed)
    rows = []
    for i, it in enumerate(items):
        row = {"name": it.name, "target": targets[i], "target_label": subject.class_name(targets[i]),
               "predicted": subject.class_name(predicted[i]), "probability": target_probs[i], "attributions": scores[i], **info[i]}
        if it.label is not None:
            row["label"] = subject.class_name(it.label)
        if subject.kind == "image":
            row["pixels"] = it.pixels.flatten().tolist()
            row["shape"] = list(it.pixels.shape[-2:])
        else:
            row["text"], row["words"] = it.text, it.words
        rows.append(row)
    errors = [r["completeness_error"] for r in rows if "completeness_error" in r]
    completeness = None if not errors else {
        "tolerance": config.tolerance, "max_error": max(errors), "mean_error": float(np.mean(errors)),
        "max_steps_used": max(r["n_steps"] for r in rows), "within_tolerance": float(np.mean([e <= config.tolerance for e in errors]))}
    report = ExplainReport(task=task.name, kind=subject.kind, artifact=str(artifact.path), artifact_id=artifact.id,
                           method=config.method, baseline=baseline, examples=len(items), items=rows,
                           completeness=completeness, faithfulness=faith, sanity=sanity, global_view=global_view,
                           seconds=time.perf_counter() - t0, out=str(out), options=_options(config))
    _write(report, out)
    return report


def _global_view(subject: Subject, items, scores, targets, config: ExplainConfig, quick: ExplainConfig, baseline: str,
                 seed: int) -> dict | None:
    """Per-class view over `global_examples` test examples when asked for (each costs an attribution run), else over
    the explained batch itself when it holds GLOBAL_FROM_BATCH inputs or more (free), else none."""
    if config.global_examples:
        g_items = subject.test_items(seed)[: config.global_examples] if subject.kind == "image" else \
            subject.test_items(seed, limit=config.global_examples)
        if not g_items:
            return None
        if subject.kind == "image":
            g_targets = [it.label for it in g_items]
        else:
            g_targets = resolve_targets(subject, g_items, ExplainConfig())[0]
        g_scores, _ = attribute_items(subject, g_items, g_targets, quick, baseline)
    elif len(items) >= GLOBAL_FROM_BATCH:
        g_items, g_scores, g_targets = items, scores, targets
    else:
        return None
    if subject.kind == "image":
        return aggregate.image_class_maps(subject, g_items, g_scores, g_targets)
    return aggregate.text_top_words(subject, g_items, g_scores, g_targets, config.top_k)


def _options(config: ExplainConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(config).items()}


def _write(report: ExplainReport, out: Path) -> None:
    """explanation.html, explanation.json and the pictures, written into a temporary folder and renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tamer-tmp-", dir=out.parent))
    try:
        report.files = report.write_files(tmp)
        if out.exists():
            out.rmdir()  # an empty folder the caller made
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
