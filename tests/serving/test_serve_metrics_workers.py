"""/metrics under `tamer serve --workers 2` answers for the whole server whichever worker takes the scrape
(prometheus-client's multiprocess mode in a private directory the server removes on exit); a worker that dies
leaves its counts in the sums and its gauges out; apps in one process still count apart."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import SRC, ServeProcess, serve, wait_ready
from prometheus_client.multiprocess import MultiProcessCollector

FRESH = {"Connection": "close"}  # a new connection per request: the kernel spreads them over the workers


def _value(text: str, sample: str) -> float:
    found = re.findall(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert len(found) == 1, f"{sample} appears {len(found)} times in\n{text}"
    return float(found[0])


def _predict_ok(text: str) -> float:
    return _value(text, 'tamer_requests_total{code="200",route="/v1/predict"}')


def _worker_counts(directory: Path) -> dict[int, float]:
    """/v1/predict 200s per worker, read from each worker's own counter file (not through the server)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        counts[pid] = sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
                          if s.name == "tamer_requests_total" and s.labels == {"code": "200", "route": "/v1/predict"})
    return counts


def _workers(url: str, want: int = 2, timeout: float = 120) -> set[int]:
    """The pids of ready workers, asked on fresh connections until `want` have answered (a hang bound: a worker
    loads its model after it starts)."""
    pids, end = set(), time.monotonic() + timeout
    while len(pids) < want and time.monotonic() < end:
        r = httpx.get(url + "/readyz", headers=FRESH, timeout=10)
        if r.status_code == 200:
            pids.add(r.json()["worker"])
        else:
            time.sleep(0.02)
    return pids


def _start(artifact, tmp_path: Path) -> tuple[ServeProcess, Path]:
    """A 2-worker server whose temporary files go under `tmp_path`, and its metrics directory."""
    server = ServeProcess(str(artifact.path), "--workers", "2", "--no-auth", env={"TMPDIR": str(tmp_path)})
    wait_ready(server.url)
    assert len(_workers(server.url)) == 2  # both have loaded the model
    dirs = list(tmp_path.glob("tamer-metrics-*"))
    assert len(dirs) == 1, dirs
    return server, dirs[0]


@pytest.mark.slow
def test_any_worker_answers_metrics_for_the_whole_server(digits_artifact, digit_images, tmp_path):
    server, directory = _start(digits_artifact, tmp_path)
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        sizes = [1 + i % 3 for i in range(30)]
        for i, k in enumerate(sizes):
            r = httpx.post(server.url + "/v1/predict", headers=FRESH, timeout=30,
                           json={"inputs": [digit_images[(i + j) % 12].tolist() for j in range(k)]})
            assert r.status_code == 200
        per_worker = _worker_counts(directory)
        pids = _workers(server.url)
        scrapes = [httpx.get(server.url + "/metrics", headers=FRESH).text for _ in range(12)]
        code, err = server.terminate()
    finally:
        server.kill()
    assert code == 0, err
    assert pids == {p for p, n in per_worker.items() if n > 0} and len(pids) == 2  # both workers answered predicts
    assert sum(per_worker.values()) == len(sizes)
    for text in scrapes:  # whichever worker took the scrape
        assert _predict_ok(text) == len(sizes)
        assert _value(text, "tamer_batch_size_sum") == sum(sizes)  # every input ran in exactly one batch
        assert 1 <= _value(text, "tamer_batch_size_count") <= len(sizes)
        assert _value(text, 'tamer_batch_size_bucket{le="+Inf"}') == _value(text, "tamer_batch_size_count")
        assert _value(text, "tamer_queue_depth") == 0
        models = re.findall(r'^tamer_model_info\{id="([^"]+)",pid="(\d+)",task="digits"\} 1\.0$', text, re.M)
        assert sorted(models) == sorted((digits_artifact.id, str(p)) for p in pids)
    assert not directory.exists() and not list(tmp_path.glob("tamer-*"))  # removed on SIGTERM


@pytest.mark.slow
def test_a_killed_worker_keeps_its_counts_and_drops_its_gauges(digits_artifact, digit_images, tmp_path):
    server, directory = _start(digits_artifact, tmp_path)
    try:
        for i in range(12):
            assert httpx.post(server.url + "/v1/predict", headers=FRESH, timeout=30,
                              json={"inputs": [digit_images[i].tolist()]}).status_code == 200
        per_worker = _worker_counts(directory)
        victim = max(per_worker, key=per_worker.get)  # one that answered at least one of them
        assert per_worker[victim] > 0
        os.kill(victim, signal.SIGKILL)
        pids = _workers(server.url)  # the survivor and the replacement uvicorn's supervisor starts
        assert len(pids) == 2 and victim not in pids
        text = httpx.get(server.url + "/metrics", headers=FRESH).text
        code, err = server.terminate()
    finally:
        server.kill()
    assert code == 0, err
    assert _predict_ok(text) == 12  # the dead worker's requests still count
    models = re.findall(r'^tamer_model_info\{id="[^"]+",pid="(\d+)",task="digits"\} 1\.0$', text, re.M)
    assert sorted(int(p) for p in models) == sorted(pids)
    assert not directory.exists()


def _in_shared_mode(directory: Path, code: str) -> str:
    """Run `code` in a fresh process counting in multiprocess mode in `directory`; its stdout."""
    return subprocess.run([sys.executable, "-c", "from tamer.serving.metrics import ServeMetrics, forget_exited\n"
                           "import os\nm = ServeMetrics()\nassert m.shared\n" + code],
                          capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC), "PROMETHEUS_MULTIPROC_DIR": str(directory)}).stdout


def test_processes_in_shared_mode_add_up_and_exited_ones_leave_the_gauges(tmp_path):
    """What the workers do, without a server: two processes count, swap and queue; a third renders the sums, then
    forgets one of them as the supervisor does for an exited worker."""
    pids = []
    for k, models in ((3, ["a"]), (5, ["a", "b"])):  # the second swapped a -> b
        pids.append(int(_in_shared_mode(tmp_path, "".join(f"m.serving({x!r}, 'digits')\n" for x in models) + (
            f"for _ in range({k}): m.observe('/v1/predict', 200, 0.01); m.batch_size.observe(1)\n"
            f"m.queue_depth.set({k})\nprint(os.getpid())"))))
    both = _in_shared_mode(tmp_path, f"print(m.render().decode())\nforget_exited({str(tmp_path)!r}, {{{pids[0]}}})\n"
                                     "print('--'); print(m.render().decode())")
    before, after = both.split("--\n")
    for text in (before, after):  # counts of exited processes stay
        assert _predict_ok(text) == 8 and _value(text, "tamer_batch_size_count") == 8
    assert _value(before, "tamer_queue_depth") == 8 and _value(after, "tamer_queue_depth") == 3
    models = r'^tamer_model_info\{id="(\w+)",pid="(\d+)",task="digits"\} (\S+)$'
    assert sorted(re.findall(models, before, re.M)) == [("a", str(pids[0]), "1.0"), ("b", str(pids[1]), "1.0")]
    assert re.findall(models, after, re.M) == [("a", str(pids[0]), "1.0")]


def test_apps_in_one_process_count_apart(digits_artifact, digit_images):
    with serve(digits_artifact) as a, serve(digits_artifact) as b:
        for _ in range(3):
            httpx.post(a.url + "/v1/predict", json={"inputs": [digit_images[0].tolist()]})
        httpx.post(b.url + "/v1/predict", json={"inputs": [digit_images[0].tolist()]})
        texts = [httpx.get(s.url + "/metrics").text for s in (a, b)]
    assert [_predict_ok(t) for t in texts] == [3, 1]
    assert _value(texts[0], f'tamer_model_info{{id="{digits_artifact.id}",task="digits"}}') == 1  # no pid label
