"""Randomness that protects privacy: drawn from a cryptographically secure source, never from the run's seed.

DP-SGD's noise and its Poisson sampling are what make epsilon mean anything: if they come from the seeded
generators (whose seed the manifest records), anyone who knows the other records can replay training and read off
the one they want. `SecureRandom` draws instead from an AES-256-CTR keystream under a key and counter taken from
the operating system (`os.urandom`) when it is made: the construction of NIST SP 800-90A's CTR_DRBG, nothing
stored, nothing reproducible. Gaussians come from the Box-Muller transform on 53-bit uniforms in float64, and
each noise value is the scaled sum of four of them, as Opacus's `secure_mode` does against the floating-point
attacks on sampled noise (Mironov 2012; Holohan and Braghin 2021, section 5.1).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 1 << 22  # uniforms per keystream call (32 MiB): bounds the memory of one draw


class SecureRandom:
    """A CSPRNG for tensors: `normal(shape, std)`, `bernoulli(n, p)`; reseeded from the OS each time it is made."""

    def __init__(self) -> None:
        self._stream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()

    def uniform(self, n: int) -> torch.Tensor:
        """`n` float64 values uniform on (0, 1]: 53 random bits each, never 0 (Box-Muller takes their log)."""
        out = torch.empty(n, dtype=torch.float64)
        for start in range(0, n, _BLOCK):
            count = min(_BLOCK, n - start)
            words = np.frombuffer(self._stream.update(bytes(8 * count)), dtype=np.uint64)
            out[start:start + count] = torch.from_numpy(((words >> np.uint64(11)) + np.uint64(1)).astype(np.float64))
        return out.mul_(2.0 ** -53)

    def standard_normal(self, n: int) -> torch.Tensor:
        """`n` independent N(0, 1) values in float64 by Box-Muller (both outputs of each pair are used)."""
        pairs = (n + 1) // 2
        u = self.uniform(2 * pairs)
        radius = torch.sqrt(-2.0 * torch.log(u[:pairs]))
        angle = (2.0 * math.pi) * u[pairs:]
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n]

    def normal(self, shape, std: float, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """N(0, std^2) noise of `shape`: the sum of four standard normals times std / 2 (same variance)."""
        shape = torch.Size(shape)
        n = shape.numel()
        if std == 0 or n == 0:
            return torch.zeros(shape, dtype=dtype, device=device)
        total = self.standard_normal(n)
        for _ in range(3):
            total += self.standard_normal(n)
        return (total * (std / 2.0)).reshape(shape).to(dtype=dtype, device=device)

    def bernoulli(self, n: int, p: float) -> torch.Tensor:
        """`n` independent coin flips that come up True with probability `p` (Poisson sampling's mask)."""
        return self.uniform(n) <= p
