"""serve-check, the recipe stage: start the server on a free loopback port, send real requests (the artifact's
own test inputs, with a key), compare every answer with `tamer predict` on the same inputs, stop it; a report with
agreement, errors, throughput and latency percentiles."""
from __future__ import annotations

import concurrent.futures
import html
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..config import check, field
from ..errors import JobFailed
from ..report import Report, table_html


@dataclass(frozen=True)
class ServeCheckConfig:
    requests: int = field(100, "requests sent, one input each (the test split's first inputs, cycled)")
    concurrency: int = field(8, "requests in flight at once")
    max_batch_size: int = field(32, "the server's --max-batch-size")
    max_wait_ms: float = field(5.0, "the server's --max-wait-ms")
    tolerance: float = field(1e-4, "largest difference of a probability still counted as the same answer")

    def __post_init__(self):
        check(self.requests >= 1, f"requests {self.requests} is not accepted; use a positive integer.")
        check(1 <= self.concurrency <= 256, f"concurrency {self.concurrency} is out of range; use 1..256.")
        check(self.tolerance >= 0, f"tolerance {self.tolerance} is not accepted; use a value >= 0.")


@dataclass
class ServeCheckReport(Report):
    artifact: str
    id: str
    requests: int
    concurrency: int
    errors: int
    agreement: float  # answers equal to tamer predict's (same label, probabilities within tolerance)
    max_probability_diff: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    seconds: float
    title = "serve-check"

    def gate_metrics(self) -> dict[str, float]:
        return {"agreement": self.agreement, "errors": float(self.errors), "throughput": self.throughput,
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
                "max_probability_diff": self.max_probability_diff}

    def summary(self) -> str:
        return (f"served {self.id}: {self.requests} requests at concurrency {self.concurrency}, {self.errors} errors, "
                f"agreement with tamer predict {self.agreement:.3f}; {self.throughput:.1f} req/s, latency p50 "
                f"{self.p50_ms:.1f} ms, p90 {self.p90_ms:.1f} ms, p99 {self.p99_ms:.1f} ms")

    def html(self) -> str:
        rows = [("requests", self.requests), ("concurrency", self.concurrency), ("errors", self.errors),
                ("agreement with tamer predict", self.agreement), ("largest probability difference",
                                                                   self.max_probability_diff),
                ("throughput (req/s)", self.throughput), ("latency p50 (ms)", self.p50_ms),
                ("latency p90 (ms)", self.p90_ms), ("latency p99 (ms)", self.p99_ms)]
        return (f"<section><h2>Serve check · {html.escape(self.id)}</h2><p class=muted>{html.escape(self.artifact)} "
                f"behind tamer serve on loopback</p>{table_html(rows)}</section>")


def sample_inputs(artifact: Any, n: int) -> list[Any]:
    """Raw inputs a client would send, from the artifact's test split: images as nested lists, texts decoded from
    their tokens (the first half of a language model's block as a prompt)."""
    task, _ = artifact.load_model()
    test = task.splits(artifact.split_seed).test
    out = []
    for i in range(min(n, len(test))):
        example = test[i]
        if "pixels" in example:
            out.append(example["pixels"][0].tolist())
        else:
            ids = list(example["input_ids"])
            ids = ids[: max(1, len(ids) // 2)] if task.kind == "language-model" else ids
            out.append(task.tokenizer.decode(ids, skip_special_tokens=True).strip() or "a")
    return out


def _same(served: dict, local: dict, tolerance: float) -> tuple[bool, float]:
    if "generated_text" in local:
        return served.get("generated_text") == local["generated_text"], 0.0
    diff = max((abs(served["probabilities"][k] - v) for k, v in local.get("probabilities", {}).items()), default=0.0)
    return served.get("label") == local.get("label") and diff <= tolerance, diff


def run_check(app: Any, key: str, inputs: list[Any], expected: list[dict], config: ServeCheckConfig,
              artifact: Any) -> ServeCheckReport:
    """Serve `app` under uvicorn in a thread on a free loopback port, send `config.requests` requests, stop it."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_ready(url)

        def send(i: int) -> tuple[float, Any]:
            body = json.dumps({"inputs": [inputs[i % len(inputs)]]}).encode()
            request = urllib.request.Request(url + "/v1/predict", body, {
                "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as r:
                    answer = json.loads(r.read())["predictions"][0]
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                answer = exc
            return time.perf_counter() - start, answer

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(config.concurrency) as pool:
            results = list(pool.map(send, range(config.requests)))
        seconds = time.perf_counter() - start
    finally:
        server.should_exit = True
        thread.join(60)
    errors = sum(isinstance(a, Exception) for _, a in results)
    compared = [_same(a, expected[i % len(expected)], config.tolerance) for i, (_, a) in enumerate(results)
                if not isinstance(a, Exception)]
    latencies = sorted(t for t, _ in results)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return ServeCheckReport(str(artifact.path), artifact.id, config.requests, config.concurrency, errors,
                            sum(ok for ok, _ in compared) / config.requests, max((d for _, d in compared), default=0.0),
                            config.requests / seconds, q[49] * 1000, q[89] * 1000, q[98] * 1000, seconds)


def _wait_ready(url: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise JobFailed(f"the server at {url} was not ready within {timeout:.0f} s")
