"""Tokenizers: a pretrained one from a model folder, a small one trained offline on the training text, or the one an
artifact saved, rebuilt from its JSON (read through the artifact, so a sealed one never touches the disk)."""
from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Literal

from transformers import PreTrainedTokenizerFast

from ..errors import ArtifactError
from .pretrained import pretrained_tokenizer, refuse_remote_code
from .wordpiece import PREFIX, wordpiece_vocab

if TYPE_CHECKING:
    from ..artifact import Artifact

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
WORD_CHARS = 100  # WordPiece reads a longer word as [UNK] (BERT's limit)
SETTINGS = ("model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces")


def train_tokenizer(texts: list[str], kind: Literal["wordpiece", "bpe"], vocab_size: int) -> PreTrainedTokenizerFast:
    """A WordPiece (BERT-style) or byte-level BPE (GPT-2-style) tokenizer fitted to `texts`; the same texts give the
    same tokenizer in every process (WordPiece's vocabulary is built here: see wordpiece.py)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        alone = {ch for ch in {ch for w in words for ch in w}  # punctuation, CJK: never inside a word, no ##piece
                 if len(pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(f"a{ch}a"))) != 1}
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokens = wordpiece_vocab(words, vocab_size, special, max_chars=WORD_CHARS, alone=alone)
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]",
                                         continuing_subword_prefix=PREFIX, max_input_chars_per_word=WORD_CHARS))
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        tok.add_special_tokens(special)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        tok.decoder = decoders.WordPiece(prefix=PREFIX)
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")


def quiet_transformers() -> None:
    """Hugging Face's load reports and download bars mean nothing offline; keep the terminal for tamer."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_tokenizer(folder) -> PreTrainedTokenizerFast:
    """The tokenizer of a Hugging Face model folder (no code from it runs; see pretrained.py)."""
    return pretrained_tokenizer(folder)


def _token(value):
    return value.get("content") if isinstance(value, dict) else value  # older files store AddedToken as a dict


def tokenizer_from_artifact(artifact: Artifact, folder: str = "tokenizer") -> PreTrainedTokenizerFast:
    """The tokenizer an artifact saved under `folder` (by `save_pretrained`): its tokenizer.json, with the special
    tokens and settings of tokenizer_config.json (and special_tokens_map.json, which older versions wrote)."""
    from tokenizers import Tokenizer

    where = f"artifact {str(artifact.path)!r}"
    listed = artifact.manifest.get("files", {})
    if f"{folder}/tokenizer.json" not in listed:
        raise ArtifactError(f"{where} has no {folder}/tokenizer.json; tamer reads a saved tokenizer from that file.")
    settings: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if f"{folder}/{name}" in listed:
            try:
                config = json.loads(artifact.read_bytes(f"{folder}/{name}"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ArtifactError(f"{folder}/{name} in {where} is not valid JSON.") from None
            refuse_remote_code(config, f"{folder}/{name} in {where}")
            settings.update(config if isinstance(config, dict) else {})
    kwargs = {k: _token(settings[k]) for k in SPECIAL_TOKENS if settings.get(k) is not None}
    extra = settings.get("additional_special_tokens") or settings.get("extra_special_tokens")
    if isinstance(extra, list) and extra:
        kwargs["additional_special_tokens"] = [_token(t) for t in extra]
    kwargs.update({k: settings[k] for k in SETTINGS if settings.get(k) is not None})
    try:
        backend = Tokenizer.from_str(artifact.read_bytes(f"{folder}/tokenizer.json").decode("utf-8"))
    except Exception as exc:  # tokenizers raises a plain Exception on JSON it cannot read
        raise ArtifactError(f"{folder}/tokenizer.json in {where} is not a tokenizer ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
