"""What is being explained, per kind of task: how inputs are read, what 'absent' means, and what a feature is
(a pixel of a digit image; a word of a text, its tokens merged back through the tokenizer's word ids)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from .attribute import attribute, weights_frozen
from .config import ExplainConfig


@dataclass
class Item:
    """One input to explain: a digit image (`pixels`) or a text with its tokens and words."""

    name: str
    pixels: torch.Tensor | None = None  # 1 x H x W
    text: str | None = None
    ids: list[int] = field(default_factory=list)
    word_ids: list[int | None] = field(default_factory=list)  # per token: its word, None for special tokens
    words: list[str] = field(default_factory=list)
    label: int | None = None  # the true class, when known (test split)

    @property
    def n_features(self) -> int:
        return self.pixels.numel() if self.pixels is not None else len(self.words)


PADDING_SLACK = 1.1  # a text batch may hold at most 10% more tokens (padding included) than its texts have


def length_chunks(lengths, size: int) -> list[np.ndarray]:
    """Indices of texts per model call: up to `size` texts, sorted by length and cut where padding would exceed
    PADDING_SLACK, since every padded token costs a real token's compute."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    out, start, real = [], 0, 0
    for k, i in enumerate(order):
        count = k - start + 1
        if count > 1 and (count > size or lengths[i] * count > PADDING_SLACK * (real + lengths[i])):
            out.append(order[start:k])
            start, real = k, 0
        real += lengths[i]
    if len(order):
        out.append(order[start:])
    return out


def _check_index(index: tuple[int, ...], n: int) -> None:
    bad = [i for i in index if i >= n]
    if bad:
        raise UsageError(f"--index {bad[0]} is out of range; the test split has {n} examples (0..{n - 1}).")


class Subject:
    kind = "image"
    baselines: tuple[str, ...] = ()

    def __init__(self, task, model: nn.Module):
        self.task, self.model = task, model.eval()

    def with_model(self, model: nn.Module) -> "Subject":
        return type(self)(self.task, model)

    def class_name(self, c: int) -> str:
        return self.task.labels[c] if getattr(self.task, "labels", None) else str(c)

    def parse_target(self, target: str | None) -> int | None:
        if target is None:
            return None
        labels = list(getattr(self.task, "labels", []) or [])
        if target in labels:
            return labels.index(target)
        if target.lstrip("-").isdigit() and 0 <= int(target) < len(labels):
            return int(target)
        raise UsageError(f"--target {target!r} is out of range; use a class index 0..{len(labels) - 1} or a label ({', '.join(labels)}).")

    def test_items(self, seed: int) -> list[Item]:
        raise NotImplementedError

    def check_baseline(self, baseline: str | None) -> str:
        baseline = baseline or self.baselines[0]
        if baseline not in self.baselines:
            raise UsageError(f"--baseline {baseline} is not accepted for {self.task.name}; use {', '.join(self.baselines)}.")
        return baseline

    @torch.no_grad()
    def predict(self, items: list[Item]) -> torch.Tensor:
        inputs, extra = self.batch(items)
        return self.forward(inputs, *extra)


class ImageSubject(Subject):
    """Digit images (N x 1 x 8 x 8); features are pixels."""

    kind = "image"
    baselines = ("zero", "blur", "mask")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.task.forward(self.model, {"pixels": pixels}), dim=-1)  # on the model's device

    def read_inputs(self, config: ExplainConfig, seed: int) -> list[Item]:
        if config.index:
            items = self.test_items(seed)
            _check_index(config.index, len(items))
            return [items[i] for i in config.index]
        if config.input is not None:
            try:
                values = [float(v) for v in config.input.replace(",", " ").split()]
            except ValueError:
                raise UsageError(f"--input {config.input[:40]!r} is not accepted for digits; give 64 comma-separated pixel values.") from None
            pixels = self.task.encode(np.asarray(values, dtype=np.float32))["pixels"]
            return [Item("input", pixels=pixels[0])]
        path = Path(config.input_file)
        if not path.is_file():
            raise UsageError(f"--input-file {str(path)!r} does not exist; give a .npy or .npz of 8x8 images.")
        try:
            data = np.load(path)
            images = data["images"] if hasattr(data, "files") else data
        except (ValueError, OSError, KeyError) as exc:
            raise UsageError(f"--input-file {str(path)!r} is not a .npy array or an .npz with 'images' ({exc}).") from None
        if len(images) == 0:
            raise UsageError(f"--input-file {str(path)!r} holds no images; give at least one.")
        pixels = self.task.encode(images)["pixels"]
        return [Item(f"#{i}", pixels=p) for i, p in enumerate(pixels)]

    def test_items(self, seed: int) -> list[Item]:
        test = self.task.splits(seed).test
        return [Item(f"test #{i}", pixels=test[i]["pixels"], label=int(test[i]["labels"])) for i in range(len(test))]

    def batch(self, items: list[Item]):
        return torch.stack([it.pixels for it in items]), ()

    def baseline_of(self, x: torch.Tensor, baseline: str) -> torch.Tensor:
        if baseline == "zero":
            return torch.zeros_like(x)
        if baseline == "mask":
            return x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x).clone()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :] / 16.0).view(1, 1, 3, 3)  # a 3x3 Gaussian blur
        return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)

    def attribute(self, items: list[Item], targets: torch.Tensor, config: ExplainConfig, baseline: str):
        x, _ = self.batch(items)
        base = self.baseline_of(x, baseline)
        mask = torch.arange(x[0].numel()).view(1, *x.shape[1:]).expand_as(x)
        with weights_frozen(self.model):
            a = attribute(config.method, self.forward, x, base, targets, feature_mask=mask, n_steps=config.n_steps,
                          max_steps=config.max_steps, tolerance=config.tolerance, n_samples=config.n_samples, seed=config.seed)
        return [v.flatten().tolist() for v in a.values], a

    def differs(self, items: list[Item], baseline: str) -> list[np.ndarray]:
        """Per input: which pixels differ from the baseline's."""
        x, _ = self.batch(items)
        return [d.flatten().numpy() for d in (x != self.baseline_of(x, baseline))]

    @torch.no_grad()
    def masked_probs(self, items: list[Item], keeps: list[np.ndarray], targets: list[int], baseline: str) -> np.ndarray:
        """Probability of each target when only the kept pixels show (the rest set to the baseline)."""
        x, _ = self.batch(items)
        base = self.baseline_of(x, baseline)
        keep = torch.as_tensor(np.stack(keeps)).view_as(x)
        probs = self.forward(torch.where(keep, x, base))
        return probs[torch.arange(len(items)), torch.as_tensor(targets)].numpy()


def _zero_embedding_hooks(layer: nn.Module) -> None:
    """Token id -1 embeds as the zero vector: the `zero` text baseline. Installed once per embedding layer."""
    if getattr(layer, "_tamer_zero_hooks", False):
        return

    def pre(module, args):
        ids = args[0]
        negative = ids < 0
        module._tamer_zero_rows = negative if bool(negative.any()) else None
        return (ids.clamp(min=0), *args[1:]) if module._tamer_zero_rows is not None else None

    def post(module, args, output):
        rows = getattr(module, "_tamer_zero_rows", None)
        if rows is None:
            return None
        module._tamer_zero_rows = None
        return output * (~rows).unsqueeze(-1).to(output.dtype)

    layer.register_forward_pre_hook(pre)
    layer.register_forward_hook(post)
    layer._tamer_zero_hooks = True


class TextSubject(Subject):
    """Texts for a classifier (the predicted class) or a causal LM (the next token); features are words."""

    kind = "text"
    baselines = ("pad", "mask", "zero")

    def __init__(self, task, model: nn.Module):
        super().__init__(task, model)
        self.tokenizer = task.tokenizer
        self.lm = task.kind == "language-model"
        hf = model.model if self.lm else model.encoder
        self.layer = hf.get_input_embeddings()
        self.hidden = int(self.layer.weight.shape[1])
        self.max_length = task.config.block_size if self.lm else task.config.max_length
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        _zero_embedding_hooks(self.layer)

    def class_name(self, c: int) -> str:
        return repr(self.tokenizer.decode([c])) if self.lm else super().class_name(c)

    def parse_target(self, target: str | None) -> int | None:
        if target is None or not self.lm:
            return super().parse_target(target)
        vocab = len(self.tokenizer)
        if target.lstrip("-").isdigit():
            if 0 <= int(target) < vocab:
                return int(target)
            raise UsageError(f"--target {target} is out of range; use a token id 0..{vocab - 1} or a string that is one token.")
        ids = self.tokenizer(target)["input_ids"]
        if len(ids) != 1:
            raise UsageError(f"--target {target!r} is {len(ids)} tokens; give a token id 0..{vocab - 1} or a string that is one token.")
        return ids[0]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.task.forward(self.model, {"input_ids": ids.long(), "attention_mask": mask})
        if self.lm:
            last = mask.sum(1).clamp(min=1) - 1  # the next token after the prompt's last real token
            logits = logits[torch.arange(len(ids)), last]
        return torch.softmax(logits, dim=-1)

    def make_items(self, texts: list[str], names: list[str], labels: list[int | None] | None = None) -> list[Item]:
        if not texts or any(not t.strip() for t in texts):
            raise UsageError("an empty text is not accepted; give at least one non-blank string.")
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        items = []
        for i, text in enumerate(texts):
            word_ids = enc.word_ids(i)
            offsets = enc["offset_mapping"][i]
            spans: dict[int, list[int]] = {}
            for (start, end), w in zip(offsets, word_ids):
                if w is not None:
                    spans.setdefault(w, [start, end])[1] = end
            order = sorted(spans)
            remap = {w: k for k, w in enumerate(order)}
            words = [text[spans[w][0]:spans[w][1]].strip() or text[spans[w][0]:spans[w][1]] for w in order]
            if not words:
                raise UsageError(f"text {text[:40]!r} has no tokens the model knows; give a text with words in it.")
            items.append(Item(names[i], text=text, ids=list(enc["input_ids"][i]), word_ids=[None if w is None else remap[w] for w in word_ids],
                              words=words, label=None if labels is None else labels[i]))
        return items

    def read_inputs(self, config: ExplainConfig, seed: int) -> list[Item]:
        if config.index:
            items = self.test_items(seed, limit=max(config.index) + 1)
            _check_index(config.index, len(items))
            return [items[i] for i in config.index]
        if config.input is not None:
            return self.make_items([config.input], ["input"])
        path = Path(config.input_file)
        if not path.is_file():
            raise UsageError(f"--input-file {str(path)!r} does not exist; give a text file with one input per line.")
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise UsageError(f"--input-file {str(path)!r} is not UTF-8 text; give one input per line.") from None
        lines = [line for line in lines if line]
        if not lines:
            raise UsageError(f"--input-file {str(path)!r} holds no text; give one input per line.")
        return self.make_items(lines, [f"line {i + 1}" for i in range(len(lines))])

    def test_items(self, seed: int, limit: int | None = None) -> list[Item]:
        test = self.task.splits(seed).test
        n = len(test) if limit is None else min(limit, len(test))
        texts = [self.tokenizer.decode(test[i]["input_ids"], skip_special_tokens=True) for i in range(n)]
        texts = [t if t.strip() else "?" for t in texts]  # keep positions stable for --index
        labels = None if self.lm else [int(test[i]["labels"]) for i in range(n)]
        return self.make_items(texts, [f"test #{i}" for i in range(n)], labels) if n else []

    def _collate(self, rows: list[list[int]]):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    def batch(self, items: list[Item]):
        ids, mask = self._collate([it.ids for it in items])
        return ids, (mask,)

    def baseline_ids(self, items: list[Item], ids: torch.Tensor, baseline: str) -> torch.Tensor:
        if baseline == "mask" and self.tokenizer.mask_token_id is None:
            raise UsageError(f"--baseline mask needs a tokenizer with a mask token; {self.task.name}'s has none, use pad or zero.")
        fill = {"pad": self.pad_id, "mask": self.tokenizer.mask_token_id, "zero": -1}[baseline]
        base = ids.clone()
        for i, it in enumerate(items):
            for t, w in enumerate(it.word_ids):
                if w is not None:
                    base[i, t] = fill
        return base

    def attribute(self, items: list[Item], targets: torch.Tensor, config: ExplainConfig, baseline: str):
        ids, (mask,) = self.batch(items)
        base = self.baseline_ids(items, ids, baseline)
        groups = max(it.n_features for it in items)  # special and pad tokens share one group whose baseline is itself
        feature_mask = torch.full_like(ids, groups)
        for i, it in enumerate(items):
            for t, w in enumerate(it.word_ids):
                if w is not None:
                    feature_mask[i, t] = w
        budget = max(len(items), int(4e6 // (ids.shape[1] * self.hidden)))
        with weights_frozen(self.model):
            a = attribute(config.method, self.forward, ids, base, targets, extra=(mask,), layer=self.layer,
                          feature_mask=feature_mask, n_steps=config.n_steps, max_steps=config.max_steps,
                          tolerance=config.tolerance, n_samples=config.n_samples, seed=config.seed, row_budget=budget)
        return [self._merge(it, a.values[i], a.grouped) for i, it in enumerate(items)], a

    def differs(self, items: list[Item], baseline: str) -> list[np.ndarray]:
        """Per input: which words differ from the baseline (a word differs where any of its tokens does)."""
        ids, _ = self.batch(items)
        changed = ids != self.baseline_ids(items, ids, baseline)
        out = []
        for i, it in enumerate(items):
            d = np.zeros(it.n_features, bool)
            for t, w in enumerate(it.word_ids):
                if w is not None and bool(changed[i, t]):
                    d[w] = True
            out.append(d)
        return out

    @staticmethod
    def _merge(item: Item, values: torch.Tensor, grouped: bool) -> list[float]:
        """Token attributions -> word attributions: the sum over a word's tokens (its one value for grouped methods)."""
        out = [0.0] * len(item.words)
        seen = set()
        for t, w in enumerate(item.word_ids):
            if w is None:
                continue
            if grouped:
                if w not in seen:
                    out[w] = float(values[t])
                    seen.add(w)
            else:
                out[w] += float(values[t])
        return out

    @torch.no_grad()
    def masked_probs(self, items: list[Item], keeps: list[np.ndarray], targets: list[int], baseline: str, chunk: int = 128) -> np.ndarray:
        """Probability of each target with the words not kept deleted from the text (ERASER deletes, not masks).
        Each distinct (text, target) goes through the model once, in calls of similar lengths."""
        index: dict[tuple, int] = {}
        where = []
        for it, keep, t in zip(items, keeps, targets):
            row = tuple(tid for tid, w in zip(it.ids, it.word_ids) if w is None or keep[w]) or (self.tokenizer.eos_token_id or self.pad_id,)
            where.append(index.setdefault((row, t), len(index)))
        unique = list(index)
        result = np.zeros(len(unique), dtype=np.float64)
        for idx in length_chunks([len(r) for r, _ in unique], chunk):
            ids, mask = self._collate([unique[i][0] for i in idx])
            probs = self.forward(ids, mask)
            result[idx] = probs[torch.arange(len(idx)), torch.as_tensor([unique[i][1] for i in idx])].numpy()
        return result[where]

def make_subject(task, model: nn.Module) -> Subject:
    if getattr(task, "tokenizer", None) is not None and task.kind in ("classification", "language-model"):
        return TextSubject(task, model)
    if task.name == "digits":
        return ImageSubject(task, model)
    raise UsageError(f"task {task.name!r} cannot be explained yet; explain works for digits images and tokenized text tasks.")
