"""The cost of one prediction as served (/v1/model's `cost`, /metrics' counters), against `tamer predict`'s own
record for the same model: the forward FLOPs per input agree, and every input is counted once."""
import re

import httpx
import pytest

import tamer
from conftest import serve


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} is missing from /metrics"
    return float(match.group(1))


def test_served_cost_of_one_prediction_matches_predict(digits_artifact, digit_images):
    _, expected = tamer.predict(digits_artifact, [digit_images[0]], with_cost=True)
    with serve(digits_artifact) as s:
        assert httpx.get(s.url + "/v1/model").json()["cost"]["count"] == 0
        sizes = [1, 3, 5]
        for k in sizes:
            r = httpx.post(s.url + "/v1/predict", json={"inputs": [im.tolist() for im in digit_images[:k]]})
            assert r.status_code == 200
        httpx.post(s.url + "/v1/predict", json={"inputs": [[1.0, 2.0]]})  # refused (422): runs no model
        cost = httpx.get(s.url + "/v1/model").json()["cost"]
        metrics = httpx.get(s.url + "/metrics").text
    assert cost["per"] == "prediction" and cost["count"] == sum(sizes)
    assert cost["flops_forward"] == pytest.approx(expected["flops_per_example"]["forward"], rel=1e-9)
    assert 0 < cost["wall_s"] < 10 and cost["cpu_s"] > 0
    assert _metric(metrics, "tamer_predictions_total") == sum(sizes)
    assert _metric(metrics, "tamer_model_seconds_total") == pytest.approx(cost["wall_s"] * sum(sizes), rel=1e-6)
