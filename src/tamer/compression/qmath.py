"""Integer quantization arithmetic: q = clamp(round(w / s) + z, qmin, qmax), w ~ (q - z) * s; int4 packing.

Scales and zero-points are per tensor, per output channel (row) or per group of `group_size` input columns.
Everything here is plain tensor math, so it is checked against closed forms in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def qrange(bits: int, scheme: str) -> tuple[int, int]:
    """Signed range for symmetric (zero-point 0), unsigned for asymmetric: int8 -> [-127, 127] / [0, 255]."""
    if scheme == "sym":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


@dataclass
class Quantized:
    """Integer codes with their scale and zero-point; `scale` / `zero_point` broadcast over groups of columns."""

    q: torch.Tensor           # int8 codes (int4 codes are kept in int8 until packed)
    scale: torch.Tensor       # float32, shape [rows] (per channel), [rows, groups] (per group) or [] (per tensor)
    zero_point: torch.Tensor  # int32, same shape as scale
    bits: int
    scheme: str
    group_size: int | None    # None: per channel or per tensor

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.q, self.scale, self.zero_point, self.group_size)


def _expand(t: torch.Tensor, shape: torch.Size, group_size: int | None) -> torch.Tensor:
    if t.dim() == 0:
        return t
    if group_size is None:
        return t.reshape(-1, *([1] * (len(shape) - 1)))
    return t.repeat_interleave(group_size, dim=1)


def quantize(w: torch.Tensor, bits: int = 8, scheme: str = "sym", granularity: str = "channel",
             group_size: int | None = None) -> Quantized:
    """Round-to-nearest quantization of a 2-D weight [rows, cols] (conv weights are flattened by the caller)."""
    w = w.detach().float()
    qmin, qmax = qrange(bits, scheme)
    if granularity == "group":
        rows, cols = w.shape
        g = w.reshape(rows, cols // group_size, group_size)
        lo, hi = g.amin(-1), g.amax(-1)
    elif granularity == "channel":
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.amin(1), flat.amax(1)
        group_size = None
    else:
        lo, hi = w.min(), w.max()
        group_size = None
    if scheme == "sym":
        scale = torch.maximum(hi.abs(), lo.abs()) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)  # the range holds 0 so that 0 is exact
        scale = (hi - lo) / (qmax - qmin)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    s, z = _expand(scale, w.shape, group_size), _expand(zero, w.shape, group_size)
    q = torch.clamp(torch.round(w / s) + z, qmin, qmax)
    dtype = torch.uint8 if (scheme == "asym" and bits == 8) else torch.int8
    return Quantized(q.to(dtype), scale.float(), zero, bits, scheme, group_size)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int | None) -> torch.Tensor:
    if group_size is not None:  # broadcast over [rows, groups, group_size] instead of expanding the scales
        g = q.reshape(q.shape[0], -1, group_size).float()
        return ((g - zero_point.unsqueeze(-1).float()) * scale.unsqueeze(-1)).reshape(q.shape)
    s, z = _expand(scale, q.shape, group_size), _expand(zero_point, q.shape, group_size)
    return (q.float() - z.float()) * s


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte (low nibble = even column); signed codes as two's-complement nibbles."""
    u = (q.to(torch.int16) & 0xF).to(torch.uint8)
    if u.shape[-1] % 2:
        raise ValueError("int4 packing needs an even number of columns")
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor, signed: bool) -> torch.Tensor:
    lo, hi = packed & 0xF, packed >> 4
    out = torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2).to(torch.int8)
    if signed:
        out = torch.where(out > 7, out - 16, out)
    return out
