"""--device: one resolution function (auto picks CPU on a machine without CUDA, an explicit device it lacks is one
sentence and exit 2), batches follow the model's device in Task.to_device, the verbs carry the placement."""
import json

import pytest
import torch
from torch import nn

import tamer
from tamer.cli import main
from tamer.device import Placement, autocast, current, model_device, placed, resolve_device
from tamer.errors import UsageError
from tamer.tasks import make_task

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
gpu = pytest.mark.gpu


def test_auto_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:-1", ""])
def test_bad_device_names_are_refused_naming_what_is_accepted(spec):
    with pytest.raises(UsageError, match="auto .*cpu, cuda, cuda:N or mps"):
        resolve_device(spec)


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_explicit_cuda_without_cuda_is_one_sentence(spec):
    with pytest.raises(UsageError) as info:
        resolve_device(spec)
    message = str(info.value)
    assert "no CUDA device" in message and message.count(". ") == 0 and message.endswith(".")


@no_cuda
def test_cli_explicit_cuda_exits_2_with_one_line(digits_artifact, capsys):
    for argv in (["evaluate", str(digits_artifact.path), "--device", "cuda"],
                 ["predict", str(digits_artifact.path), "--index", "0", "--device", "cuda:0"],
                 ["train", "digits", "--epochs", "1", "--device", "cuda", "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA device" in err[0], err


def test_fp16_on_cpu_is_refused_and_bf16_accepted():
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        with placed("cpu", "fp16"):
            pass
    with placed("cpu", "bf16") as where:
        assert current() is where and where.precision == "bf16"
    assert current() == Placement()  # back to CPU fp32 outside any verb


def test_to_device_moves_every_tensor_and_keeps_the_rest():
    task = make_task("digits", {})
    batch = {"pixels": torch.zeros(2, 1, 8, 8), "labels": torch.tensor([1, 2]), "note": "kept"}
    moved = task.to_device(batch, torch.device("meta"))
    assert moved["pixels"].device.type == "meta" and moved["labels"].device.type == "meta"
    assert moved["note"] == "kept" and batch["pixels"].device.type == "cpu"  # the input is not changed
    model = nn.Linear(2, 2).to("meta")
    assert task.to_device(batch, model)["pixels"].device.type == "meta"


def test_evaluate_moves_its_batches_to_the_model(digits_artifact, monkeypatch):
    """Task.evaluate hands each batch to to_device with the model's device before the forward and the meter."""
    task, model = digits_artifact.load_model()
    seen = []
    original = type(task).to_device

    def spy(self, batch, where):
        seen.append(where if isinstance(where, torch.device) else model_device(where))
        return original(self, batch, where)

    monkeypatch.setattr(type(task), "to_device", spy)
    test = task.splits(digits_artifact.split_seed).test
    metrics = task.evaluate(model, test, batch_size=64)
    assert metrics["examples"] == len(test)
    batches = -(-len(test) // 64)
    assert len(seen) >= batches and set(seen) == {model_device(model)}


def test_verbs_report_where_they_ran(digits_artifact):
    report = tamer.evaluate(digits_artifact, device="cpu")
    assert report.cost["device"] == "cpu" and report.cost["precision"] == "fp32"
    assert tamer.evaluate(digits_artifact).cost["device"] == str(resolve_device("auto"))
    with pytest.raises(UsageError):
        tamer.evaluate(digits_artifact, precision="fp8")


def test_bf16_placement_autocasts_the_forward():
    task = make_task("digits", {})
    task.prepare(0)
    model = task.build_model(task.model_config()).eval()
    dtypes = []
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    batch = {"pixels": torch.rand(3, 1, 8, 8)}
    out32 = task.forward(model, batch)
    with placed("cpu", "bf16"):
        out16 = task.forward(model, batch)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert out16.dtype == torch.float32  # losses and metrics are computed in full precision
    assert torch.allclose(out16, out32, atol=5e-2, rtol=5e-2)
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")


@gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_evaluate_predict_train(digits_artifact, tmp_path):
    report = tamer.evaluate(digits_artifact, device="cuda")
    assert report.cost["device"].startswith("cuda") and report.cost["peak_accelerator_bytes"] > 0
    cpu = tamer.evaluate(digits_artifact, device="cpu")
    assert abs(report.metrics["accuracy"] - cpu.metrics["accuracy"]) <= 0.01
    rows, cost = tamer.predict(digits_artifact, index=0, device="cuda", with_cost=True)
    assert rows[0]["label"] and cost["per"] == "prediction"
    a = tamer.train("digits", epochs=2, out=tmp_path / "a", progress=False)  # one process: auto picks CUDA
    assert a.manifest["run"]["device"].startswith("cuda")
    b = tamer.train("digits", epochs=2, out=tmp_path / "b", progress=False, precision="fp16")
    assert b.metrics["test"]["accuracy"] > 0.5
    assert json.dumps(b.report.cost)


@gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_model_verb_runs_on_cuda(digits_artifact, tmp_path):
    """The capabilities build their tensors on the CPU; Task.forward keeps them off the model's device."""
    cpu = tamer.attack(digits_artifact, method="pgd", epsilon=0.1, steps=5, limit=50, device="cpu")
    cuda = tamer.attack(digits_artifact, method="pgd", epsilon=0.1, steps=5, limit=50, device="cuda")
    assert cuda.cost["device"].startswith("cuda") and abs(cuda.robust_accuracy - cpu.robust_accuracy) <= 0.1
    assert tamer.stability(digits_artifact, limit=50, device="cuda").cost["peak_accelerator_bytes"] > 0
    explained = tamer.explain(digits_artifact, index=(0, 1), method="ig", out=tmp_path / "x", progress=False,
                              device="cuda")
    assert explained.cost["device"].startswith("cuda")
    child = tamer.harden(digits_artifact, method="pgd", epsilon=0.1, epochs=1, limit=50, out=tmp_path / "h",
                         progress=False, device="cuda")
    assert child.report.cost["device"].startswith("cuda")


def test_model_device_looks_through_a_wrapped_model_and_a_bound_method():
    """`compression.compiled(model)` returns a function that functools.wraps the model; Task.forward asks where it is."""
    import functools

    import torch

    from tamer.device import model_device

    model = torch.nn.Linear(2, 2, device="meta")

    @functools.wraps(model)
    def run(*args):
        return model(*args)

    assert model_device(run) == torch.device("meta")
    assert model_device(model.forward) == torch.device("meta")
    assert model_device(lambda x: x) == torch.device("cpu")
