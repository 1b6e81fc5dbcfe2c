"""Hot swap: a new model loads in the background and replaces the old one atomically; requests in flight finish on
the model they started with, none fails; every worker process follows."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import LiveServer, ServeProcess, serve, wait_ready

import tamer


def _admin(key_file):
    return {"Authorization": f"Bearer {key_file[2]}"}


def test_a_swap_under_load_fails_no_request_and_each_answer_comes_from_one_model(digits_artifact, digits_b,
                                                                                  digit_images, key_file):
    expected = {a.id: tamer.predict(a, digit_images) for a in (digits_artifact, digits_b)}
    client_key = {"Authorization": f"Bearer {key_file[1]}"}
    stop, answers = threading.Event(), []

    def load(client, i):
        while not stop.is_set():
            r = client.post(s.url + "/v1/predict", json={"inputs": [digit_images[i].tolist()]}, headers=client_key)
            answers.append((i, r.status_code, r.json()))

    with serve(digits_artifact, auth=True, api_key_file=str(key_file[0]), max_wait_ms=2) as s:
        with httpx.Client(timeout=60) as client, concurrent.futures.ThreadPoolExecutor(4) as pool:
            runs = [pool.submit(load, client, i) for i in range(4)]
            time.sleep(1.0)
            r = httpx.post(s.url + "/admin/reload", json={"artifact": str(digits_b.path)}, headers=_admin(key_file))
            time.sleep(1.0)
            stop.set()
            for run in runs:
                run.result()
        card = httpx.get(s.url + "/v1/model", headers=client_key).json()
    assert r.status_code == 200 and r.json() == {"model": digits_b.id, "previous": digits_artifact.id, "changed": True}
    assert card["id"] == digits_b.id and card["swaps"] == 1
    assert [code for _, code, _ in answers] == [200] * len(answers)
    models = [body["model"] for _, _, body in answers]
    assert {digits_artifact.id, digits_b.id} == set(models)
    first_new = models.index(digits_b.id)
    assert digits_artifact.id not in models[first_new + 8:]  # after the swap (and the 4 in flight), only the new one
    for i, _, body in answers:
        local = expected[body["model"]][i]["probabilities"]
        np.testing.assert_allclose(list(body["predictions"][0]["probabilities"].values()), list(local.values()),
                                   atol=1e-5)


def test_the_server_follows_a_source_it_polls(digits_artifact, digits_b):
    current = {"path": str(digits_artifact.path)}
    app = tamer.api.serve_app(None, auth=False, source=lambda: current["path"], poll_seconds=0.1)
    with LiveServer(app) as s:
        assert httpx.get(s.url + "/v1/model").json()["id"] == digits_artifact.id
        current["path"] = str(digits_b.path)
        end = time.monotonic() + 60
        while httpx.get(s.url + "/v1/model").json()["id"] != digits_b.id and time.monotonic() < end:
            time.sleep(0.05)
        assert httpx.get(s.url + "/v1/model").json()["id"] == digits_b.id
        current["path"] = "/nonexistent/artifact"  # a broken source keeps the model served
        time.sleep(0.5)
        assert httpx.get(s.url + "/readyz").json()["model"] == digits_b.id


def test_a_reload_that_cannot_load_keeps_the_old_model(digits_artifact, text_artifact, key_file, tmp_path):
    with serve(digits_artifact, auth=True, api_key_file=str(key_file[0])) as s:
        missing = httpx.post(s.url + "/admin/reload", json={"artifact": str(tmp_path / "none")},
                             headers=_admin(key_file))
        other_task = httpx.post(s.url + "/admin/reload", json={"artifact": str(text_artifact.path)},
                                headers=_admin(key_file))
        bad_body = httpx.post(s.url + "/admin/reload", json={"path": "x"}, headers=_admin(key_file))
        ready = httpx.get(s.url + "/readyz").json()
    assert missing.status_code == 400 and "none" in missing.json()["error"]["message"]
    assert other_task.status_code == 409 and "text-classification" in other_task.json()["error"]["message"]
    assert bad_body.status_code == 422
    assert ready["model"] == digits_artifact.id


def test_a_reload_without_an_artifact_returns_to_the_source(digits_artifact, digits_b, key_file):
    with serve(digits_artifact, auth=True, api_key_file=str(key_file[0]), poll_seconds=0) as s:
        pinned = httpx.post(s.url + "/admin/reload", json={"artifact": str(digits_b.path)}, headers=_admin(key_file))
        back = httpx.post(s.url + "/admin/reload", headers=_admin(key_file))
    assert pinned.json()["model"] == digits_b.id and back.json() == {
        "model": digits_artifact.id, "previous": digits_b.id, "changed": True}



@pytest.mark.slow
def test_every_worker_process_swaps(digits_artifact, digits_b, key_file):
    server = ServeProcess(str(digits_artifact.path), "--workers", "2", "--poll-seconds", "0.2",
                          "--api-key-file", str(key_file[0]))
    try:
        wait_ready(server.url)
        r = httpx.post(server.url + "/admin/reload", json={"artifact": str(digits_b.path)}, headers=_admin(key_file))
        assert r.status_code == 200 and r.json()["model"] == digits_b.id
        time.sleep(3)  # more than one poll of every worker, and the new model's load
        seen, workers = set(), set()
        for _ in range(300):  # fresh connections until both workers have answered
            body = httpx.get(server.url + "/readyz", headers={"Connection": "close"}).json()
            seen.add(body["model"])
            workers.add(body["worker"])
            if len(workers) == 2 and len(seen) > 0 and _ > 40:
                break
        code, err = server.terminate()
    finally:
        server.kill()
    assert len(workers) == 2 and seen == {digits_b.id}
    assert code == 0, err
    assert key_file[1] not in err and key_file[2] not in err
