"""Configs of the protect verbs: one name per option across Python, CLI flags and recipes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check, field
from .crypto import DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK


@dataclass(frozen=True)
class EncryptConfig:
    """How to seal or open an artifact: a key file or a passphrase in an environment variable."""

    key_file: str | None = field(None, "key file written by `tamer keygen`")
    passphrase_env: str | None = field(None, "name of the environment variable holding a passphrase (scrypt)")
    chunk_size: int = field(DEFAULT_CHUNK, "plaintext bytes per AES-GCM chunk (memory stays near four chunks)")

    def __post_init__(self):
        check(MIN_CHUNK <= self.chunk_size <= MAX_CHUNK,
              f"--chunk-size {self.chunk_size} is out of range; use {MIN_CHUNK} (64 KiB) to {MAX_CHUNK} bytes (1 GiB).")
        check(bool(self.key_file) != bool(self.passphrase_env),
              "give exactly one of --key-file KEYFILE or --passphrase-env VAR.")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy: DP-SGD through Opacus for `train --private` (clipping each example's gradient to
    `max_grad_norm`); `federate --private` takes epsilon and delta from here and clips client updates instead."""

    private: bool = field(False, "train with differential privacy (train: DP-SGD, in fp32 only; federate: client-level DP)")
    epsilon: float = field(3.0, "privacy budget epsilon the whole run may spend")
    delta: float = field(1e-5, "privacy parameter delta (well below 1 / training examples)")
    max_grad_norm: float = field(1.0, "per-example gradient clipping norm")

    def __post_init__(self):
        check(self.epsilon > 0, f"--epsilon {self.epsilon} is out of range; use a positive number.")
        check(0 < self.delta < 1, f"--delta {self.delta} is out of range; use a number in (0, 1), such as 1e-5.")
        check(self.max_grad_norm > 0, f"--max-grad-norm {self.max_grad_norm} is out of range; use a positive number.")


SCRUB_MODES = ("mask", "redact", "hash", "pseudonymize")


@dataclass(frozen=True)
class ScrubConfig:
    """What to find in text data and what to put in its place."""

    mode: Literal["mask", "redact", "hash", "pseudonymize"] = field("mask", "mask ([EMAIL]), redact (remove), hash (keyed digest, needs a key) or pseudonymize (keyed, reversible with the key)")
    entities: tuple[str, ...] = field((), "entities to find, comma separated (default: all; person and address need the ner extra)")
    lang: tuple[str, ...] = field(("en", "zh"), "languages whose context words are used (en, zh, de)")
    columns: tuple[str, ...] = field((), "CSV/TSV columns or JSONL fields to scrub (default: every text column)")
    key_file: str | None = field(None, "key file for hash / pseudonymize (and to encrypt the pseudonym mapping)")
    passphrase_env: str | None = field(None, "environment variable with a passphrase instead of a key file")

    def __post_init__(self):
        from .detect import check_entities

        check(self.mode in SCRUB_MODES, f"--mode {self.mode!r} is not accepted; choose one of {', '.join(SCRUB_MODES)}.")
        check_entities(self.entities)
        bad = [x for x in self.lang if x not in ("en", "zh", "de")]
        check(not bad, f"--lang {','.join(bad)} is not accepted; choose from en, zh, de.")
        check(self.mode != "pseudonymize" or bool(self.key_file or self.passphrase_env),
              "--mode pseudonymize needs --key-file or --passphrase-env (the mapping is encrypted with it).")
        check(self.mode != "hash" or bool(self.key_file or self.passphrase_env),
              "--mode hash needs --key-file or --passphrase-env (an unkeyed digest of a phone number is reversed by "
              "trying every number).")
