"""/v1/predict over real HTTP answers what `tamer predict` answers for the same inputs, for every kind of artifact
(fp32, int8, int4, pruned, distilled, sealed with a key file or a passphrase), batched or one at a time."""
from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest
from conftest import serve

import tamer


def _close(served: list[dict], local: list[dict]) -> None:
    assert [p["label"] for p in served] == [p["label"] for p in local]
    for a, b in zip(served, local):
        assert set(a["probabilities"]) == set(b["probabilities"])
        np.testing.assert_allclose([a["probabilities"][k] for k in b["probabilities"]],
                                   list(b["probabilities"].values()), atol=1e-5)


def test_digits_predictions_equal_tamer_predict_flat_or_nested(digits_artifact, digit_images):
    local = tamer.predict(digits_artifact, digit_images)
    with serve(digits_artifact) as s:
        nested = httpx.post(s.url + "/v1/predict", json={"inputs": digit_images.tolist()}).json()
        flat = httpx.post(s.url + "/v1/predict", json={"inputs": digit_images.reshape(-1, 64).tolist()}).json()
        scaled = httpx.post(s.url + "/v1/predict", json={"inputs": (digit_images / 16).tolist()}).json()
    for body in (nested, flat, scaled):
        _close(body["predictions"], local)
        assert body["model"] == digits_artifact.id and {p["model"] for p in body["predictions"]} == {digits_artifact.id}


def test_text_predictions_equal_tamer_predict(text_artifact):
    texts = ["great food and service", "rude staff", "slow and bland but tasty and fresh"]
    with serve(text_artifact) as s:
        body = httpx.post(s.url + "/v1/predict", json={"inputs": texts}).json()
    _close(body["predictions"], tamer.predict(text_artifact, texts))


@pytest.mark.parametrize("max_batch_size", [1, 32])
def test_concurrent_requests_get_their_own_answers_batched_or_not(digits_artifact, digit_images, max_batch_size):
    """Each of 24 concurrent requests is answered with its own input's prediction, whatever it was batched with."""
    local = tamer.predict(digits_artifact, digit_images)
    with serve(digits_artifact, max_batch_size=max_batch_size, max_wait_ms=20) as s:
        with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(12) as pool:
            bodies = list(pool.map(lambda i: client.post(s.url + "/v1/predict", json={
                "inputs": [digit_images[i % 12].tolist()]}).json(), range(24)))
    for i, body in enumerate(bodies):
        _close(body["predictions"], [local[i % 12]])


@pytest.fixture(scope="module")
def children(digits_artifact, tmp_path_factory):
    """Compressed children of the digits model: int8, int4, pruned, distilled."""
    root = tmp_path_factory.mktemp("children")
    return {
        "int8": tamer.compress(digits_artifact, out=root / "int8", progress=False, quantize="int8"),
        "int4": tamer.compress(digits_artifact, out=root / "int4", progress=False, quantize="int4",
                               granularity="channel"),
        "pruned": tamer.compress(digits_artifact, out=root / "pruned", progress=False, prune=0.5,
                                 prune_kind="structured", prune_units="channels"),
        "distilled": tamer.compress(digits_artifact, out=root / "distilled", progress=False,
                                    distill_into="hidden=32,channels=8", distill_epochs=1),
    }


@pytest.mark.parametrize("kind", ["int8", "int4", "pruned", "distilled"])
def test_compressed_children_serve_as_tamer_predict_runs_them(children, digit_images, kind):
    child = children[kind]
    with serve(child) as s:
        body = httpx.post(s.url + "/v1/predict", json={"inputs": digit_images.tolist()}).json()
        card = httpx.get(s.url + "/v1/model").json()
    _close(body["predictions"], tamer.predict(child, digit_images))
    assert card["id"] == child.id and card["lineage"]["parents"]


@pytest.mark.parametrize("how", ["key_file", "passphrase_env"])
def test_sealed_artifacts_serve_decrypted_in_memory(digits_artifact, digit_images, tmp_path, monkeypatch, how):
    if how == "key_file":
        secret = {"key_file": str(tamer.keygen(tmp_path / "k.key"))}
    else:
        monkeypatch.setenv("SERVE_TEST_PASSPHRASE", "correct horse battery staple")
        secret = {"passphrase_env": "SERVE_TEST_PASSPHRASE"}
    sealed = tamer.encrypt(digits_artifact, out=tmp_path / "sealed", **secret)
    with serve(sealed.path if hasattr(sealed, "path") else tmp_path / "sealed", **secret) as s:
        body = httpx.post(s.url + "/v1/predict", json={"inputs": digit_images[:3].tolist()}).json()
        card = httpx.get(s.url + "/v1/model").json()
    _close(body["predictions"], tamer.predict(digits_artifact, digit_images[:3]))
    assert card["sealed"] is True and card["id"] == digits_artifact.id


def test_many_texts_of_mixed_lengths_keep_their_order(text_artifact):
    """Texts run in length-sorted groups inside a batch; each answer still belongs to its own text."""
    words = "great food slow service rude staff tasty and fresh never again".split()
    texts = [" ".join(words[(i * 3) % len(words):][: 1 + (i * 7) % 9]) or "fine" for i in range(21)]
    with serve(text_artifact, max_inputs=32) as s:
        body = httpx.post(s.url + "/v1/predict", json={"inputs": texts}).json()
    _close(body["predictions"], [tamer.predict(text_artifact, [t])[0] for t in texts])
