"""Text edits: within the budget, valid UTF-8, deterministic per seed, and chosen by the loss."""
import random

import torch

from tamer.robustness.text import candidates, greedy_attack, random_edits

SENTENCES = ["the food was great and the service friendly", "terrible place , never again", "ok", "a b",
             "Wow... Loved this place.", "Crust is not good.", "Не туда", "emoji 😀 fine"]


def _word_distance(a: str, b: str) -> int:
    import difflib

    sm = difflib.SequenceMatcher(a=a.split(), b=b.split(), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal")


def test_every_candidate_is_one_valid_edit_away():
    rng = random.Random(0)
    for text in SENTENCES:
        for kind in ("char", "word"):
            for e in candidates(text, kind, 50, rng):
                assert e.text != text and e.text.encode("utf-8").decode("utf-8") == e.text
                assert _word_distance(text, e.text) <= 2  # one char edit touches one word; a word swap two


def test_greedy_attack_stays_within_the_budget_and_is_deterministic():
    # a stand-in model: the loss grows with the number of non-ASCII characters and with the length change
    def scores(texts, labels):
        loss = torch.tensor([sum(ord(c) > 127 for c in t) + abs(len(t) - 40) / 100 for t in texts], dtype=torch.float)
        return loss, torch.ones(len(texts), dtype=torch.bool)  # never flips: every round is used

    labels = [0] * len(SENTENCES)
    for kind in ("char", "word"):
        for budget in (1, 2, 3):
            found = greedy_attack(SENTENCES, labels, scores, kind, budget, 16, seed=7)
            assert found == greedy_attack(SENTENCES, labels, scores, kind, budget, 16, seed=7)
            for (text, edits), original in zip(found, SENTENCES):
                assert len(edits) <= budget
                assert text.encode("utf-8").decode("utf-8") == text
                assert _word_distance(original, text) <= 2 * budget
    chars = greedy_attack(["aaaa eeee oooo"], [0], scores, "char", 2, 64, seed=0)[0]
    assert [e.op for e in chars[1]] == ["homoglyph", "homoglyph"]  # the loss picked the edits it rewards


def test_the_attack_stops_once_the_prediction_flips():
    calls = []

    def scores(texts, labels):
        calls.append(len(texts))
        return torch.rand(len(texts)), torch.zeros(len(texts), dtype=torch.bool)

    text, edits = greedy_attack(["one two three four"], [1], scores, "word", 3, 8, seed=0)[0]
    assert len(edits) == 1 and len(calls) == 1


def test_random_edits_are_seeded():
    a = random_edits("the quick brown fox", "char", 3, random.Random(4))
    assert a == random_edits("the quick brown fox", "char", 3, random.Random(4)) and a != "the quick brown fox"


def test_chunked_scoring_chooses_as_the_exhaustive_search_and_stops_at_the_first_flip():
    from tamer.robustness import text as text_attacks

    rng = random.Random(3)
    options = text_attacks.candidates("the food was great and the service friendly", "char", 40, rng)
    loss = torch.rand(len(options), generator=torch.Generator().manual_seed(0))
    calls = []

    def scores_with(flips):
        def scores(texts, labels):
            idx = [next(i for i, e in enumerate(options) if e.text == t) for t in texts]
            calls.append(len(texts))
            return loss[idx], torch.tensor([i not in flips for i in idx])
        return scores

    edit, flipped = text_attacks.best_edit(options, 0, scores_with(set()))  # no flip: every candidate scored
    assert edit is options[int(loss.argmax())] and not flipped and sum(calls) == len(options)
    calls.clear()
    late = {len(options) - 1}
    edit, flipped = text_attacks.best_edit(options, 0, scores_with(late))
    assert edit is options[-1] and flipped and sum(calls) == len(options)
    calls.clear()
    early = {1, 5}  # both in the first chunk: the flip of higher loss, and no later chunk scored
    edit, flipped = text_attacks.best_edit(options, 0, scores_with(early))
    assert flipped and edit is options[max(early, key=lambda i: float(loss[i]))]
    assert calls == [text_attacks.SCORED_AT_ONCE]
