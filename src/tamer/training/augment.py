"""On-the-fly augmentation of training batches: affine jitter for images, token and character noise for text.

Random draws are made for the whole *global* batch from one seed (run seed, epoch, step) and each rank
keeps its slice, so a batch is augmented the same way whatever the world size, and again after a resume.
"""
from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F

IMAGE = {"flip": (0.0, 1.0), "rotate": (0.0, 180.0), "scale": (0.0, 0.9), "translate": (0.0, 64.0)}
TEXT = {"delete": (0.0, 0.9), "swap": (0.0, 1.0), "char": (0.0, 0.5)}
# Digits are not mirror-invariant (2 vs 5 ...), so the image default has no flip.
DEFAULTS = {"image": {"rotate": 10.0, "scale": 0.1, "translate": 1.0}, "text": {"delete": 0.1, "swap": 0.05, "char": 0.02}}
_USE = ("use 'default' or NAME=STRENGTH,... with NAME among flip (probability), rotate (degrees), scale (fraction), "
        "translate (pixels) for images, or delete, swap, char (probabilities) for text")


def parse_augment(spec: str) -> dict[str, float]:
    """'rotate=10,translate=1' -> {'rotate': 10.0, 'translate': 1.0}; 'default' -> {} (the modality's defaults)."""
    spec = spec.strip()
    if spec == "default":
        return {}
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, value = part.partition("=")
        ranges = {**IMAGE, **TEXT}
        try:
            strength = float(value)
        except ValueError:
            strength = math.nan
        if not eq or name.strip() not in ranges or math.isnan(strength):
            raise ValueError(f"--augment {spec!r} is not accepted at {part!r}; {_USE}.")
        lo, hi = ranges[name.strip()]
        if not lo <= strength <= hi:
            raise ValueError(f"--augment {name.strip()}={value} is out of range; use a value in [{lo:g}, {hi:g}].")
        out[name.strip()] = strength
    if not out:
        raise ValueError(f"--augment {spec!r} names no transform; {_USE}.")
    if set(out) & set(IMAGE) and set(out) & set(TEXT):
        raise ValueError(f"--augment {spec!r} mixes image and text transforms; a task has one kind of input.")
    return out


class Augmenter:
    """Turns a collated batch into an augmented batch of the same shape, labels untouched."""

    def __init__(self, spec: str, modality: str, tokenizer: Any = None):
        strengths = parse_augment(spec) or DEFAULTS[modality]
        allowed = IMAGE if modality == "image" else TEXT
        wrong = sorted(set(strengths) - set(allowed))
        if wrong:
            raise ValueError(f"--augment {','.join(wrong)} does not apply to {modality} inputs; use {', '.join(allowed)}.")
        if modality == "text" and strengths.get("char") and tokenizer is None:
            raise ValueError("--augment char needs a task with a tokenizer; drop char.")
        self.modality, self.strengths, self.tokenizer = modality, strengths, tokenizer

    def __call__(self, batch: dict[str, torch.Tensor], seed: int, offset: int = 0, total: int | None = None) -> dict[str, torch.Tensor]:
        """Augment `batch`, which is rows offset..offset+n of a global batch of `total` rows drawn with `seed`."""
        n = len(batch["labels"])
        total = n if total is None else total
        g = torch.Generator().manual_seed(int(seed) % 2**63)
        if self.modality == "image":
            return {**batch, "pixels": self._images(batch["pixels"], g, offset, total)}
        return {**batch, **self._texts(batch, g, offset, total)}

    # -- images ---------------------------------------------------------------------------
    def _images(self, x: torch.Tensor, g: torch.Generator, offset: int, total: int) -> torch.Tensor:
        s = self.strengths
        draws = torch.rand(total, 5, generator=g, dtype=torch.float64)[offset: offset + len(x)]
        flip = torch.where(draws[:, 0] < s.get("flip", 0.0), -1.0, 1.0)
        angle = torch.deg2rad((2 * draws[:, 1] - 1) * s.get("rotate", 0.0))
        scale = 1.0 + (2 * draws[:, 2] - 1) * s.get("scale", 0.0)
        h, w = x.shape[-2:]
        t = s.get("translate", 0.0)
        shift = torch.round((2 * draws[:, 3:5] - 1) * t)  # whole pixels keep small images crisp
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # affine_grid maps output coordinates to input coordinates, both in [-1, 1]
        theta = torch.stack([torch.stack([cos * flip, -sin, -2 * shift[:, 0] / w], 1),
                             torch.stack([sin * flip, cos, -2 * shift[:, 1] / h], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # -- text -----------------------------------------------------------------------------
    def _texts(self, batch: dict[str, torch.Tensor], g: torch.Generator, offset: int, total: int) -> dict[str, torch.Tensor]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        seeds = torch.randint(0, 2**62, (total,), generator=g)[offset: offset + len(ids)].tolist()
        width = ids.shape[1]
        pad = getattr(self.tokenizer, "pad_token_id", None) or 0
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        out_ids = torch.full_like(ids, pad)
        out_mask = torch.zeros_like(mask)
        for i, seed in enumerate(seeds):
            rng = random.Random(seed)
            row = ids[i][mask[i].bool()].tolist()
            row = self._noisy(row, rng, special, width)
            out_ids[i, : len(row)] = torch.tensor(row, dtype=ids.dtype)
            out_mask[i, : len(row)] = 1
        return {"input_ids": out_ids, "attention_mask": out_mask}

    def _noisy(self, row: list[int], rng: random.Random, special: set[int], width: int) -> list[int]:
        s = self.strengths
        keep = (lambda t: t in special) if special else (lambda t: False)
        head = [row[0]] if row and (keep(row[0]) or not special) else []
        tail = [row[-1]] if len(row) > 1 and (keep(row[-1]) or not special) else []
        body = row[len(head): len(row) - len(tail)]
        if s.get("char") and body:
            text = self.tokenizer.decode(body)
            noisy = _char_noise(text, s["char"], rng)
            body = self.tokenizer(noisy, add_special_tokens=False)["input_ids"][: max(0, width - len(head) - len(tail))] or body
        if s.get("delete") and len(body) > 1:
            kept = [t for t in body if rng.random() >= s["delete"]]
            body = kept or [body[rng.randrange(len(body))]]
        if s.get("swap"):
            for j in range(len(body) - 1):
                if rng.random() < s["swap"]:
                    body[j], body[j + 1] = body[j + 1], body[j]
        return head + body + tail


def _char_noise(text: str, p: float, rng: random.Random) -> str:
    """Typos: each letter is, with probability p, replaced, dropped, doubled or swapped with the next."""
    chars, out, j = list(text), [], 0
    while j < len(chars):
        c = chars[j]
        if c.isalpha() and rng.random() < p:
            kind = rng.randrange(4)
            if kind == 0:
                out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
            elif kind == 2:
                out += [c, c]
            elif kind == 3 and j + 1 < len(chars):
                out += [chars[j + 1], c]
                j += 1
        else:
            out.append(c)
        j += 1
    return "".join(out) or text


def augmenter_for(spec: str | None, task: Any, example_batch: dict[str, torch.Tensor]) -> Augmenter | None:
    """The augmenter that fits `task`'s inputs, or None when `spec` is None; ValueError when it cannot apply."""
    if spec is None:
        return None
    if "pixels" in example_batch:
        return Augmenter(spec, "image")
    if "input_ids" in example_batch and getattr(task, "kind", "") == "classification":
        return Augmenter(spec, "text", getattr(task, "tokenizer", None))
    raise ValueError(f"--augment does not apply to task {getattr(task, 'name', task)!r} "
                     "(it augments images and classified texts); drop --augment.")
