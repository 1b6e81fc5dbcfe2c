"""Compressed artifacts across devices and machines: int8 layers dequantized where their CPU kernels do not run (and
the report says so), the per-layer speed choices re-timed on a CPU other than the one that chose them."""
import pytest
import torch
from torch import nn

import tamer
from tamer.compression.layers import Int8DynamicLinear, WeightOnlyLinear, layer_from_codes
from tamer.compression.portable import dequantize_int8, machine, make_portable
from tamer.compression.qmath import quantize
from tamer.device import placed


def _int8_model():
    torch.manual_seed(0)
    fp32 = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    model = nn.Sequential(*[layer_from_codes(m, quantize(m.weight.detach(), 8, "sym", "channel"), "int8-dynamic")
                            if isinstance(m, nn.Linear) else m for m in fp32])
    return fp32, model.eval()


@torch.no_grad()
def test_dequantized_int8_equals_its_codes_and_stays_near_int8():
    fp32, model = _int8_model()
    x = torch.randn(16, 64)
    int8_out = model(x)
    weights = [m.weight() for m in model if isinstance(m, Int8DynamicLinear)]
    assert dequantize_int8(model) == ["0", "2"]
    assert not any(isinstance(m, Int8DynamicLinear) for m in model.modules())
    for layer, w in zip([model[0], model[2]], weights):
        assert isinstance(layer, nn.Linear) and torch.equal(layer.weight, w)  # exactly the codes times the scales
    out = model(x)
    assert (out - int8_out).norm() / int8_out.norm() < 0.02  # only the activations' int8 rounding differs
    assert (out - fp32(x)).norm() / fp32(x).norm() < 0.02


def test_off_the_cpu_int8_is_dequantized_and_the_report_says_so():
    _, model = _int8_model()
    with placed("cpu") as where:
        make_portable(model, {}, device=torch.device("cuda"))
    assert len(where.notes) == 1 and "2 int8 layers were dequantized" in where.notes[0]


def test_choices_timed_elsewhere_are_retimed_here():
    _, model = _int8_model()
    here = machine()
    with placed("cpu") as same:
        make_portable(model, {"run": {"quantization": {"machine": here}}})
    assert same.notes == []
    elsewhere = {**here, "cpu": "Some Other CPU @ 3.0GHz", "int8_dot_product": not here["int8_dot_product"]}
    with placed("cpu") as other:
        make_portable(model, {"run": {"quantization": {"machine": elsewhere}}})
    assert len(other.notes) == 1 and "timed on another machine (Some Other CPU" in other.notes[0]
    assert "of 2 int8 layers are slower than fp32" in other.notes[0]
    assert all(isinstance(m, Int8DynamicLinear) for m in (model[0], model[2]))  # the artifact's layers stay as recorded


def test_compress_records_the_machine_and_loads_quietly_on_it(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, quantize="int8", out=tmp_path / "q", progress=False)
    assert child.manifest["run"]["quantization"]["machine"] == machine()
    report = tamer.evaluate(child, device="cpu")
    assert report.cost["notes"] == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_made_int8_and_int4_run_on_cuda(digits_artifact, tmp_path):
    for bits in ("int8", "int4"):
        child = tamer.compress(digits_artifact, quantize=bits, out=tmp_path / bits, progress=False, device="cpu")
        on_gpu, on_cpu = tamer.evaluate(child, device="cuda"), tamer.evaluate(child, device="cpu")
        assert abs(on_gpu.metrics["accuracy"] - on_cpu.metrics["accuracy"]) <= 0.01
        layers = child.manifest["quantization"]["layers"].values()
        if any(spec["exec"] == "int8-dynamic" for spec in layers):
            assert any("dequantized" in n for n in on_gpu.cost["notes"])
        with placed("cuda"):
            _, model = child.load_model()
        assert all(t.device.type == "cuda" for t in [*model.parameters(), *model.buffers()])
        assert bits == "int8" or any(isinstance(m, WeightOnlyLinear) for m in model.modules())  # int4 stays coded
