"""Augmentation: shapes and labels kept, deterministic per seed, independent of how a batch is split over ranks."""
from __future__ import annotations

import pytest
import torch

from tamer.training.augment import Augmenter, augmenter_for, parse_augment


def images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.rand(n, 1, 8, 8, generator=g), "labels": torch.arange(n) % 10}


def test_parse_and_refuse():
    assert parse_augment("rotate=10, translate=1") == {"rotate": 10.0, "translate": 1.0}
    assert parse_augment("default") == {}
    for bad in ("spin=3", "rotate", "rotate=x", "rotate=400", "flip=0.5,delete=0.1", ""):
        with pytest.raises(ValueError, match="--augment"):
            parse_augment(bad)
    with pytest.raises(ValueError, match="does not apply to image"):
        Augmenter("delete=0.1", "image")


def test_images_keep_shape_labels_and_are_deterministic():
    batch = images()
    aug = Augmenter("default", "image")
    assert "flip" not in aug.strengths  # digits are not mirror-invariant
    a, b, c = aug(batch, seed=1), aug(batch, seed=1), aug(batch, seed=2)
    assert a["pixels"].shape == batch["pixels"].shape and torch.equal(a["labels"], batch["labels"])
    assert torch.equal(a["pixels"], b["pixels"]) and not torch.equal(a["pixels"], c["pixels"])


def test_same_augmentation_whatever_the_split_over_ranks():
    batch, aug = images(7), Augmenter("rotate=15,scale=0.2,translate=1,flip=0.5", "image")
    whole = aug(batch, seed=5)["pixels"]
    halves = [aug({k: v[lo:hi] for k, v in batch.items()}, seed=5, offset=lo, total=7)["pixels"] for lo, hi in ((0, 4), (4, 7))]
    torch.testing.assert_close(torch.cat(halves), whole, rtol=0, atol=0)


def test_flip_and_shift_against_closed_forms():
    batch = images(4)
    flipped = Augmenter("flip=1", "image")(batch, seed=0)["pixels"]
    torch.testing.assert_close(flipped, batch["pixels"].flip(-1), atol=1e-5, rtol=0)
    same = Augmenter("rotate=0", "image")(batch, seed=0)["pixels"]
    torch.testing.assert_close(same, batch["pixels"], atol=1e-5, rtol=0)
    shifted = Augmenter("translate=1", "image")(batch, seed=3)["pixels"]
    x = batch["pixels"]
    for i in range(len(x)):  # every output is the input moved by whole pixels, zeros coming in
        candidates = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                moved = torch.zeros_like(x[i])
                moved[..., max(dy, 0): 8 + min(dy, 0), max(dx, 0): 8 + min(dx, 0)] = \
                    x[i][..., max(-dy, 0): 8 + min(-dy, 0), max(-dx, 0): 8 + min(-dx, 0)]
                candidates.append((moved - shifted[i]).abs().max().item())
        assert min(candidates) < 1e-5


def text_batch():
    ids = torch.tensor([[101, 5, 6, 7, 8, 9, 102, 0], [101, 11, 12, 102, 0, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([0, 1])}


class FakeTokenizer:
    pad_token_id, all_special_ids = 0, [0, 101, 102]


def test_text_keeps_shape_labels_and_special_tokens():
    batch = text_batch()
    swapped = Augmenter("swap=1", "text", FakeTokenizer())(batch, seed=0)
    assert swapped["input_ids"].shape == batch["input_ids"].shape
    for i in range(2):  # a swap permutes the body; [CLS] and [SEP] stay at the ends
        n = int(batch["attention_mask"][i].sum())
        row, new = batch["input_ids"][i, :n].tolist(), swapped["input_ids"][i, :n].tolist()
        assert new[0] == 101 and new[-1] == 102 and sorted(new) == sorted(row)
    deleted = Augmenter("delete=0.5", "text", FakeTokenizer())(batch, seed=1)
    assert deleted["input_ids"].shape == batch["input_ids"].shape and torch.equal(deleted["labels"], batch["labels"])
    assert (deleted["attention_mask"].sum(1) <= batch["attention_mask"].sum(1)).all()
    assert (deleted["attention_mask"].sum(1) >= 3).all()  # never empties a text
    again = Augmenter("delete=0.5", "text", FakeTokenizer())(batch, seed=1)
    assert torch.equal(deleted["input_ids"], again["input_ids"])


def test_char_noise_with_a_real_tokenizer():
    from tamer.tasks.vocab import train_tokenizer

    texts = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine"] * 20
    tok = train_tokenizer(texts, "wordpiece", 200)
    enc = tok(texts[:2], padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": torch.tensor([0, 1])}
    out = Augmenter("char=0.3", "text", tok)(batch, seed=4)
    assert out["input_ids"].shape == batch["input_ids"].shape
    assert not torch.equal(out["input_ids"], batch["input_ids"])
    with pytest.raises(ValueError, match="tokenizer"):
        Augmenter("char=0.1", "text", None)


def test_language_models_are_refused():
    class LM:
        name, kind = "causal-lm", "language-model"

    with pytest.raises(ValueError, match="does not apply"):
        augmenter_for("default", LM(), {"input_ids": torch.zeros(1, 4, dtype=torch.long)})


def test_cli_refuses_bad_augment(tmp_path, capsys):
    from tamer.cli import main

    for bad in ("spin=1", "delete=0.1"):
        out = tmp_path / bad
        assert main(["train", "digits", "--epochs", "1", "--augment", bad, "--out", str(out), "--quiet"]) == 2
        assert "--augment" in capsys.readouterr().err and not out.exists()
