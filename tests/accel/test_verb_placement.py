"""--device and --precision on every verb that runs a model, with one meaning: each verb's --help lists both; an
explicit CUDA device on a machine without one is one line and exit 2, before anything runs; `serve` runs its model
at the placement in the server's own threads (which inherit no context); explain's attribution batches go through the
task to the model's device."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

import tamer
from tamer.cli import main
from tamer.device import for_threads, model_device, placed
from tamer.serving.check import sample_inputs

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
VERBS = ["train", "train-private", "federate", "evaluate", "predict", "compress", "explain", "attack", "harden",
         "stability", "serve", "update"]


def _words(verb: str) -> list[str]:
    return ["train", "--private"] if verb == "train-private" else [verb]


@pytest.mark.parametrize("verb", VERBS)
def test_every_model_verb_lists_device_and_precision(verb, capsys):
    with pytest.raises(SystemExit):
        main([*_words(verb), "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "--device" in text and "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps" in text
    assert "--precision" in text and "fp32|bf16|fp16" in text


def _argv(verb: str, path: str, tmp: Path) -> list[str]:
    return {"train": ["train", "digits", "--epochs", "1"],
            "train-private": ["train", "digits", "--private", "--epochs", "1", "--out", str(tmp / "p")],
            "federate": ["federate", "digits", "--rounds", "1", "--out", str(tmp / "f")],
            "evaluate": ["evaluate", path], "predict": ["predict", path, "--index", "0"],
            "compress": ["compress", path, "--quantize", "int8", "--out", str(tmp / "c")],
            "explain": ["explain", path, "--index", "0", "--out", str(tmp / "x")],
            "attack": ["attack", path, "--method", "fgsm", "--limit", "10"],
            "harden": ["harden", path, "--epochs", "1", "--out", str(tmp / "h")],
            "stability": ["stability", path, "--limit", "10"],
            "serve": ["serve", path, "--no-auth", "--port", "0"],
            "update": ["update", "--data", path]}[verb]


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
@pytest.mark.parametrize("verb", VERBS)
def test_explicit_cuda_without_cuda_exits_2_in_one_line_on_every_verb(verb, device, digits_artifact, tmp_path, capsys):
    code = main([*_argv(verb, str(digits_artifact.path), tmp_path), "--device", device, "--quiet"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no CUDA device" in lines[0] and out == "", (verb, err)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def _largest_gap(a: list[dict], b: list[dict]) -> float:
    return max(abs(x["probabilities"][k] - y["probabilities"][k]) for x, y in zip(a, b) for k in x["probabilities"])


def test_served_model_runs_at_the_placement_in_the_servers_threads(digits_artifact):
    from fastapi.testclient import TestClient

    inputs = sample_inputs(digits_artifact, 16)
    fp32 = tamer.predict(digits_artifact, inputs, device="cpu")
    bf16 = tamer.predict(digits_artifact, inputs, device="cpu", precision="bf16")
    assert _largest_gap(fp32, bf16) > 1e-4  # the two precisions give answers told apart

    def served(threads: bool) -> tuple[list[dict], set]:
        with placed("cpu", "bf16") as where, for_threads() if threads else placed():
            with TestClient(tamer.api.serve_app(digits_artifact.path, auth=False, poll_seconds=0)) as client:
                end = time.monotonic() + 120
                while client.get("/readyz").status_code != 200 and time.monotonic() < end:
                    time.sleep(0.05)  # the model loads in the background
                answer = client.post("/v1/predict", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"], set(where.computed)

    rows, computed = served(threads=True)
    assert _largest_gap(rows, bf16) <= 1e-6 and "bfloat16" in computed
    rows, _ = served(threads=False)  # without for_threads the model thread would not know: fp32
    assert _largest_gap(rows, fp32) <= 1e-6


@pytest.mark.slow
def test_tamer_serve_precision_bf16_in_every_worker(digits_artifact):
    """`tamer serve --precision bf16 --workers 2`: each worker process adopts the placement for its threads."""
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.Popen([sys.executable, "-m", "tamer", "serve", str(digits_artifact.path), "--no-auth", "--port",
                             "0", "--workers", "2", "--device", "cpu", "--precision", "bf16", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        url = json.loads(line)["url"]
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        inputs = sample_inputs(digits_artifact, 16)
        bf16 = tamer.predict(digits_artifact, inputs, device="cpu", precision="bf16")
        assert _largest_gap(tamer.predict(digits_artifact, inputs, device="cpu"), bf16) > 1e-4  # fp32 is told apart
        answered = 0
        while answered < 4 and time.monotonic() < end:  # requests land on either worker, each loads on its own
            answer = httpx.post(url + "/v1/predict", json={"inputs": inputs}, timeout=60)
            if answer.status_code == 503:  # that worker's model is still loading
                time.sleep(0.1)
                continue
            assert answer.status_code == 200, answer.text
            assert _largest_gap(answer.json()["predictions"], bf16) <= 1e-6
            answered += 1
        assert answered == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_explain_on_a_chosen_device_moves_attribution_batches_through_the_task(digits_artifact, tmp_path, monkeypatch):
    from tamer.tasks.base import Task

    seen, original = [], Task.to_device

    def spy(self, batch, where):
        seen.append(where if isinstance(where, torch.device) else model_device(where))
        return original(self, batch, where)

    monkeypatch.setattr(Task, "to_device", spy)
    report = tamer.explain(digits_artifact, index=(0, 1), method="ig", out=tmp_path / "x", progress=False,
                           device="cpu", sanity="none")
    assert report.cost["device"] == "cpu" and report.cost["computed_in"] == ["float32"]
    assert len(seen) > 10 and set(seen) == {torch.device("cpu")}  # every forward of every IG step, on the model's device
    bf16 = tamer.explain(digits_artifact, index=(0, 1), method="ig", out=tmp_path / "y", progress=False,
                         device="cpu", precision="bf16", sanity="none")
    assert bf16.cost["computed_in"] == ["bfloat16"]


def test_predict_json_reports_one_predictions_cost_at_its_precision(digits_artifact, capsys):
    assert main(["predict", str(digits_artifact.path), "--index", "2", "--device", "cpu", "--precision", "bf16",
                 "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["per"] == "prediction" and cost["count"] == 1
    assert cost["device"] == "cpu" and cost["precision"] == "bf16" and cost["computed_in"] == ["bfloat16"]
