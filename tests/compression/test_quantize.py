"""Quantized artifacts: saved and loaded models give identical outputs; int8 GEMM matches its reference; GPTQ."""
import pytest
import torch
from torch import nn

import tamer
from tamer.artifact import Artifact
from tamer.compression import CompressConfig
from tamer.compression.gptq import gptq_quantize_weight
from tamer.compression.layers import REDUCE_RANGE, Int8DynamicLinear, QuantEmbedding, WeightOnlyLinear
from tamer.compression.qmath import quantize
from tamer.compression.layers import layer_from_codes


def _same_outputs(task, a, b, n=16):
    batch = task.collate([task.prepare(0).test[i] for i in range(n)])
    with torch.inference_mode():
        return torch.equal(task.forward(a, batch), task.forward(b, batch))


def test_int8_digits_round_trip(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, out=tmp_path / "q", progress=False, quantize="int8")
    report = child.report
    assert child.manifest["format"] == "int8" and child.manifest["parents"] == [digits_artifact.id]
    step = report.steps[0]
    assert step.size_ratio < 0.3
    assert abs(step.child_metric - step.parent_metric) <= 0.02
    layers = child.manifest["quantization"]["layers"]
    assert {r["exec"] for r in layers.values()} <= {"int8-dynamic", "fp32-fallback"}
    reasons = child.manifest["run"]["quantization"]["layers"]  # per-run, outside the id
    assert all(reasons[n]["reason"] for n in layers) and not any("timing" in r or "reason" in r for r in layers.values())
    state = child.state_dict()
    assert state["classifier.1.qweight"].dtype == torch.int8 and "classifier.1.weight" not in state
    task, loaded = Artifact.load(child.path).load_model()
    task2, again = tamer.load(child.path).load_model()
    assert _same_outputs(task, loaded, again)
    assert tamer.evaluate(child.path).metrics["accuracy"] == child.metrics["test"]["accuracy"] == step.child_metric


def test_saved_and_loaded_equals_in_memory(digits_artifact, tmp_path):
    from tamer.compression.quantize import quantize_model

    task, fp32 = digits_artifact.load_model()
    child = tamer.compress(digits_artifact, out=tmp_path / "q", progress=False, quantize="int4", group_size=32,
                              embeddings=False)
    _, loaded = child.load_model()
    config = CompressConfig(quantize="int4", group_size=32)
    mem, _ = quantize_model(fp32, config, None)
    assert _same_outputs(task, mem, loaded)
    assert child.state_dict()["classifier.1.qweight"].dtype == torch.uint8
    assert child.state_dict()["classifier.1.qweight"].shape == (128, 128)  # 256 columns, two per byte


def test_int8_dynamic_linear_matches_dequantized_reference():
    torch.manual_seed(0)
    lin = nn.Linear(256, 96)
    q = quantize(lin.weight.detach(), 8, "sym", "channel")
    fast = layer_from_codes(lin, q, "int8-dynamic")
    assert isinstance(fast, Int8DynamicLinear)
    x = torch.randn(64, 256)
    reference = x @ q.dequantize().t() + lin.bias.detach()
    out = fast(x)
    # activations are rounded per call (7 bits where the CPU lacks VNNI, see REDUCE_RANGE): the error is bounded
    # by half the activation step times the largest |W| row sum
    step = (x.max() - x.min()) / (127 if REDUCE_RANGE else 255)
    bound = step / 2 * q.dequantize().abs().sum(1).max()
    assert (out - reference).abs().max() <= bound
    assert torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), dim=0) > 0.999


def test_text_model_int8_quantizes_embeddings(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "q", progress=False, quantize="int8")
    report = child.report
    layers = child.manifest["quantization"]["layers"]
    assert layers["encoder.embeddings.word_embeddings"]["exec"] == "embedding"
    assert child.state_dict()["encoder.embeddings.word_embeddings.qweight"].dtype == torch.uint8
    task, model = child.load_model()
    assert isinstance(model.encoder.embeddings.word_embeddings, QuantEmbedding)
    assert report.steps[0].size_ratio < 0.35  # layer norms and per-row scales stay fp32
    assert report.steps[0].agreement > 0.99
    assert child.metrics["test"]["accuracy"] >= text_artifact.metrics["test"]["accuracy"] - 0.05


def test_causal_lm_int4_gptq_against_rtn(lm_artifact, tmp_path):
    child = tamer.compress(lm_artifact, out=tmp_path / "q", progress=False, quantize="int4", group_size=32,
                                   calibration="gptq", calibration_samples=32)
    report = child.report
    step = report.steps[0]
    assert step.rtn_metric is not None and step.child_metric is not None
    assert step.child_metric <= step.parent_metric * 1.25  # perplexity stays close on this tiny model
    task, model = child.load_model()
    assert any(isinstance(m, WeightOnlyLinear) and m.bits == 4 for m in model.modules())


def test_gptq_beats_round_to_nearest_on_layer_output():
    """GPTQ minimizes ||XW^T - XQ^T||; with correlated inputs it must do better than rounding each weight."""
    torch.manual_seed(0)
    mix = torch.randn(64, 64)
    x = torch.randn(2048, 64) @ mix  # strongly correlated input columns
    w = torch.randn(32, 64)
    h = 2 * x.t() @ x / x.shape[0]
    rtn = quantize(w, 4, "sym", "group", 32)
    gq = gptq_quantize_weight(w, h, 4, "sym", 32)
    err_rtn = (x @ (w - rtn.dequantize()).t()).norm()
    err_gptq = (x @ (w - gq.dequantize()).t()).norm()
    assert err_gptq < 0.8 * err_rtn


def test_int8_gemm_uses_per_token_scales_and_smoothquant_keeps_the_product():
    """Rows of very different size each keep their int8 resolution (per-token scales), and SmoothQuant's
    W*diag(s), x/s rewrite leaves the layer's function and its dequantized weight unchanged."""
    from tamer.compression.layers import Int8DynamicLinear
    from tamer.compression.qmath import quantize
    from tamer.compression.smoothing import smoothing_factors

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64) * torch.logspace(-3, 2, 8).unsqueeze(1)  # token norms spanning 5 orders of magnitude
    x[:, 3] *= 30  # an outlier channel, the case SmoothQuant is for
    s = smoothing_factors(x.abs().amax(0), lin.weight.detach())
    errors = []
    for smooth in (None, s):
        w = lin.weight.detach() * (smooth if smooth is not None else 1)
        q = quantize(w, 8, "sym", "channel", None)
        layer = Int8DynamicLinear(64, 32)
        layer.qweight.copy_(q.q)
        layer.scale.copy_(q.scale)
        layer.bias.copy_(lin.bias.detach())
        if smooth is not None:
            layer.smooth.copy_(smooth)
        assert torch.allclose(layer.weight(), q.dequantize() / (smooth if smooth is not None else 1), atol=1e-6)
        with torch.no_grad():
            want = x @ layer.weight().T  # the product the codes stand for, without the bias
            got = layer(x) - lin.bias
        errors.append(float(((got - want).norm(dim=1) / want.norm(dim=1)).max()))  # worst token, the smallest included
    # one scale per call would leave the 1e-3 token with no resolution at all (error ~1); per token it is bounded
    assert errors[0] < 0.08
    assert errors[1] < 0.03 and errors[1] < errors[0]  # smoothing tames the outlier channel


def test_smooth_alpha_search_keeps_the_alpha_with_least_output_error():
    """The per-layer search keeps, of all alphas tried, the one whose int8 layer errs least against x W^T, computed
    here independently for each alpha; a fixed --smooth-alpha is used as given; 0 means no smoothing."""
    from tamer.compression.smoothing import SMOOTH_ALPHAS, choose_smoothing, smoothing_factors

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(256, 64)
    x[:, [3, 17]] *= 40  # outlier channels
    amax = x.abs().amax(0)
    w = lin.weight.detach()
    ref = x @ w.T

    def error(alpha):
        s = smoothing_factors(amax, w, alpha) if alpha else torch.ones(64)
        q = quantize(w * s, 8, "sym", "channel", None)
        layer = Int8DynamicLinear(64, 32, bias=False)
        layer.qweight.copy_(q.q)
        layer.scale.copy_(q.scale)
        layer.smooth.copy_(s)
        with torch.no_grad():
            return float((layer(x) - ref).norm() / ref.norm())

    by_hand = {a: error(a) for a in SMOOTH_ALPHAS}
    smooth, q, info = choose_smoothing(lin, amax, x, CompressConfig(quantize="int8"))
    assert info["smooth_alpha"] == min(by_hand, key=by_hand.get)
    assert by_hand[info["smooth_alpha"]] < by_hand[0.0]  # the outlier channels make smoothing pay
    assert info["smooth_alpha_error"][f"{info['smooth_alpha']:g}"] == pytest.approx(by_hand[info["smooth_alpha"]], abs=1e-5)
    smooth, q, info = choose_smoothing(lin, amax, x, CompressConfig(quantize="int8", smooth_alpha=0.3))
    assert info == {"smooth_alpha": 0.3} and torch.allclose(smooth, smoothing_factors(amax, w, 0.3))
    smooth, q, info = choose_smoothing(lin, amax, x, CompressConfig(quantize="int8", smooth_alpha=0.0))
    assert smooth is None and torch.equal(q.q, quantize(w, 8, "sym", "channel", None).q)


@pytest.mark.parametrize("backend", ["onednn", "fbgemm"])
def test_int8_gemm_equals_its_activation_coding_by_hand(backend):
    """Each int8 GEMM must equal the product of its activation codes and the weight codes, computed by hand: per token
    (oneDNN) each row coded over its own [min, max]; per call one asymmetric code over [min(x, 0), max(x, 0)], as
    fbgemm's dynamic linear does. ACT_LEVELS steps: 7 bits without VNNI (8-bit codes would saturate), else 8."""
    from tamer.compression.layers import ACT_LEVELS, BACKENDS, Int8DynamicLinear
    from tamer.compression.qmath import quantize

    if backend not in BACKENDS:
        pytest.skip(f"this torch build has no {backend} int8 GEMM")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = quantize(lin.weight.detach(), 8, "sym", "channel", None)
    # token sizes over 3 orders of magnitude, each shifted off zero (the asymmetric codes must follow the offset)
    x = torch.randn(16, 64) * torch.logspace(-2, 1, 16).unsqueeze(1) + torch.rand(16, 1)
    modes = (True, False) if backend == "onednn" else (False,)  # fbgemm's per-token path divides by max|x| first
    for per_token in modes:
        for bias in (True, False):
            layer = Int8DynamicLinear(64, 32, bias=bias, per_token=per_token)
            layer.backend = backend
            layer.qweight.copy_(q.q)
            layer.scale.copy_(q.scale)
            if bias:
                layer.bias.copy_(lin.bias.detach())
            if per_token:
                lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
                sx = (hi - lo) / ACT_LEVELS
                xq = torch.round((x - lo) / sx) * sx + lo
            else:
                lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
                sx = (hi - lo) / ACT_LEVELS
                zx = round(-lo / sx)
                xq = (torch.clamp(torch.round(x / sx) + zx, 0, ACT_LEVELS) - zx) * sx
            want = xq @ q.dequantize().T + (lin.bias.detach() if bias else 0)
            with torch.no_grad():
                got = layer(x)
            assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max())), (per_token, bias)
            # and the coding error itself is what the step size allows: |x - xq| <= s / 2 per element
            assert float((x - xq).abs().max()) <= float(torch.as_tensor(sx).max()) / 2 + 1e-6


def test_activation_scales_auto_picks_per_token_only_for_outlier_tokens():
    """`auto` keeps per-token scales for a layer whose tokens differ by orders of magnitude and drops them for
    homogeneous tokens."""
    from tamer.compression.qmath import quantize
    from tamer.compression.smoothing import activation_scales

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = quantize(lin.weight.detach(), 8, "sym", "channel", None)
    spread = torch.randn(256, 64) * torch.logspace(-2, 1, 256).unsqueeze(1)  # token sizes over 3 orders of magnitude
    per_token, errors = activation_scales(lin, q, spread, None, "auto")
    assert per_token and errors["tensor"] > 2 * errors["token"]
    per_token, errors = activation_scales(lin, q, torch.randn(256, 64), None, "auto")
    assert not per_token and errors["tensor"] < 0.05
    assert activation_scales(lin, q, torch.randn(256, 64), None, "token")[0] is True
    assert activation_scales(lin, q, spread, None, "tensor")[0] is False


def test_activation_scale_choice_is_recorded_and_rebuilt_on_load(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "q", progress=False, quantize="int8", activation_scales="tensor")
    layers = child.manifest["quantization"]["layers"]
    int8 = {n: r for n, r in layers.items() if r["exec"] == "int8-dynamic"}
    assert all(r["per_token"] is False and set(r["activation_scale_error"]) == {"token", "tensor"} for r in int8.values())
    task, model = child.load_model()
    for name in int8:
        assert model.get_submodule(name).per_token is False
        assert model.get_submodule(name).backend == int8[name]["backend"]  # the GEMM that was timed is the one rebuilt
    _, again = Artifact.load(child.path).load_model()
    assert _same_outputs(task, model, again, 4)


def test_a_quantized_model_slower_than_fp32_falls_back_whole(text_artifact, tmp_path, monkeypatch):
    """Layers that each beat fp32 can lose together; then every layer runs fp32 from its codes, and the artifact
    computes exactly what --activations weight-only computes (the same round-to-nearest codes, fp32 GEMMs)."""
    from tamer.compression import quantize as quantize_module

    monkeypatch.setattr(quantize_module, "time_layer", lambda *a, **k: (1.0, 0.5))  # each layer alone: int8 wins
    timings = iter([{"parent": 10.0, "child": 9.0}, {"parent": 10.0, "child": 12.0}])  # batch 1, then batch 32
    monkeypatch.setattr(quantize_module, "compare_latency", lambda *a, **k: next(timings, {"parent": 10.0, "child": 10.0}))
    child = tamer.compress(text_artifact, out=tmp_path / "q", progress=False, quantize="int8")
    report = child.report
    why = child.manifest["run"]["quantization"]["whole_model_fallback"]
    assert child.manifest["quantization"]["whole_model_fallback"] is True
    assert "12.00 ms against fp32's 10.00 ms at batch 32" in why and report.steps[0].extra["whole_model_fallback"] == why
    reasons = child.manifest["run"]["quantization"]["layers"]
    linear = {n: r for n, r in child.manifest["quantization"]["layers"].items() if r["type"] == "linear"}
    assert linear and all(r["exec"] == "fp32-fallback" and not r["smoothquant"] and why in reasons[n]["reason"]
                          for n, r in linear.items())
    same = tamer.compress(text_artifact, out=tmp_path / "w", progress=False, quantize="int8", activations="weight-only")
    task, a = child.load_model()
    _, b = same.load_model()
    assert _same_outputs(task, a, b, 4)


@pytest.mark.slow
@pytest.mark.parametrize("per_token", [True, False])
def test_compiled_int8_layers_agree_with_eager(per_token):
    """torch.compile with freezing lowers the int8 layers and fuses their coding passes with the GELU / LayerNorm
    around them: the outputs must equal the eager int8 model's up to float rounding (an activation code may flip
    where a value sits on a rounding boundary, so the bound is one code step of the output)."""
    from tamer.compression import compiled

    torch.manual_seed(0)
    fp32 = nn.Sequential(nn.Linear(96, 384), nn.GELU(), nn.Linear(384, 96), nn.LayerNorm(96), nn.Linear(96, 10)).eval()
    # the middle layer as compression leaves one that fell back: int8 codes, fp32 execution
    model = nn.Sequential(*[layer_from_codes(m, quantize(m.weight.detach(), 8, "sym", "channel"),
                                          "fp32-fallback" if i == 2 else "int8-dynamic")
                            if isinstance(m, nn.Linear) else m for i, m in enumerate(fp32)])
    assert isinstance(model[2], WeightOnlyLinear)
    for m in model:
        if isinstance(m, Int8DynamicLinear):
            m.per_token = per_token
    x = torch.randn(4, 32, 96)
    fast = compiled(model)  # in place: every layer with symmetric int8 codes now runs the int8 GEMM
    assert all(isinstance(model[i], Int8DynamicLinear) for i in (0, 2, 4))
    with torch.inference_mode():
        eager, got, ref = model(x), fast(x), fp32(x)
    assert torch.nn.functional.cosine_similarity(got.flatten(), eager.flatten(), dim=0) > 0.9999
    assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.999


def test_layers_that_fall_back_keep_their_smoothquant_factors_for_compiled(text_artifact, tmp_path, monkeypatch):
    """A layer that loses its timing runs fp32 from plain codes, but the SmoothQuant factors calibration chose for it
    are saved with it, so compiled() can code it as the int8 layers are coded."""
    from tamer.compression import quantize as quantize_module

    monkeypatch.setattr(quantize_module, "time_layer", lambda *a, **k: (0.5, 1.0))  # fp32 always wins
    child = tamer.compress(text_artifact, out=tmp_path / "q", progress=False, quantize="int8")
    rows = child.manifest["quantization"]["layers"]
    smoothed = [n for n, r in rows.items() if r.get("int8_smooth")]
    assert smoothed and all(rows[n]["exec"] == "fp32-fallback" and rows[n]["smooth_alpha"] > 0 for n in smoothed)
    task, model = child.load_model()
    plain = tamer.compress(text_artifact, out=tmp_path / "w", progress=False, quantize="int8", activations="weight-only")
    _, reference = plain.load_model()
    assert _same_outputs(task, model, reference, 4)  # eager: the factors change nothing
    for name in smoothed:
        s = model.get_submodule(name).int8_smooth
        assert s is not None and not bool((s == 1).all())


@pytest.mark.skipif("onednn" not in __import__("tamer.compression.layers", fromlist=["BACKENDS"]).BACKENDS,
                    reason="compiled() moves layers to the int8 GEMM only where oneDNN's is available")
def test_compiled_codes_a_fallen_back_layer_with_its_smoothquant_factors():
    """With one activation channel 40x the others, the int8 GEMM's error on the fallen-back layer is smaller
    when compiled() smooths it with the stored factors than when it codes the plain weight (SmoothQuant's claim);
    and the smoothed codes still stand for the same weight."""
    from tamer.compression import compiled
    from tamer.compression.smoothing import smoothing_factors

    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    x = torch.randn(256, 64)
    x[:, 3] *= 40
    w = lin.weight.detach()
    q = quantize(w, 8, "sym", "channel")
    errors = {}
    for label, smooth in (("plain", None), ("smoothed", smoothing_factors(x.abs().amax(0), w, 0.5))):
        model = nn.Sequential(layer_from_codes(lin, q, "fp32-fallback", smooth))
        compiled(model)  # converts in place; nothing compiles until the first call
        layer = model[0]
        assert isinstance(layer, Int8DynamicLinear)
        if smooth is not None:
            assert torch.equal(layer.smooth, smooth)
            # two roundings: the plain code (half its step) and the smoothed code (half its step, divided by s)
            bound = q.scale[:, None] / 2 + layer.scale.reshape(-1, 1) / (2 * smooth[None, :])
            assert bool(((layer.weight() - w).abs() <= bound * 1.0001 + 1e-7).all())
        with torch.inference_mode():
            errors[label] = float((layer(x) - lin(x)).norm() / lin(x).norm())
    assert errors["smoothed"] < 0.7 * errors["plain"], errors


def test_the_same_compression_twice_gets_the_same_id(digits_artifact, tmp_path):
    """The id covers the weights and how each layer runs, not the timings that chose it: weight-only int8 (no
    timed choice) gives one id twice; timed int8 gives one id exactly when the per-layer choices came out the same."""
    a = tamer.compress(digits_artifact, out=tmp_path / "a", progress=False, quantize="int8", activations="weight-only", seed=5)
    b = tamer.compress(digits_artifact, out=tmp_path / "b", progress=False, quantize="int8", activations="weight-only", seed=5)
    assert a.id == b.id and a.manifest["weights_sha256"] == b.manifest["weights_sha256"]
    assert "batch32" in a.manifest["run"]["latency_ms"]  # timings are kept, outside the id
    assert a.manifest["options"]["seed"] == 5 and a.manifest["options"]["split_seed"] == digits_artifact.split_seed
    c = tamer.compress(digits_artifact, out=tmp_path / "c", progress=False, quantize="int8")
    d = tamer.compress(digits_artifact, out=tmp_path / "d", progress=False, quantize="int8")
    choices = lambda art: {n: r["exec"] for n, r in art.manifest["quantization"]["layers"].items()}  # noqa: E731
    assert (c.id == d.id) == (choices(c) == choices(d))
    assert c.id != a.id  # another recipe, another id
