"""An int8 GEMM layer with activations coded per token computes each token's output from that token alone, on
either backend: the same bits whether the token runs with others or alone (what a key / value cache relies on, and
what keeps a text's prediction independent of its batch-mates). One scale per call mixes them and says so."""
from __future__ import annotations

import pytest
import torch

from tamer.compression.layers import BACKENDS, Int8DynamicLinear
from tamer.compression.qmath import quantize


def _layer(backend: str, per_token: bool) -> Int8DynamicLinear:
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = quantize(lin.weight.detach(), 8, "sym", "channel", None)
    layer = Int8DynamicLinear(64, 32, bias=True, per_token=per_token)
    layer.backend = backend
    layer.qweight.copy_(q.q)
    layer.scale.copy_(q.scale)
    layer.bias.copy_(lin.bias.detach())
    return layer


@pytest.mark.parametrize("backend", ["fbgemm", "onednn"])
def test_a_tokens_output_is_the_same_alone_and_among_others(backend):
    if backend not in BACKENDS:
        pytest.skip(f"this torch build has no {backend} int8 GEMM")
    layer = _layer(backend, per_token=True)
    assert not layer.mixes_tokens
    # tokens whose ranges differ by orders of magnitude and sit off zero, so any shared scale would show
    x = torch.randn(12, 64) * torch.logspace(-2, 1, 12).unsqueeze(1) + torch.rand(12, 1)
    with torch.inference_mode():
        together = layer(x)
        for i in range(len(x)):
            assert torch.equal(layer(x[i:i + 1]), together[i:i + 1]), i
        assert torch.equal(layer(x[3:7]), together[3:7])


@pytest.mark.parametrize("backend", ["fbgemm", "onednn"])
def test_one_scale_per_call_mixes_tokens(backend):
    if backend not in BACKENDS:
        pytest.skip(f"this torch build has no {backend} int8 GEMM")
    layer = _layer(backend, per_token=False)
    assert layer.mixes_tokens
    x = torch.randn(12, 64) * torch.logspace(-2, 1, 12).unsqueeze(1)
    with torch.inference_mode():
        assert not torch.equal(layer(x[:1]), layer(x)[:1])  # the small first token gets the large ones' scale
