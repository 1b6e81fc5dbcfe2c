"""The tokenizers tamer trains itself (the tiny encoder's WordPiece, the causal-lm presets' byte-level BPE): the same
text gives byte-identical files in every process, the vocabulary follows the merge rule worked out by hand, covers
every character it saw and holds vocab_size; so the same data and seed give the same artifact id."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tamer
from tamer.tasks.vocab import train_tokenizer
from tamer.tasks.wordpiece import wordpiece_vocab

SRC = str(Path(__file__).resolve().parents[2] / "src")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _corpus(n=400):
    """Short made-up words over few letters, Zipf-like counts: many pairs tie, which is where hash order showed."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdeéfgh") for _ in range(rng.randint(1, 7))) for _ in range(300)]
    return [" ".join(rng.choices(words, weights=[1 / (i + 1) for i in range(300)], k=8)) + rng.choice(".!?") for _ in range(n)]


def _run(env_extra, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **env_extra}
    env.pop("RAYON_NUM_THREADS", None)  # the default thread pool: determinism must not need one thread
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_tokenizers_and_the_tiny_encoder_are_byte_identical_across_processes_and_hash_seeds(tmp_path, sentiment_dir):
    """Two processes with different PYTHONHASHSEED (and the default thread pool) train the tokenizers on text with
    many ties, and the tiny encoder on yelp with one seed: the same files, artifact id and accuracy."""
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(_corpus()))
    code = ("import json, tamer\nfrom tamer.tasks.vocab import train_tokenizer\n"
            f"texts = json.load(open({str(texts)!r}))\n"
            "for kind, size in (('wordpiece', 400), ('wordpiece', 100000), ('bpe', 400)):\n"
            "    train_tokenizer(texts, kind, size).save_pretrained(f'tokenizers/{kind}-{size}')\n"
            f"a = tamer.train('text-classification', data={str(sentiment_dir / 'yelp_labelled.txt')!r}, encoder='tiny',"
            " epochs=2, seed=3, out='out', progress=False)\n"
            "print(json.dumps({'id': a.id, 'accuracy': a.metrics['test']['accuracy'],"
            " 'vocab': a.manifest['model_config']['encoder']['vocab_size']}))\n")
    runs = []
    for seed in ("1", "2"):
        (tmp_path / seed).mkdir()
        env = {"PYTHONHASHSEED": seed, "TAMER_REGISTRY_URL": f"sqlite:///{tmp_path}/registry-{seed}.db"}
        runs.append(json.loads(_run(env, code, tmp_path / seed).splitlines()[-1]))
    assert runs[0] == runs[1]
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*")
                   if p.is_file() and p.name != "manifest.json")  # the manifest also says when: the id covers the rest
    assert {f.parts[0] for f in files} == {"tokenizers", "out"} and len({f.parent for f in files if f.name == "tokenizer.json"}) == 4
    for f in files:
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "2" / f).read_bytes(), f


def test_the_merges_follow_counts_then_ids_as_worked_out_by_hand():
    # ab x3, abc x1, bc x2: pairs (a,##b)=4, (b,##c)=2, (##b,##c)=1. Merge ab; then (b,##c)=2 beats (ab,##c)=1
    # (the (##b,##c) of abc is gone with the merge); then abc; then no pair is left.
    alphabet = ["a", "b", "c", "##a", "##b", "##c"]
    full = wordpiece_vocab({"ab": 3, "abc": 1, "bc": 2}, 100, SPECIAL)
    assert full == SPECIAL + alphabet + ["ab", "bc", "abc"]
    assert wordpiece_vocab({"ab": 3, "abc": 1, "bc": 2}, len(SPECIAL) + 7, SPECIAL) == SPECIAL + alphabet + ["ab"]
    # zxy x2, zyx x2: all four pairs tie at 2 and go by ids (x < y < z < ##x < ##y < ##z < merged pieces):
    # (z,##x) -> zx; then (z,##y) -> zy beats (zx,##y) and (##y,##x); then zx + ##y, zy + ##x
    tied = wordpiece_vocab({"zxy": 2, "zyx": 2}, 100, SPECIAL)
    assert tied == SPECIAL + ["x", "y", "z", "##x", "##y", "##z"] + ["zx", "zy", "zxy", "zyx"]
    # a full alphabet does not fit: the most frequent characters keep theirs (both forms), nothing past vocab_size
    assert wordpiece_vocab({"aab": 5, "c": 1}, len(SPECIAL) + 4, SPECIAL) == SPECIAL + ["a", "b", "##a", "##b"]
    # a character the pre-tokenizer always splits off (punctuation, CJK) takes one place, not two
    assert wordpiece_vocab({"ab": 1, "!": 3}, 100, [], alone={"!"}) == ["!", "a", "b", "##a", "##b", "ab"]
    assert wordpiece_vocab({"ab": 1, "!": 3}, 3, [], alone={"!"}) == ["!", "a", "##a"]


words = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(words, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=20),
       extra=st.integers(0, 300), short=st.booleans())
def test_the_vocabulary_covers_every_character_it_saw_and_holds_vocab_size(texts, extra, short):
    probe = train_tokenizer(texts, "wordpiece", 100_000).backend_tokenizer
    seen = [w for t in texts for w, _ in probe.pre_tokenizer.pre_tokenize_str(probe.normalizer.normalize_str(t))]
    room = len(SPECIAL) + 2 * len({ch for w in seen for ch in w})
    size = max(len(SPECIAL), room - 1 - extra) if short else room + extra
    tok = train_tokenizer(texts, "wordpiece", size)
    assert len(tok) <= size
    if size >= room:  # every character fits: no text made of them reads [UNK], also with each word reversed
        for text in texts + [" ".join(w[::-1] for w in seen)]:
            assert tok.unk_token_id not in tok(text)["input_ids"], (text, tok.tokenize(text))


def test_a_vocab_size_too_small_for_the_special_tokens_is_refused_in_one_sentence(tmp_path):
    from tamer.errors import UsageError

    data = tmp_path / "d.tsv"
    data.write_text("good\t1\nbad\t0\n" * 10)
    with pytest.raises(UsageError, match=r"--vocab-size 4 is out of range; use 300\.\.200000\."):
        tamer.train("text-classification", data=str(data), encoder="tiny", vocab_size=4, out=tmp_path / "a", progress=False)
