"""Timing a quantized layer or model against fp32, and the slack within which a tie counts as one."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn


def _median_ms(fn: Callable[[], Any], reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


@torch.inference_mode()
def time_layer(fp32: nn.Module, quant: nn.Module, x: torch.Tensor, reps: int = 5) -> tuple[float, float]:
    """Interleaved medians (ms) of the fp32 and quantized layer on the same input, so load changes hit both."""
    a, b = [], []
    fp32(x), quant(x), fp32(x), quant(x)
    for _ in range(reps):
        a.append(_median_ms(lambda: fp32(x), 1))
        b.append(_median_ms(lambda: quant(x), 1))
    return statistics.median(a), statistics.median(b)


# A small call (<= 128 tokens) takes well under a millisecond per layer, where repeated medians differ by ~5%: int8
# may tie fp32 there within that noise if it is faster on the large call, where the time of a served batch goes.
SMALL_CALL_SLACK = 1.08


# The whole quantized model against fp32 (compare_latency medians, ms per batch): slower than this at either batch
# size, and every layer falls back to fp32 execution.
WHOLE_MODEL_SLACK = {1: SMALL_CALL_SLACK, 32: 1.03}


def slower_than_fp32(latency: dict[int, dict[str, float]]) -> str | None:
    """Why the quantized model as a whole is slower than its fp32 parent ({batch: {"parent": ms, "child": ms}}), or
    None when it is not."""
    for batch, slack in WHOLE_MODEL_SLACK.items():
        child, parent = latency[batch]["child"], latency[batch]["parent"]
        if child > parent * slack:
            return f"the quantized model took {child:.2f} ms against fp32's {parent:.2f} ms at batch {batch}"
    return None

