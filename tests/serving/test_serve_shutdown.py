"""SIGTERM drains: `tamer serve` stops accepting, answers every request it had accepted (here still waiting in the
batcher's queue for a fuller batch: shutdown runs them at once instead of after --max-wait-ms), and exits 0."""
from __future__ import annotations

import concurrent.futures
import re
import time

import httpx
import pytest
from conftest import ServeProcess, wait_ready


def test_sigterm_answers_what_was_accepted_and_exits_0(digits_artifact, digit_images):
    server = ServeProcess(str(digits_artifact.path), "--no-auth", "--max-wait-ms", "60000", "--max-batch-size", "64")
    try:
        wait_ready(server.url)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, server.url + "/v1/predict",
                                   json={"inputs": [digit_images[i].tolist()]}, timeout=60) for i in range(8)]
            end = time.monotonic() + 30
            while time.monotonic() < end:  # all 8 accepted and waiting for their batch
                depth = re.search(r"^tamer_queue_depth (\S+)", httpx.get(server.url + "/metrics").text, re.M)
                if float(depth.group(1)) == 8:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the 8 requests never waited in the queue together")
            code, err = server.terminate(timeout=45)  # a hang bound: well under the 60 s batch wait
            answers = [f.result() for f in futures]
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=5)
    finally:
        server.kill()
    assert code == 0, err
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json()["model"] == digits_artifact.id for a in answers)
