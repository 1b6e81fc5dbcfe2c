"""ONNX export of fp32 and int8 artifacts, checked against the PyTorch model with ONNX Runtime.

fp32: the graph as is. int8: the graph of the dequantized weights, then ONNX Runtime's dynamic int8
quantization with per-channel weights (its own int8 GEMMs), compared with tamer's int8 PyTorch model.
"""
from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import JobFailed, UsageError
from .config import CompressConfig
from .layers import Int8DynamicLinear, QuantEmbedding, WeightOnlyConv2d, WeightOnlyLinear

ONNX_FILE = "model.onnx"


class KeywordWrapper(nn.Module):
    """Positional ONNX inputs -> the keyword call the task makes (HF models need keywords: `use_cache`)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs)))


@torch.no_grad()
def dequantized_copy(model: nn.Module) -> nn.Module:
    """fp32 modules in place of tamer's quantized ones (same values), for tracing."""
    import copy

    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, (Int8DynamicLinear, WeightOnlyLinear)):
            w = m.weight()
            new = nn.Linear(w.shape[1], w.shape[0], bias=m.bias is not None)
            new.weight.copy_(w)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        elif isinstance(m, WeightOnlyConv2d):
            w = m.weight()
            new = nn.Conv2d(w.shape[1] * m.conv["groups"], w.shape[0], w.shape[2:], bias=m.bias is not None, **m.conv)
            new.weight.copy_(w)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        elif isinstance(m, QuantEmbedding):
            new = nn.Embedding(*m.shape, padding_idx=m.padding_idx)
            new.weight.copy_(m.weight)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model.eval()


def export_onnx(model: nn.Module, batch: dict[str, torch.Tensor], path: Path, int8: bool) -> list[str]:
    """Write `path`; returns the input names. Token inputs get dynamic batch and sequence axes."""
    names = [k for k in batch if k != "labels"]
    inputs = tuple(batch[k] for k in names)
    axes = {k: ({0: "batch", 1: "sequence"} if batch[k].dtype == torch.long and batch[k].dim() == 2 else {0: "batch"}) for k in names}
    target = path.with_suffix(".fp32.onnx") if int8 else path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it is the one that handles HF models here
        torch.onnx.export(KeywordWrapper(model, names).eval(), inputs, str(target), input_names=names,
                          output_names=["output"], dynamic_axes={**axes, "output": {0: "batch"}}, dynamo=False,
                          opset_version=17)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(target), str(path), per_channel=True, weight_type=QuantType.QInt8)
        target.unlink()
    return names


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_run(session, names: list[str], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {k: batch[k].numpy() for k in names})[0])


class OrtModel(nn.Module):
    """An ONNX Runtime session called like the PyTorch model it was exported from (keywords in, a tensor out), so
    the task's own evaluation measures the exported graph itself."""

    def __init__(self, session, names: list[str]):
        super().__init__()
        self.session, self.names = session, names

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return ort_run(self.session, self.names, inputs)


@torch.inference_mode()
def test_parity(task, model: nn.Module, onnx_model: nn.Module, dataset, batch_size: int = 64) -> tuple[dict, dict, dict]:
    """(eager metrics, ONNX metrics, parity) over the whole test split: the same batches through both, the task's
    meter on each, and how often their predictions agree (classifiers: the same top class; language models: the
    same next-token choice at every labelled position)."""
    from torch.utils.data import DataLoader

    eager, exported = task.meter(), task.meter()
    same = total = 0
    diff = 0.0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=task.collate):
        ref, got = task.forward(model, batch).float(), task.forward(onnx_model, batch).float()
        eager.update(ref, batch, task.loss(ref, batch))
        exported.update(got, batch, task.loss(got, batch))
        diff = max(diff, float((ref - got).abs().max()))
        if ref.dim() >= 2:
            agree = ref.argmax(-1) == got.argmax(-1)
            if task.kind == "language-model":
                agree = agree[:, :-1][batch["labels"][:, 1:] != -100]
            same, total = same + int(agree.sum()), total + agree.numel()
    parity = {"max_abs_diff": diff, "prediction_agreement": same / total if total else None, "examples": len(dataset)}
    return eager.result(), exported.result(), parity


def export_step(parent: Artifact, config: CompressConfig, out: Path, progress: bool):
    from .measure import calibration_batches, headline, latency_batch
    from .report import StepResult
    from .child import weights_bytes, write_child

    fmt = parent.manifest.get("format", "fp32")
    if fmt not in ("fp32", "int8"):
        raise UsageError(f"--export onnx takes fp32 and int8 artifacts, and {str(parent.path)!r} is {fmt}; export its parent.")
    task, model = parent.load_model()
    splits = task.splits(parent.split_seed)
    batches = calibration_batches(task, splits.test, 64, 0, batch_size=16)
    tmp = Path(out).with_name(f".{Path(out).name}.onnx-tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        onnx_path = tmp / ONNX_FILE
        names = export_onnx(dequantized_copy(model) if fmt == "int8" else model, batches[0], onnx_path, fmt == "int8")
        session = ort_session(onnx_path)
        diffs, xs, ys = [], [], []
        with torch.inference_mode():
            for b in batches:
                ref, got = task.forward(model, b).float(), ort_run(session, names, b).float()
                diffs.append(float((ref - got).abs().max()))
                xs.append(ref.reshape(-1)); ys.append(got.reshape(-1))
        cosine = float(torch.nn.functional.cosine_similarity(torch.cat(xs), torch.cat(ys), dim=0))
        max_diff = max(diffs)
        if fmt == "fp32" and max_diff > 1e-3:
            raise JobFailed(f"the ONNX graph differs from the PyTorch model by {max_diff:.3g} (more than 1e-3); not written.")
        lat = {}
        for n in (1, 32):
            b = latency_batch(task, splits.test, n)
            t_torch, t_ort = [], []
            with torch.inference_mode():
                task.forward(model, b), ort_run(session, names, b)
                for _ in range(5):
                    t = time.perf_counter(); task.forward(model, b); t_torch.append(time.perf_counter() - t)
                    t = time.perf_counter(); ort_run(session, names, b); t_ort.append(time.perf_counter() - t)
            lat[f"batch{n}"] = {"parent": statistics.median(t_torch) * 1e3, "child": statistics.median(t_ort) * 1e3}
        eager_metrics, onnx_metrics, parity = test_parity(task, model, OrtModel(session, names), splits.test)
        parity.update({f"eager_{task.metric}": eager_metrics.get(task.metric), f"onnx_{task.metric}": onnx_metrics.get(task.metric)})
        import shutil

        info = {"onnx_max_abs_diff": max_diff, "onnx_cosine": cosine, "onnx_bytes": onnx_path.stat().st_size, "inputs": names}
        extra = {"onnx": {**info, "file": ONNX_FILE, "runtime": "onnxruntime int8 dynamic" if fmt == "int8" else "fp32",
                          "test_parity": parity}}
        if "quantization" in parent.manifest:
            extra["quantization"] = parent.manifest["quantization"]
        child = write_child(out, parent, task, model, parent.manifest["model_config"], config, "export", fmt,
                       onnx_metrics, extra=extra, files=lambda folder: shutil.copy(onnx_path, folder / ONNX_FILE),
                       run={"latency_ms": lat})
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return child, StepResult(step="export", artifact=str(child.path), id=child.id,
                             detail=f"onnx ({extra['onnx']['runtime']}); latency: PyTorch -> ONNX Runtime",
                             parent_bytes=weights_bytes(parent), child_bytes=info["onnx_bytes"], metric=task.metric,
                             parent_metric=headline(task, eager_metrics), child_metric=headline(task, onnx_metrics),
                             latency_ms=lat, agreement=cosine,
                             extra={"onnx_max_abs_diff": max_diff, "onnx_cosine": cosine,
                                    "onnx_test_max_abs_diff": parity["max_abs_diff"],
                                    **({"onnx_prediction_agreement": parity["prediction_agreement"]}
                                       if parity["prediction_agreement"] is not None else {})})
