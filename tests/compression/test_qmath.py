"""Quantization arithmetic against closed forms: round-trip error <= scale / 2, exact zero, int4 packing."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tamer.compression.qmath import dequantize, pack_int4, qrange, quantize, unpack_int4


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("scheme", ["sym", "asym"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_round_trip_error_is_at_most_half_a_step(bits, scheme, granularity):
    torch.manual_seed(0)
    w = torch.randn(16, 128) * torch.linspace(0.1, 3, 16)[:, None] + (0.5 if scheme == "asym" else 0)
    q = quantize(w, bits, scheme, granularity, 32 if granularity == "group" else None)
    qmin, qmax = qrange(bits, scheme)
    assert int(q.q.min()) >= qmin and int(q.q.max()) <= qmax
    err = (q.dequantize() - w).abs()
    if granularity == "group":
        step = q.scale.repeat_interleave(32, dim=1)
    elif granularity == "channel":
        step = q.scale[:, None].expand_as(w)
    else:
        step = q.scale.expand_as(w)
    assert torch.all(err <= step / 2 + 1e-6)


def test_scales_follow_the_closed_form():
    w = torch.tensor([[1.0, -4.0, 2.0, 0.5], [0.2, 0.1, -0.3, 0.0]])
    sym = quantize(w, 8, "sym", "channel")
    assert torch.allclose(sym.scale, torch.tensor([4.0 / 127, 0.3 / 127]))
    assert torch.all(sym.zero_point == 0)
    asym = quantize(w, 8, "asym", "channel")
    assert torch.allclose(asym.scale, torch.tensor([6.0 / 255, 0.5 / 255]))
    # zero is exactly representable: q(0) dequantizes to 0
    zero_code = asym.zero_point.float()
    assert torch.allclose((zero_code - asym.zero_point) * asym.scale, torch.zeros(2))
    grouped = quantize(w, 4, "sym", "group", 2)
    assert torch.allclose(grouped.scale, torch.tensor([[4.0, 2.0], [0.2, 0.3]]) / 7)


def test_per_group_is_at_least_as_accurate_as_per_channel():
    torch.manual_seed(1)
    w = torch.randn(64, 256) * torch.rand(1, 256) * 4
    per_channel = (quantize(w, 4, "sym", "channel").dequantize() - w).norm()
    per_group = (quantize(w, 4, "sym", "group", 32).dequantize() - w).norm()
    assert per_group < per_channel


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=2, max_size=64).filter(lambda xs: len(xs) % 2 == 0))
def test_int4_packing_round_trip_signed(values):
    q = torch.tensor([values], dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape[-1] == len(values) // 2
    assert torch.equal(unpack_int4(packed, signed=True), q)


def test_int4_packing_round_trip_unsigned():
    q = torch.arange(16, dtype=torch.int8).repeat(3, 2)
    assert torch.equal(unpack_int4(pack_int4(q), signed=False), q)


def test_dequantize_group_matches_expanded_scales():
    torch.manual_seed(2)
    q = torch.randint(0, 16, (4, 64), dtype=torch.int8)
    scale, zero = torch.rand(4, 2), torch.randint(0, 16, (4, 2), dtype=torch.int32)
    expected = (q.float() - zero.repeat_interleave(32, 1)) * scale.repeat_interleave(32, 1)
    assert torch.allclose(dequantize(q, scale, zero, 32), expected)
