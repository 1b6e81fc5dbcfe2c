"""Quantized modules. Their state is plain integer tensors + scales + zero-points, so safetensors stores them.

- `Int8DynamicLinear`: int8 per-channel weights, activations quantized per call (fbgemm's dynamic
  int8 GEMM behind `torch.ops.quantized.linear_dynamic`; packed once, after the state is loaded).
- `WeightOnlyLinear` / `WeightOnlyConv2d`: int8 or packed int4 codes; dequantized on every call
  (`cache=False`, the codes are all that is held in memory) or once (`cache=True`, fp32 execution).
- `QuantEmbedding`: an int8 / int4 table; only the looked-up rows are dequantized.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .qmath import dequantize, unpack_int4


class _Codes(nn.Module):
    """Buffers `qweight`, `scale`, `zero_point` (+ `bias`) and the dequantized weight they stand for."""

    def __init__(self, shape, bits: int, group_size: int | None, signed: bool, bias: bool, cache: bool):
        super().__init__()
        rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
        self.shape, self.bits, self.group_size, self.signed, self.cache = tuple(shape), bits, group_size, signed, cache
        code_cols = cols // 2 if bits == 4 else cols
        dtype = torch.uint8 if bits == 4 or not signed else torch.int8
        groups = (rows, cols // group_size) if group_size else (rows,)
        self.register_buffer("qweight", torch.zeros(rows, code_cols, dtype=dtype))
        self.register_buffer("scale", torch.ones(groups))
        self.register_buffer("zero_point", torch.zeros(groups, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(rows) if bias else None)
        self._weight = None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._weight = None
        self._packed = None

    def codes(self) -> torch.Tensor:
        return unpack_int4(self.qweight, self.signed) if self.bits == 4 else self.qweight

    def weight(self) -> torch.Tensor:
        if self._weight is not None:
            return self._weight
        w = dequantize(self.codes(), self.scale, self.zero_point, self.group_size).reshape(self.shape)
        if self.cache:
            self._weight = w
        return w


class WeightOnlyLinear(_Codes):
    def __init__(self, in_features, out_features, bias=True, bits=8, group_size=None, signed=True, cache=False):
        super().__init__((out_features, in_features), bits, group_size, signed, bias, cache)

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)


class WeightOnlyConv2d(_Codes):
    def __init__(self, shape, bias=True, bits=8, group_size=None, signed=True, cache=True,
                 stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        super().__init__(shape, bits, group_size, signed, bias, cache)
        self.conv = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation), groups=groups)

    def forward(self, x):
        return F.conv2d(x, self.weight(), self.bias, **self.conv)


def _has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# Without VNNI, fbgemm multiplies u8 x s8 pairs into int16 (vpmaddubsw), which saturates for full 8-bit
# activations; 7-bit activations (reduce_range) keep the result exact. Measured: max error 0.26 vs 0.04.
REDUCE_RANGE = not _has_vnni()


class Int8DynamicLinear(_Codes):
    """int8 x int8 -> int32 GEMM with per-token (or one per-call) activation scales; symmetric per-channel weights.

    The activation scale is one per call (fbgemm), so a few outlier input channels would eat the int8 range of all
    the others. SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization for
    Large Language Models", eq. 4) moves that range into the weights: the codes hold W * diag(s), and the input is
    divided by s on the way in, so the product is unchanged in exact arithmetic. `smooth` holds s (ones = off).
    """

    def __init__(self, in_features, out_features, bias=True, per_token=True):
        super().__init__((out_features, in_features), 8, None, True, bias, False)
        self.register_buffer("smooth", torch.ones(in_features))
        self.per_token = per_token
        self._packed = None
        self._inv_smooth = None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._inv_smooth = None

    def weight(self) -> torch.Tensor:
        """The fp32 weight these codes stand for (smoothing undone)."""
        return super().weight() / self.smooth

    def _pack(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor constructors are deprecated, the fbgemm kernel is not
            qt = torch._make_per_channel_quantized_tensor(self.qweight, self.scale.double(), self.zero_point.long(), 0)
            # per token, the bias is added after the rescale; per call, fbgemm adds it while dequantizing
            self._packed = torch.ops.quantized.linear_prepack(qt, None if self.per_token else self.bias)
        return self._packed

    def forward(self, x):
        packed = self._packed if self._packed is not None else self._pack()
        if self._inv_smooth is None:
            self._inv_smooth = None if bool((self.smooth == 1).all()) else (1.0 / self.smooth)
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        if not self.per_token:  # one scale per call: fbgemm reads x as it is (after smoothing)
            x = x * self._inv_smooth if self._inv_smooth is not None else x
            y = torch.ops.quantized.linear_dynamic(x, packed, REDUCE_RANGE)
            return y.reshape(*shape[:-1], y.shape[-1])
        # fbgemm takes one activation scale per call; dividing each token by its own max|x| first (and multiplying
        # the output back) gives every token the whole int8 range: per-token scales for a few elementwise passes,
        # done in place on fresh tensors to keep the memory traffic down. max|x| as max(amax, -amin): measured
        # 5-18x faster on CPU than vector_norm(inf) or abs().amax(), which made the whole layer slower than fp32.
        x = x * self._inv_smooth if self._inv_smooth is not None else x.clone()
        r = torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg_()).clamp_(min=1e-12)
        y = torch.ops.quantized.linear_dynamic(x.div_(r), packed, REDUCE_RANGE)
        y = y.mul_(r) if self.bias is None else torch.addcmul(self.bias, y, r)
        return y.reshape(*shape[:-1], y.shape[-1])


class QuantEmbedding(_Codes):
    def __init__(self, num_embeddings, embedding_dim, bits=8, group_size=None, signed=False, padding_idx=None):
        super().__init__((num_embeddings, embedding_dim), bits, group_size, signed, False, False)
        self.padding_idx = padding_idx

    def forward(self, ids):
        flat = ids.reshape(-1)
        rows = self.qweight.index_select(0, flat)
        if self.bits == 4:
            rows = unpack_int4(rows, self.signed)
        out = dequantize(rows, self.scale.index_select(0, flat), self.zero_point.index_select(0, flat), self.group_size)
        return out.reshape(*ids.shape, self.shape[1])

    @property
    def weight(self):  # Hugging Face code reads `embeddings.weight` (e.g. for tied heads or dtype)
        return dequantize(self.codes(), self.scale, self.zero_point, self.group_size)
