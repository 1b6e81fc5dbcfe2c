"""Dynamic batching: concurrent inputs run through the model together (up to max_batch_size, or max_wait_ms after
the first), and a full queue answers 503 with Retry-After at once."""
from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time

import httpx
import pytest
from conftest import serve

from tamer.serving.batcher import DynamicBatcher, QueueFull


def _batches(run_log):
    return [len(b) for b in run_log]


def test_batches_fill_to_the_limit_under_load_and_keep_the_order():
    seen = []

    def run(group, values):
        seen.append(list(values))
        return [v * 10 for v in values]

    async def main():
        b = DynamicBatcher(run, max_batch_size=4, max_wait_ms=1000, max_queue=100)
        b.start()
        out = await asyncio.gather(*(b.submit("m", [i]) for i in range(10)))
        await b.stop()
        return out

    out = asyncio.run(main())
    assert [o[0] for o in out] == [i * 10 for i in range(10)]
    assert _batches(seen)[:2] == [4, 4] and sum(_batches(seen)) == 10


def test_a_lone_input_waits_at_most_max_wait():
    async def main():
        b = DynamicBatcher(lambda g, xs: xs, max_batch_size=64, max_wait_ms=50, max_queue=10)
        b.start()
        start = time.monotonic()
        await b.submit("m", ["x"])
        took = time.monotonic() - start
        await b.stop()
        return took

    assert asyncio.run(main()) < 5.0  # a hang bound: it does not wait for a full batch


def test_inputs_of_different_model_versions_never_share_a_batch():
    seen = []

    async def main():
        b = DynamicBatcher(lambda g, xs: seen.append((g, list(xs))) or [g] * len(xs), 8, 200, 100)
        b.start()
        out = await asyncio.gather(*(b.submit("old" if i % 2 else "new", [i]) for i in range(8)))
        await b.stop()
        return out

    out = asyncio.run(main())
    assert [o[0] for o in out] == ["old" if i % 2 else "new" for i in range(8)]
    assert all(len({v % 2 for v in values}) == 1 for _, values in seen)


def test_one_input_that_breaks_the_batch_fails_alone():
    def run(group, values):
        if "bad" in values:
            raise ValueError("bad input")
        return values

    async def main():
        b = DynamicBatcher(run, 8, 100, 100)
        b.start()
        out = await asyncio.gather(*(b.submit("m", [v]) for v in ["a", "bad", "c"]), return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(main())
    assert out[0] == ["a"] and out[2] == ["c"] and isinstance(out[1], ValueError)


def test_a_full_queue_refuses_at_once():
    gate = threading.Event()

    async def main():
        b = DynamicBatcher(lambda g, xs: gate.wait() and xs, max_batch_size=2, max_wait_ms=0, max_queue=3)
        b.start()
        first = asyncio.ensure_future(b.submit("m", [1, 2, 3]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await b.submit("m", [4])
        gate.set()
        out = await first
        await b.stop()
        return out

    assert asyncio.run(main()) == [1, 2, 3]


def test_the_server_forms_batches_under_concurrent_load(digits_artifact, digit_images):
    with serve(digits_artifact, max_batch_size=16, max_wait_ms=100) as s:
        with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: client.post(s.url + "/v1/predict", json={
                "inputs": [digit_images[i % 12].tolist()]}).status_code, range(48)))
        text = httpx.get(s.url + "/metrics").text
    assert codes == [200] * 48
    count = float(re.search(r"^tamer_batch_size_count (\S+)", text, re.M).group(1))
    total = float(re.search(r"^tamer_batch_size_sum (\S+)", text, re.M).group(1))
    assert total == 48 and count < 48  # fewer model calls than inputs: batches formed


def test_the_server_answers_503_with_retry_after_when_its_queue_is_full(digits_artifact, digit_images):
    gate = threading.Event()
    with serve(digits_artifact, max_batch_size=4, max_queue=8, max_inputs=8) as s:
        s.app.state.tamer.batcher.executor.submit(gate.wait)  # the model thread is busy
        with httpx.Client(timeout=60) as client, concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, s.url + "/v1/predict", json={"inputs": digit_images[:8].tolist()})
            time.sleep(0.3)
            refused = client.post(s.url + "/v1/predict", json={"inputs": digit_images[:1].tolist()})
            depth = client.get(s.url + "/metrics").text
            gate.set()
            accepted = first.result()
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "capacity" in refused.json()["error"]["message"]
    assert "tamer_queue_depth 8.0" in depth
    assert accepted.status_code == 200 and len(accepted.json()["predictions"]) == 8


def test_waits_for_company_only_after_a_batch_that_had_some():
    """After a lone input the next one runs at once (two batches); after a batch of two, a lone input waits for the
    one that arrives 50 ms later (one batch), well within max_wait."""
    seen = []

    async def main():
        b = DynamicBatcher(lambda g, xs: seen.append(list(xs)) or xs, max_batch_size=8, max_wait_ms=3000, max_queue=10)
        b.start()

        async def later(value):
            await asyncio.sleep(0.05)
            return await b.submit("m", [value])

        await b.submit("m", ["warm"])  # a batch of one
        await asyncio.gather(b.submit("m", ["a"]), later("b"))
        await b.submit("m", ["c", "d"])  # a batch of two
        await asyncio.gather(b.submit("m", ["e"]), later("f"))
        await b.stop()

    asyncio.run(main())
    assert seen == [["warm"], ["a"], ["b"], ["c", "d"], ["e", "f"]]
