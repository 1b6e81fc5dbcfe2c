"""`causal-lm`: a GPT-2-style decoder trained on a plain text file; metric perplexity."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import check
from ..errors import DataError, UsageError
from .base import ListDataset, Splits, Task
from .splits import split_indices
from .textfiles import read_plain
from .pretrained import model_from_config, pretrained_config, pretrained_model
from .vocab import load_tokenizer, quiet_transformers, tokenizer_from_artifact, train_tokenizer

PRESETS = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
    "small": dict(n_layer=4, n_head=4, n_embd=256),
}


def _narrow_attention(model: nn.Module, heads: int) -> None:
    """Give every GPT-2 attention `heads` heads of the configured head width (projections empty, to be loaded)."""
    from transformers.pytorch_utils import Conv1D

    for block in model.model.transformer.h:
        att = block.attn
        width = heads * att.head_dim
        att.c_attn = Conv1D(3 * width, att.embed_dim)
        att.c_proj = Conv1D(att.embed_dim, width)
        att.split_size, att.num_heads = width, heads


class CausalLM(nn.Module):
    """A Hugging Face causal LM behind a plain `forward(input_ids, attention_mask) -> logits`. With `cache` (from
    `new_cache()`) it runs only the tokens the cache does not hold yet, appends their keys and values to it in place
    and returns the last position's logits alone: a decoding step through the model's own `use_cache=True`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._cache_kwargs: dict[str, Any] | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: Any = None) -> torch.Tensor:
        if cache is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return self.model(input_ids=input_ids, use_cache=True, **self._cached(cache)).logits

    def _cached(self, cache: Any) -> dict[str, Any]:
        if self._cache_kwargs is None:  # transformers 5 names it `cache`, 4.x `past_key_values`
            params = inspect.signature(self.model.forward).parameters
            self._cache_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
            self._cache_kwargs["cache"] = "cache" if "cache" in params else "past_key_values"
        kwargs = dict(self._cache_kwargs)
        kwargs[kwargs.pop("cache")] = cache
        return kwargs

    def new_cache(self) -> Any:
        """An empty key / value cache that `forward(..., cache=)` fills."""
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # older transformers take no config
            return DynamicCache()


class KVCache:
    """The keys and values of `tokens`, the ids from `start` on that the model has seen through `store`."""

    def __init__(self, model: nn.Module):
        self.model, self.start = model, 0
        self.tokens = torch.empty(0, dtype=torch.long)
        self.store = model.new_cache()

    def reset(self, start: int) -> None:
        self.start, self.tokens, self.store = start, self.tokens[:0], self.model.new_cache()


class CausalLMTask(Task):
    name = "causal-lm"
    description = "GPT-2-style decoder (preset tiny/small or a Hugging Face folder) on a plain text file; perplexity"
    kind = "language-model"
    metric = "perplexity"
    higher_is_better = False
    path_options = ("data", "tokenizer_data")

    @dataclass(frozen=True)
    class Config:
        data: str | None = None
        model: str = "tiny"  # tiny | small | a Hugging Face causal-LM folder
        block_size: int = 128
        vocab_size: int = 2000  # for the presets' own byte-level BPE tokenizer
        tokenizer_data: str | None = None  # public text to fit the presets' tokenizer on instead of the training split
        val_fraction: float = 0.1
        test_fraction: float = 0.1

        def __post_init__(self):
            check(8 <= self.block_size <= 8192, f"--block-size {self.block_size} is out of range; use 8..8192.")
            check(300 <= self.vocab_size <= 200_000, f"--vocab-size {self.vocab_size} is out of range; use 300..200000.")

    def __init__(self, config=None):
        super().__init__(config)
        self.tokenizer = None
        self._pretrained: str | None = None

    def _blocks(self, lines: list[str]) -> ListDataset:
        eos = self.tokenizer.eos_token_id
        ids: list[int] = []
        for row in self.tokenizer(lines)["input_ids"]:
            ids.extend(row + [eos])
        b = self.config.block_size
        blocks = [ids[i:i + b] for i in range(0, len(ids), b)]
        return ListDataset([{"input_ids": block} for block in blocks if len(block) >= 2])

    def fitted_on_training_data(self):
        if self.config.model in PRESETS and not self.config.tokenizer_data:
            return {"tokenizer": "fit the preset's tokenizer on public text with --tokenizer-data FILE, or pass a "
                                 "pretrained model folder as --model"}
        return {}

    def prepare(self, seed: int) -> Splits:
        lines = read_plain(self.config.data)
        if len(lines) < 3:
            raise DataError(f"{self.config.data!r} has {len(lines)} line(s); causal-lm splits by line and needs at least 3.")
        train, val, test = split_indices(len(lines), self.config.val_fraction, self.config.test_fraction, seed)
        train_lines = [lines[i] for i in sorted(train)]
        model = self.config.model
        if self.tokenizer is not None:  # restored from an artifact
            pass
        elif model in PRESETS:
            texts = read_plain(self.config.tokenizer_data) if self.config.tokenizer_data else train_lines
            self.tokenizer = train_tokenizer(texts, "bpe", self.config.vocab_size)
        elif Path(model).is_dir():
            self._pretrained = model
            self.tokenizer = load_tokenizer(model)
            if self.tokenizer.eos_token_id is None:
                raise UsageError(f"the tokenizer in --model {model!r} has no end-of-text token; causal-lm needs one.")
        else:
            raise UsageError(f"--model {model!r} is not accepted; use {', '.join(PRESETS)} or a Hugging Face model folder.")
        return Splits(*(self._blocks([lines[i] for i in sorted(part)]) for part in (train, val, test)))

    def train_defaults(self):
        return {"epochs": 10, "batch_size": 16, "lr": 1e-3 if self._pretrained is None else 5e-5}

    def load_eval(self, path):
        return self._blocks(read_plain(path))

    def collate(self, examples):
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            mask[i, :n] = 1
            labels[i, :n] = ids[i, :n]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def encode(self, inputs):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise UsageError("an empty prompt is not accepted; give at least one non-blank string.")
        batch = self.collate([{"input_ids": ids[: self.config.block_size]} for ids in self.tokenizer(texts)["input_ids"]])
        batch.pop("labels")
        return batch

    def kv_cache(self, model: nn.Module) -> KVCache | None:
        """An empty cache for `next_logits`, or None where the model cannot decode through one: a model without
        `new_cache` (not this task's `CausalLM`), or one with a layer whose output for a token depends on the other
        tokens of the call (`mixes_tokens`: int8 activations quantized with one scale per call), which a cache
        (new tokens run alone) would not reproduce. Those recompute the window for every token."""
        if not callable(getattr(model, "new_cache", None)) or any(getattr(m, "mixes_tokens", False)
                                                                  for m in model.modules()):
            return None
        return KVCache(model)

    def next_logits(self, model: nn.Module, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The fp32 logits of the token after the 1-D `ids`, seen through the model's window (their last block_size
        tokens). Without `cache`, the window is recomputed (the reference); with one, the window's tokens the cache
        holds are not run again: the prompt is prefilled once, then each call runs the one new token. Once the text
        outgrows the window it slides, every position changes and the cache no longer fits: the last window is
        prefilled again, so the tokens are the recompute's."""
        start = max(0, len(ids) - self.config.block_size)
        if cache is None:
            window = ids[start:][None]
            return self.forward(model, {"input_ids": window, "attention_mask": torch.ones_like(window)})[0, -1]
        held = len(cache.tokens)
        if cache.start != start or held >= len(ids) - start or (held and not torch.equal(ids[start:start + held],
                                                                                        cache.tokens)):
            cache.reset(start)
            held = 0
        logits = self.forward(model, {"input_ids": ids[start + held:][None], "cache": cache.store})[0, -1]
        cache.tokens = ids[start:]
        return logits

    @torch.no_grad()
    def predict(self, model, batch, max_new_tokens=20, cache=True):
        """Each prompt continued greedily (the most likely next token) until end-of-text or `max_new_tokens`,
        through the model's key / value cache (`cache=False`: recompute the window for every token, the reference)."""
        model.eval()
        eos, out = self.tokenizer.eos_token_id, []
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            prompt = ids[mask.bool()]
            ids, kv = prompt.clone(), self.kv_cache(model) if cache else None
            for _ in range(max_new_tokens):
                nxt = int(self.next_logits(model, ids, kv).argmax())
                if nxt == eos:
                    break
                ids = torch.cat([ids, torch.tensor([nxt], device=ids.device)])
            text = self.tokenizer.decode(prompt.tolist())
            out.append({"prompt": text, "generated_text": text + self.tokenizer.decode(ids[len(prompt):].tolist())})
        return out

    def loss(self, outputs, batch):
        # next-token prediction: position t predicts token t+1
        logits = outputs[:, :-1].reshape(-1, outputs.shape[-1])
        return nn.functional.cross_entropy(logits, batch["labels"][:, 1:].reshape(-1).to(outputs.device),
                                           ignore_index=-100)

    def model_config(self):
        if self._pretrained:
            cfg = pretrained_config(self._pretrained)
        else:
            cfg = dict(model_type="gpt2", vocab_size=len(self.tokenizer), n_positions=self.config.block_size,
                       bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.tokenizer.eos_token_id,
                       **PRESETS[self.config.model])
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("transformers_version", "architectures")}
        return {"arch": "CausalLM", "decoder": cfg}

    def build_model(self, model_config):
        quiet_transformers()
        if self._pretrained:
            return CausalLM(pretrained_model(self._pretrained, causal_lm=True))
        model = CausalLM(model_from_config(model_config["decoder"], "the decoder config", causal_lm=True))
        if model_config.get("attention_heads"):  # written by structured head pruning
            _narrow_attention(model, model_config["attention_heads"])
        return model

    def write_files(self, folder):
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))

    def restore(self, artifact, model_config):
        self.tokenizer = tokenizer_from_artifact(artifact, "tokenizer")
        self._pretrained = None
