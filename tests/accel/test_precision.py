"""--precision: bf16 training on CPU ends within a stated tolerance of fp32 on digits; the loop's gradient scaler
(fp16's) gives the same step as no scaler when nothing overflows."""
import copy

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import tamer
from tamer.errors import UsageError
from tamer.loop import Loop
from tamer.training import TrainConfig

# bf16 keeps 8 bits of mantissa; on the digits CNN we accept 3 points of test accuracy against fp32 (measured: 0.822
# vs 0.826 after 2 epochs, 0.974 vs 0.974 after 10)
BF16_TOLERANCE = 0.03


@pytest.mark.parametrize("epochs,floor", [(2, 0.7), pytest.param(10, 0.95, marks=pytest.mark.slow)])
def test_bf16_training_on_cpu_is_within_tolerance_of_fp32(tmp_path, epochs, floor):
    fp32 = tamer.train("digits", epochs=epochs, out=tmp_path / "fp32", progress=False, device="cpu")
    bf16 = tamer.train("digits", epochs=epochs, out=tmp_path / "bf16", progress=False, device="cpu", precision="bf16")
    a, b = fp32.metrics["test"]["accuracy"], bf16.metrics["test"]["accuracy"]
    assert a > floor and abs(a - b) <= BF16_TOLERANCE, (a, b)
    assert bf16.report.cost["precision"] == "bf16" and bf16.manifest["options"]["precision"] == "bf16"
    assert fp32.id != bf16.id  # precision is part of the weights' recipe; the device is not
    curve = [row["train_loss"] for row in bf16.manifest["training"]["learning_curve"]]
    assert curve[-1] < curve[0] / 2  # bf16 training converges, not just ends near


def test_fp16_is_refused_on_cpu_in_one_sentence(tmp_path):
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        tamer.train("digits", epochs=1, out=tmp_path / "a", progress=False, device="cpu", precision="fp16")


def test_precision_is_a_checked_option():
    with pytest.raises(UsageError, match="--precision 'fp8' is not accepted"):
        tamer.train("digits", epochs=1, precision="fp8")
    assert TrainConfig().precision == "fp32" and TrainConfig().device == "auto"


def _one_step(scaler):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    data = [{"x": torch.randn(16, 4), "y": torch.randn(16, 1)} for _ in range(3)]
    clipped = []
    loop = Loop(model, torch.optim.SGD(model.parameters(), lr=0.1), data,
                lambda m, b: nn.functional.mse_loss(m(b["x"]), b["y"]), epochs=1, scaler=scaler,
                after_backward=[lambda: clipped.append(float(nn.utils.clip_grad_norm_(model.parameters(), 1e9)))])
    loop.run()
    return copy.deepcopy(model.state_dict()), clipped


def test_loop_scaler_scales_and_unscales_exactly():
    plain, norms = _one_step(None)
    scaled, scaled_norms = _one_step(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    for k in plain:
        torch.testing.assert_close(scaled[k], plain[k], rtol=1e-5, atol=1e-6)
    # the after_backward hooks (clipping) saw the unscaled gradients
    assert scaled_norms == pytest.approx(norms, rel=1e-5)


@pytest.mark.parametrize("cpuinfo, native", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n", True),  # Cooper Lake on
    ("flags\t\t: fpu sse2 avx2 amx_bf16 amx_tile amx_int8\n", True),  # Sapphire Rapids
    ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # Arm v8.6
    ("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n", False),  # AVX-512 without its BF16 extension
    ("processor\t: 0\nFeatures\t: fp asimd crc32\n", False),
])
def test_cpu_bf16_support_is_read_from_the_cpu_flags(monkeypatch, tmp_path, cpuinfo, native):
    import builtins

    from tamer.device import cpu_has_bf16

    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(fake if path == "/proc/cpuinfo" else path, *a, **k))
    cpu_has_bf16.cache_clear()  # read once per process; read the fake here
    assert cpu_has_bf16() is native
    cpu_has_bf16.cache_clear()


@pytest.mark.parametrize("native", [False, True])
def test_bf16_without_bf16_arithmetic_says_so_in_the_cost(digits_artifact, tmp_path, monkeypatch, native):
    """On a CPU without bf16 arithmetic a bf16 run says it is converted (slower, same results); with it, nothing."""
    from tamer import device

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
    said = lambda cost: any("no bf16 arithmetic" in n for n in cost["notes"])  # noqa: E731
    image = load_digits().images[0].tolist()
    _, cost = tamer.predict(digits_artifact, [image], device="cpu", precision="bf16", with_cost=True)
    assert said(cost) is not native
    assert not said(tamer.predict(digits_artifact, [image], device="cpu", precision="fp32", with_cost=True)[1])
    trained = tamer.train("digits", epochs=1, precision="bf16", device="cpu", progress=False, out=tmp_path / "a")
    assert said(trained.report.cost) is not native

