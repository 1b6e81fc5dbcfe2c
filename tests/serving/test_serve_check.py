"""The serve-check recipe stage: the artifact served on loopback, real requests, every answer equal to tamer
predict's, latency percentiles in the report and its gates."""
from __future__ import annotations

import pytest

import tamer
from tamer.errors import UsageError


def test_serve_check_agrees_with_predict_and_reports_percentiles(digits_artifact):
    report = tamer.api.serve_check(digits_artifact, requests=40, concurrency=4)
    assert report.errors == 0 and report.agreement == 1.0 and report.max_probability_diff <= 1e-4
    assert 0 < report.p50_ms <= report.p90_ms <= report.p99_ms
    assert set(report.gate_metrics()) >= {"agreement", "errors", "p99_ms", "throughput"}
    assert "p99" in report.summary() and "<section>" in report.html()


def test_a_recipe_runs_serve_check_with_a_gate(digits_artifact, tmp_path):
    recipe = {"name": "serve", "task": "digits", "artifact": str(digits_artifact.path),
              "stages": [{"serve-check": {"requests": 20}, "gate": {"agreement": ">= 1.0", "errors": "<= 0"}}]}
    report = tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert report.status == "passed"
    assert "Serve check" in (tmp_path / "run" / "report.html").read_text()


def test_a_bad_serve_check_option_fails_before_anything_runs(digits_artifact, tmp_path):
    recipe = {"task": "digits", "artifact": str(digits_artifact.path), "stages": [{"serve-check": {"requests": 0}}]}
    with pytest.raises(UsageError, match="requests 0"):
        tamer.run(recipe, out=tmp_path / "run", progress=False)
