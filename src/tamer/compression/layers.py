"""Quantized modules. Their state is plain integer tensors + scales + zero-points, so safetensors stores them.

- `Int8DynamicLinear`: int8 per-channel weights, activations quantized per token or per call (fbgemm's int8 GEMM
  when run eagerly, oneDNN's `torch.ops.onednn.qlinear_pointwise` under `compiled()`; packed once, after loading).
  When autograd records and the input requires grad, a differentiable path (`differentiable`) gives gradients.
- `WeightOnlyLinear` / `WeightOnlyConv2d`: int8 or packed int4 codes; dequantized on every call
  (`cache=False`, the codes are all that is held in memory) or once (`cache=True`, fp32 execution).
- `QuantEmbedding`: an int8 / int4 table; only the looked-up rows are dequantized.

`layer_from_codes` builds one of them from a float layer's codes; `replace_layer` swaps it into a model.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .qmath import Quantized, dequantize, pack_int4, unpack_int4


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

    def __getstate__(self):
        """Copies (copy.deepcopy, pickle) drop what is derived from the codes: a packed oneDNN weight is an opaque
        tensor that cannot be copied, and both are rebuilt on the next call."""
        state = dict(self.__dict__)
        state["_weight"] = None
        state["_packed"] = None
        return state

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
    """A linear layer computed in fp32 from its codes. With `int8_smooth` it also keeps the SmoothQuant factors
    that calibration chose for it (buffer `int8_smooth`): unused here, they are what `compiled()` smooths with when
    it moves the layer onto the int8 GEMM."""

    def __init__(self, in_features, out_features, bias=True, bits=8, group_size=None, signed=True, cache=False,
                 int8_smooth=False):
        super().__init__((out_features, in_features), bits, group_size, signed, bias, cache)
        self.register_buffer("int8_smooth", torch.ones(in_features) if int8_smooth else None)

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
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


# Without VNNI, the int8 GEMMs multiply u8 x s8 pairs into int16 (vpmaddubsw), which saturates for full 8-bit
# activations against 8-bit weights; 7-bit activations keep the result exact (measured: oneDNN's error 1e5 on
# 8-bit codes, 0 on 7-bit). With VNNI / AMX the accumulation is int32 throughout and all 8 bits are used.
REDUCE_RANGE = not _has_vnni()
ACT_LEVELS = 127 if REDUCE_RANGE else 255


def _onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _fbgemm_available() -> bool:
    return bool({"fbgemm", "x86"} & set(torch.backends.quantized.supported_engines))


# Two int8 GEMMs. oneDNN's (the one Inductor lowers quantized linears to) is 1.3-1.7x faster than fbgemm's dynamic
# linear alone at MiniLM's shapes on this AVX2 CPU (4096 tokens: 3.9 vs 5.3 ms for 384x384, 15.8 vs 25 ms for
# 384x1536), but run eagerly its coding and rescaling are separate passes: whole MiniLM at batch 32 measured 0.86x of
# fp32 with every layer on fbgemm, 0.98x with six layers on oneDNN, 1.01x with all of them. So eager execution uses
# fbgemm (oneDNN where this build lacks it), and `compiled()` moves every int8 layer to oneDNN, whose passes Inductor
# fuses.
BACKENDS = tuple(b for b, ok in (("onednn", _onednn_available()), ("fbgemm", _fbgemm_available())) if ok)
BACKEND = "fbgemm" if "fbgemm" in BACKENDS else (BACKENDS[0] if BACKENDS else None)  # None: layers stay fp32


class Int8DynamicLinear(_Codes):
    """int8 x int8 -> int32 GEMM with activations quantized per token (or once per call); symmetric per-channel weights.

    Per token (oneDNN): each row x is coded asymmetrically over its own [min, max] in ACT_LEVELS steps,
    x ~ m + s * q with q in [0, ACT_LEVELS]; then x @ W.T = s * (q @ W.T) + m * W.sum(1), so the integer GEMM runs on
    the codes and one rank-1 term restores the offset. Per call, one (scale, zero point) pair for the whole input.

    SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large
    Language Models", eq. 4) moves the range of outlier input channels into the weights: the codes hold W * diag(s),
    and the input is divided by s on the way in, so the product is unchanged in exact arithmetic. `smooth` holds s
    (ones = off).
    """

    def __init__(self, in_features, out_features, bias=True, per_token=True):
        super().__init__((out_features, in_features), 8, None, True, bias, False)
        self.register_buffer("smooth", torch.ones(in_features))
        self.per_token = per_token
        self.backend = BACKEND
        self._packed = None
        self._inv_smooth = None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._inv_smooth = None

    @property
    def mixes_tokens(self) -> bool:
        """Whether a token's output depends on the other tokens of the call: with one activation scale per call it
        does, so a key / value cache (new tokens run alone) would not reproduce a recompute of the whole window."""
        return not self.per_token

    def weight(self) -> torch.Tensor:
        """The fp32 weight these codes stand for (smoothing undone)."""
        return super().weight() / self.smooth

    def prepare(self) -> None:
        """Pack the codes for the GEMM (done on the first call otherwise; torch.compile wants it done before)."""
        self._inv_smooth = None if bool((self.smooth == 1).all()) else (1.0 / self.smooth)
        if self.backend == "onednn":
            w_scale = self.scale.float().contiguous()
            self._packed = (torch.ops.onednn.qlinear_prepack(self.qweight, None), w_scale,
                            torch.zeros_like(w_scale, dtype=torch.long),
                            self.qweight.float().sum(1) * w_scale)  # row sums of the dequantized weight
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor constructors are deprecated, the fbgemm kernel is not
            qt = torch._make_per_channel_quantized_tensor(self.qweight, self.scale.double(), self.zero_point.long(), 0)
            # per token, the bias is added after the rescale; per call, fbgemm adds it while dequantizing
            self._packed = torch.ops.quantized.linear_prepack(qt, None if self.per_token else self.bias)

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            return self.differentiable(x)
        return self.quantized(x)

    def differentiable(self, x):
        """The int8 output with a gradient, for attributions and attacks (the integer GEMM has no autograd).

        The value is exactly the int8 layer's; the gradient with respect to x is that of x @ W.T + b with W the
        dequantized weight (smoothing undone). That is the int8 layer's true gradient up to the straight-through
        estimate of the activation quantization (round(x / s) treated as x / s, Bengio et al. 2013)."""
        with torch.no_grad():
            exact = self.quantized(x)
        y = F.linear(x, self.weight().to(x.dtype), self.bias)
        return exact + (y - y.detach())  # exactly the int8 value, the gradient of y

    def quantized(self, x):
        """The inference path: activations coded to int8, the integer GEMM, rescaled (no autograd)."""
        if self._packed is None:
            self.prepare()
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        x = x * self._inv_smooth if self._inv_smooth is not None else x
        y = self._onednn(x) if self.backend == "onednn" else self._fbgemm(x)
        return y.reshape(*shape[:-1], y.shape[-1])

    def _onednn(self, x):
        packed, w_scale, w_zero, w_rows = self._packed
        # min and max as two reductions: measured 5x faster on CPU than torch.aminmax, and 5-18x faster than
        # vector_norm(inf) or abs().amax(), which once made the whole layer slower than fp32
        hi, lo = x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
        if not self.per_token:
            hi, lo = hi.amax().clamp(min=0), lo.amin().clamp(max=0)  # the code for 0.0 is exact, as fbgemm's
            s = ((hi - lo) / ACT_LEVELS).clamp_(min=1e-12)
            zero = torch.round(-lo / s)
            q = torch.addcmul(zero + 0.5, x, 1.0 / s).clamp_(0, ACT_LEVELS).to(torch.uint8)
            return torch.ops.onednn.qlinear_pointwise.tensor(
                q, s, zero.long(), packed, w_scale, w_zero, self.bias, 1.0, 0, torch.float32, "none", [None], "")
        s = ((hi - lo) / ACT_LEVELS).clamp_(min=1e-12)
        inv = 1.0 / s
        # q = round((x - lo) / s) in one pass (+0.5, then the cast truncates; the codes lie in [0, ACT_LEVELS])
        q = torch.addcmul(0.5 - lo * inv, x, inv).to(torch.uint8)
        acc = torch.ops.onednn.qlinear_pointwise(
            q, 1.0, 0, packed, w_scale, w_zero, None, 1.0, 0, torch.float32, "none", [None], "")
        # in place on the GEMM's output: a fresh tensor per pass costs page faults (measured 2.3x slower for the
        # rescale of 4096 x 1536 outputs than writing over the input)
        y = acc.mul_(s) if self.bias is None else torch.addcmul(self.bias, acc, s, out=acc)
        return y.addr_(lo.view(-1), w_rows)

    def _fbgemm(self, x):
        if not self.per_token:  # one scale per call: fbgemm quantizes x itself (7 bits without VNNI)
            return torch.ops.quantized.linear_dynamic(x, self._packed, REDUCE_RANGE)
        # fbgemm takes one activation scale per call; dividing each token by its own max|x| first (and multiplying
        # the output back) gives every token the whole int8 range. Two more rows, of 1s and of -1s, pin the call's
        # range to [-1, 1], so its scale is the same whatever the other tokens are: a token's output does not depend
        # on the rest of the call (its batch-mates, or a key / value cache that runs it alone)
        r = torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg_()).clamp_(min=1e-12)
        rows = torch.empty(x.shape[0] + 2, x.shape[1], dtype=x.dtype, device=x.device)
        torch.div(x, r, out=rows[:-2])
        rows[-2].fill_(1.0)
        rows[-1].fill_(-1.0)
        y = torch.ops.quantized.linear_dynamic(rows, self._packed, REDUCE_RANGE)[:-2]
        return y.mul_(r) if self.bias is None else torch.addcmul(self.bias, y, r, out=y)


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


def is_conv1d(m: nn.Module) -> bool:  # GPT-2's Conv1D: a linear layer with its weight stored [in, out]
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf")


def linear_weight(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().t() if is_conv1d(m) else m.weight.detach()


def quantizable(model: nn.Module, embeddings: bool = True) -> dict[str, nn.Module]:
    """Name -> layer for every Linear / Conv1D / Conv2d (and Embedding when asked) in `model`."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) or is_conv1d(m) or (embeddings and isinstance(m, nn.Embedding)):
            out[name] = m
    return out


def replace_layer(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def layer_from_codes(m: nn.Module, q: Quantized, exec_: str, smooth: torch.Tensor | None = None,
                  per_token: bool = True) -> nn.Module:
    bias = getattr(m, "bias", None)
    signed = q.scheme == "sym"
    codes = pack_int4(q.q) if q.bits == 4 else q.q
    if isinstance(m, nn.Embedding):
        new = QuantEmbedding(m.num_embeddings, m.embedding_dim, q.bits, q.group_size, signed, m.padding_idx)
    elif isinstance(m, nn.Conv2d):
        new = WeightOnlyConv2d(tuple(m.weight.shape), bias is not None, q.bits, q.group_size, signed, True,
                               m.stride, m.padding, m.dilation, m.groups)
    elif exec_ == "int8-dynamic":
        w = linear_weight(m)
        new = Int8DynamicLinear(w.shape[1], w.shape[0], bias is not None, per_token)
        if smooth is not None:
            new.smooth.copy_(smooth)
    else:
        w = linear_weight(m)
        new = WeightOnlyLinear(w.shape[1], w.shape[0], bias is not None, q.bits, q.group_size, signed,
                               cache=exec_ == "fp32-fallback", int8_smooth=smooth is not None)
        if smooth is not None:  # the codes stay plain; the factors wait for compiled()
            new.int8_smooth.copy_(smooth)
    new.qweight.copy_(codes.reshape(new.qweight.shape))
    new.scale.copy_(q.scale.reshape(new.scale.shape))
    new.zero_point.copy_(q.zero_point.reshape(new.zero_point.shape))
    if bias is not None and new.bias is not None:
        new.bias.copy_(bias.detach())
    return new

