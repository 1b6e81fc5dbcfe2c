"""Randomness that protects privacy: drawn from a cryptographically secure source, never from the run's seed.

DP-SGD's noise and its Poisson sampling are what make epsilon mean anything: if they come from the seeded
generators (whose seed the manifest records), anyone who knows the other records can replay training and read off
the one they want. `SecureRandom` draws instead from an AES-256-CTR keystream under a key and counter taken from
the operating system (`os.urandom`) when it is made: the construction of NIST SP 800-90A's CTR_DRBG, nothing
stored, nothing reproducible. Gaussians come from the Box-Muller transform on 53-bit uniforms, and
each noise value is the scaled sum of four of them, as Opacus's `secure_mode` does against the floating-point
attacks on sampled noise (Mironov 2012; Holohan and Braghin 2021, section 5.1).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_CHUNK = 1 << 18  # noise values per pass: the working set stays in cache


class SecureRandom:
    """A CSPRNG for tensors: `normal(shape, std)`, `bernoulli(n, p)`; reseeded from the OS each time it is made.
    The arithmetic is numpy's (its vectorised log / sin / cos ran 3-10x faster than torch's here)."""

    def __init__(self) -> None:
        self._stream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
        self._zeros = bytearray(8 * 4 * _CHUNK)
        self._bytes = bytearray(8 * 4 * _CHUNK + 16)  # update_into wants room for a block more

    def _uniform(self, n: int) -> np.ndarray:
        """`n` float64 values uniform on (0, 1]: the top 53 bits of a keystream word, plus one, times 2^-53."""
        out = np.empty(n, dtype=np.float64)
        step = len(self._zeros) // 8
        for start in range(0, n, step):
            count = min(step, n - start)
            self._stream.update_into(memoryview(self._zeros)[:8 * count], self._bytes)
            words = np.frombuffer(self._bytes, dtype=np.uint64, count=count)
            out[start:start + count] = (words >> np.uint64(11)) + np.uint64(1)
        return out * 2.0 ** -53

    def uniform(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self._uniform(n))

    def normal(self, shape, std: float, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """N(0, std^2) noise of `shape`: per value, four standard normals by Box-Muller (both outputs of each of
        two pairs), summed and scaled by std / 2 (the same variance). A float32 result takes the transform in
        float32 (5x faster; uniforms near 0 keep their tails, float32 being floating point)."""
        shape = torch.Size(shape)
        n = shape.numel()
        if std == 0 or n == 0:
            return torch.zeros(shape, dtype=dtype, device=device)
        work = np.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) else np.float64
        out = np.empty(n, dtype=work)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            u = self._uniform(4 * m).astype(work).reshape(2, 2, m)  # [radius or angle][pair][value]
            radius = np.sqrt(-2.0 * np.log(u[0]))
            angle = u[1] * work(2.0 * math.pi)
            total = (radius * np.cos(angle)).sum(0) + (radius * np.sin(angle)).sum(0)
            out[start:start + m] = total * work(std / 2.0)
        return torch.from_numpy(out).reshape(shape).to(dtype=dtype, device=device)

    def bernoulli(self, n: int, p: float) -> torch.Tensor:
        """`n` independent coin flips that come up True with probability `p` (Poisson sampling's mask)."""
        return torch.from_numpy(self._uniform(n) <= p)
