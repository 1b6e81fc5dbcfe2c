"""Text attacks: character edits (swap, insert, delete, homoglyph) and word edits (drop, duplicate, swap
neighbours), at most `budget` per sentence, chosen greedily by the model's loss (the edit that raises the loss most,
one round per edit, until the prediction flips). Deterministic per seed: candidates are drawn by `random.Random`."""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

import torch

HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "s": "ѕ", "x": "х", "y": "у",
              "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р", "T": "Т"}
CHAR_OPS = ("swap", "insert", "delete", "homoglyph")
WORD_OPS = ("drop", "duplicate", "swap-words")


@dataclass(frozen=True)
class Edit:
    op: str
    word: int  # index of the word edited (in the sentence the edit applies to)
    text: str  # the sentence after the edit


def char_edit(words: list[str], i: int, op: str, rng: random.Random) -> list[str] | None:
    w = words[i]
    if op == "swap" and len(w) >= 2:
        k = rng.randrange(len(w) - 1)
        new = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    elif op == "insert":
        k = rng.randrange(len(w) + 1)
        new = w[:k] + rng.choice(string.ascii_lowercase) + w[k:]
    elif op == "delete" and len(w) >= 2:
        k = rng.randrange(len(w))
        new = w[:k] + w[k + 1:]
    elif op == "homoglyph":
        spots = [k for k, ch in enumerate(w) if ch in HOMOGLYPHS]
        if not spots:
            return None
        k = rng.choice(spots)
        new = w[:k] + HOMOGLYPHS[w[k]] + w[k + 1:]
    else:
        return None
    return words[:i] + [new] + words[i + 1:] if new != w else None


def word_edit(words: list[str], i: int, op: str) -> list[str] | None:
    if op == "drop" and len(words) >= 2:
        return words[:i] + words[i + 1:]
    if op == "duplicate":
        return words[:i + 1] + [words[i]] + words[i + 1:]
    if op == "swap-words" and i + 1 < len(words) and words[i] != words[i + 1]:
        return words[:i] + [words[i + 1], words[i]] + words[i + 2:]
    return None


def candidates(text: str, kind: str, count: int, rng: random.Random) -> list[Edit]:
    """Up to `count` distinct one-edit neighbours of `text`: character edits (`kind` "char") or word edits ("word")."""
    words = text.split()
    if not words:
        return []
    ops = CHAR_OPS if kind == "char" else WORD_OPS
    pool = [(i, op) for i in range(len(words)) for op in ops]
    rng.shuffle(pool)
    out, seen = [], {text}
    for i, op in pool:
        new = char_edit(words, i, op, rng) if kind == "char" else word_edit(words, i, op)
        if new is None:
            continue
        sentence = " ".join(new)
        if sentence not in seen:
            seen.add(sentence)
            out.append(Edit(op, i, sentence))
        if len(out) >= count:
            break
    return out


def random_edits(text: str, kind: str, budget: int, rng: random.Random) -> str:
    """`budget` random edits in a row (noise, and the perturbed training copies of `harden`)."""
    for _ in range(budget):
        options = candidates(text, kind, 1, rng)
        if not options:
            break
        text = options[0].text
    return text


SCORED_AT_ONCE = 16  # candidates per forward: a flip found in one chunk spares the forwards of the rest


def best_edit(options: list[Edit], y: int, scores: Callable[[list[str], list[int]], torch.Tensor]) -> tuple[Edit, bool]:
    """The candidate of highest loss and whether it flips the prediction, scored `SCORED_AT_ONCE` at a time: the
    first chunk holding a flip ends the search (its highest-loss flip is taken), since a flip ends the attack; with
    no flip every candidate is scored and the choice is the exhaustive one."""
    best, top = options[0], float("-inf")
    for s in range(0, len(options), SCORED_AT_ONCE):
        part = options[s:s + SCORED_AT_ONCE]
        loss, correct = scores([e.text for e in part], [y] * len(part))
        wrong = (~correct).nonzero()[:, 0]
        if len(wrong):
            return part[int(wrong[loss[wrong].argmax()])], True
        i = int(loss.argmax())
        if float(loss[i]) > top:
            best, top = part[i], float(loss[i])
    return best, False


def greedy_attack(texts: list[str], labels: list[int], scores: Callable[[list[str], list[int]], torch.Tensor],
                  kind: str, budget: int, count: int, seed: int) -> list[tuple[str, list[Edit]]]:
    """For each sentence: up to `budget` rounds, each scoring `count` one-edit neighbours with `scores(texts, labels)
    -> (loss, correct)` per text and keeping the one of highest loss (`best_edit`); stops once the prediction is
    wrong."""
    out = []
    for n, (text, y) in enumerate(zip(texts, labels)):
        rng = random.Random(seed * 1_000_003 + n)
        current, edits = text, []
        for _ in range(budget):
            options = candidates(current, kind, count, rng)
            if not options:
                break
            edit, flipped = best_edit(options, y, scores)
            current = edit.text
            edits.append(edit)
            if flipped:
                break
        out.append((current, edits))
    return out
