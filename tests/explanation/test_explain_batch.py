"""Batch mode and word merging: batches of texts give the same attributions as one text at a time, padding stays
small, and the tokens of a word add up to the word's attribution (checked against Captum called directly)."""
import numpy as np
import pytest
import torch

from tamer.explanation.config import ExplainConfig
from tamer.explanation.explainer import attribute_items, batches, resolve_targets
from tamer.explanation.subjects import PADDING_SLACK, Item, TextSubject, make_subject

TEXTS = ["great food", "the meal was cold and the service was slow tonight", "our food was really lovely",
         "friendly place", "the service was rude", "very tasty meal and our place was really very good indeed",
         "bad", "the food was unbelievably terrible"]


def test_batches_cover_every_text_once_sorted_and_with_little_padding():
    class Text:
        kind = "text"

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=500)
    items = [Item(str(i), ids=[0] * int(n)) for i, n in enumerate(lengths)]
    chunks = batches(Text(), items, 32)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(500))
    for c in chunks:
        assert 1 <= len(c) <= 32
        if len(c) > 1:
            assert lengths[c].max() * len(c) <= PADDING_SLACK * lengths[c].sum()
    assert np.mean([len(c) for c in chunks]) > 8  # 500 texts of 37 lengths: most batches are full
    images = batches(type("I", (), {"kind": "image"})(), items[:70], 32)
    assert [len(c) for c in images] == [32, 32, 6]


@pytest.mark.parametrize("method", ["ig", "gradxinput", "occlusion"])
def test_batched_text_attributions_equal_one_at_a_time(text_artifact, method):
    task, model = text_artifact.load_model()
    subject = make_subject(task, model)
    items = subject.make_items(TEXTS, [str(i) for i in range(len(TEXTS))])
    config = ExplainConfig(input_file="x", method=method)
    targets = resolve_targets(subject, items, config)[0]
    together, info = attribute_items(subject, items, targets, ExplainConfig(input_file="x", method=method, batch_size=8), "pad")
    alone, info1 = attribute_items(subject, items, targets, ExplainConfig(input_file="x", method=method, batch_size=1), "pad")
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    if method == "ig":
        assert all(i["completeness_error"] <= 1e-3 for i in info)


def test_batched_next_token_attributions_equal_one_at_a_time(lm_artifact):
    task, model = lm_artifact.load_model()
    subject = make_subject(task, model)
    items = subject.make_items(TEXTS[:5], [str(i) for i in range(5)])
    targets = resolve_targets(subject, items, ExplainConfig(input_file="x"))[0]
    together, _ = attribute_items(subject, items, targets, ExplainConfig(input_file="x", batch_size=5), "pad")
    alone, _ = attribute_items(subject, items, targets, ExplainConfig(input_file="x", batch_size=1), "pad")
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_tokens_of_a_word_add_up_to_the_word(text_artifact):
    from captum.attr import LayerIntegratedGradients

    task, model = text_artifact.load_model()
    subject = make_subject(task, model)
    assert isinstance(subject, TextSubject)
    item = subject.make_items(["the food was unbelievably terrible"], ["x"])[0]
    assert item.words == ["the", "food", "was", "unbelievably", "terrible"]
    assert item.word_ids.count(3) > 1  # the tiny vocabulary splits "unbelievably" into pieces
    target = torch.tensor([0])
    words, a = subject.attribute([item], target, ExplainConfig(input="x"), "pad")
    # the reference: Captum's layer IG on the word embeddings, tokens summed by hand
    ids, (mask,) = subject.batch([item])
    base = torch.where(torch.tensor([w is not None for w in item.word_ids]), torch.full_like(ids, subject.pad_id), ids)
    tokens = LayerIntegratedGradients(subject.forward, subject.layer).attribute(
        ids, baselines=base, target=target, additional_forward_args=(mask,), n_steps=a.steps[0]).sum(-1)[0]
    expected = [sum(float(tokens[t]) for t, w in enumerate(item.word_ids) if w == k) for k in range(5)]
    assert words[0] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    with torch.no_grad():
        change = float(subject.forward(ids, mask)[0, 0] - subject.forward(base, mask)[0, 0])
    assert sum(words[0]) == pytest.approx(change, rel=1e-3, abs=1e-6)


def test_merge_sums_tokens_or_keeps_a_groups_value():
    item = Item("x", ids=[1, 2, 3, 4, 5], word_ids=[None, 0, 0, 1, None], words=["ab", "c"])
    values = torch.tensor([9.0, 1.0, 2.0, 4.0, 9.0])
    assert TextSubject._merge(item, values, grouped=False) == [3.0, 4.0]
    assert TextSubject._merge(item, torch.tensor([9.0, 5.0, 5.0, 4.0, 9.0]), grouped=True) == [5.0, 4.0]
