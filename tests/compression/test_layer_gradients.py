"""Gradients with respect to the input flow through quantized layers (explain, attack and harden need them):
checked against the fp32 layer that holds the dequantized weight, and the int8 inference path left untouched."""
import pytest
import torch
from torch.nn import functional as F

from tamer.compression.layers import BACKENDS, Int8DynamicLinear, WeightOnlyConv2d, WeightOnlyLinear
from tamer.compression.qmath import pack_int4, quantize


def _int8_layer(lin, backend, per_token, bias, smooth):
    w = lin.weight.detach() * (smooth if smooth is not None else 1)
    q = quantize(w, 8, "sym", "channel", None)
    layer = Int8DynamicLinear(lin.in_features, lin.out_features, bias=bias, per_token=per_token)
    layer.backend = backend
    layer.qweight.copy_(q.q)
    layer.scale.copy_(q.scale)
    if bias:
        layer.bias.copy_(lin.bias.detach())
    if smooth is not None:
        layer.smooth.copy_(smooth)
    return layer, q.dequantize() / (smooth if smooth is not None else 1)


@pytest.mark.parametrize("backend", ["onednn", "fbgemm"])
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("smoothed", [False, True])
def test_int8_layer_gives_the_int8_value_and_the_dequantized_layers_gradient(backend, per_token, bias, smoothed):
    if backend not in BACKENDS:
        pytest.skip(f"this torch build has no {backend} int8 GEMM")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    smooth = torch.rand(64) + 0.5 if smoothed else None
    layer, w = _int8_layer(lin, backend, per_token, bias, smooth)
    x = torch.randn(3, 5, 64)
    with torch.no_grad():
        want_value = layer(x)  # the inference path
    xg = x.clone().requires_grad_()
    y = layer(xg)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    assert torch.equal(y.detach(), want_value)  # the value is the int8 layer's, bit for bit
    # the gradient of x @ W.T + b is g @ W (closed form), W the dequantized weight with smoothing undone
    assert torch.allclose(xg.grad, g @ w, atol=1e-5)
    ref = x.clone().requires_grad_()
    (F.linear(ref, w, lin.bias.detach() if bias else None) * g).sum().backward()
    assert torch.allclose(xg.grad, ref.grad, atol=1e-5)


def test_int8_inference_path_does_not_dequantize():
    """Without autograd (or with an input that needs no gradient) the layer runs the integer GEMM only."""
    if not BACKENDS:
        pytest.skip("this torch build has no int8 GEMM")
    torch.manual_seed(0)
    layer, _ = _int8_layer(torch.nn.Linear(64, 32), BACKENDS[0], True, True, None)

    def refuse():
        raise AssertionError("the inference path dequantized the weight")

    layer.weight = refuse
    x = torch.randn(4, 64)
    with torch.no_grad():
        layer(x)
    layer(x)  # grad mode, but x does not require grad
    with torch.inference_mode():
        layer(x)


def test_int8_gradient_matches_finite_differences_of_the_dequantized_layer():
    """Central differences of the fp32 layer with the dequantized weight (an independent computation) against the
    int8 layer's autograd gradient: equal up to float error, since the layer is linear in x."""
    if not BACKENDS:
        pytest.skip("this torch build has no int8 GEMM")
    torch.manual_seed(1)
    lin = torch.nn.Linear(16, 8)
    layer, w = _int8_layer(lin, BACKENDS[0], True, True, None)
    x = torch.randn(16).double()
    xg = x.float().clone().requires_grad_()
    layer(xg)[3].backward()
    eps = 1e-3
    f = lambda v: float((v @ w.double().T + lin.bias.detach().double())[3])  # noqa: E731
    fd = torch.tensor([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in torch.eye(16, dtype=torch.float64)],
                      dtype=torch.float64)
    assert torch.allclose(xg.grad.double(), fd, atol=1e-5)


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_only_layers_are_differentiable_in_their_input(bits):
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 16)
    q = quantize(lin.weight.detach(), bits, "sym", "group" if bits == 4 else "channel", 32 if bits == 4 else None)
    layer = WeightOnlyLinear(64, 16, bits=bits, group_size=q.group_size)
    layer.qweight.copy_(pack_int4(q.q) if bits == 4 else q.q)
    layer.scale.copy_(q.scale)
    layer.bias.copy_(lin.bias.detach())
    x = torch.randn(5, 64, requires_grad=True)
    g = torch.randn(5, 16)
    (layer(x) * g).sum().backward()
    assert torch.allclose(x.grad, g @ q.dequantize(), atol=1e-5)

    conv = torch.nn.Conv2d(2, 4, 3)
    cq = quantize(conv.weight.detach().reshape(4, -1), 8, "sym", "channel", None)
    qconv = WeightOnlyConv2d(tuple(conv.weight.shape), bits=8)
    qconv.qweight.copy_(cq.q)
    qconv.scale.copy_(cq.scale)
    qconv.bias.copy_(conv.bias.detach())
    img = torch.randn(1, 2, 6, 6, requires_grad=True)
    ref = img.detach().clone().requires_grad_()
    qconv(img).sum().backward()
    F.conv2d(ref, cq.dequantize().reshape(conv.weight.shape), conv.bias.detach()).sum().backward()
    assert torch.allclose(img.grad, ref.grad, atol=1e-5)
