"""text-classification (tiny BERT from a config) and causal-lm (tiny GPT-2) on real and synthetic text."""
import json
import math

import pytest

import tamer
from tamer.errors import DataError, UsageError


def test_tiny_bert_learns_sentiment(tmp_path, sentiment_dir):
    art = tamer.train("text-classification", data=str(sentiment_dir / "yelp_labelled.txt"), encoder="tiny",
                      epochs=8, out=tmp_path / "a", progress=False)
    assert art.metrics["test"]["accuracy"] >= 0.65  # chance is 0.5 on these balanced sentences
    assert (art.path / "tokenizer").is_dir()
    other = tamer.evaluate(art, data=str(sentiment_dir / "amazon_cells_labelled.txt"))
    assert other.metrics["examples"] == 1000 and 0 <= other.metrics["accuracy"] <= 1
    again = tamer.evaluate(tamer.load(art.path))
    assert again.metrics["accuracy"] == pytest.approx(art.metrics["test"]["accuracy"])


def _rows(n=60):
    good = ["great food and service", "loved it, will come back", "excellent and friendly staff"]
    bad = ["terrible, cold food", "rude staff and dirty tables", "never again, awful"]
    return [(good[i % 3] if i % 2 else bad[i % 3], "pos" if i % 2 else "neg") for i in range(n)]


def test_csv_and_jsonl_with_string_labels(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("review,sentiment\n" + "".join(f'"{t}",{y}\n' for t, y in _rows()))
    art = tamer.train("text-classification", data=str(csv_file), encoder="tiny", text_column="review",
                      label_column="sentiment", epochs=6, lr=3e-3, out=tmp_path / "a", progress=False)
    assert art.manifest["model_config"]["labels"] == ["neg", "pos"]
    assert art.metrics["test"]["accuracy"] == 1.0
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"review": t, "sentiment": y}) + "\n" for t, y in _rows(20)))
    report = tamer.evaluate(art, data=str(jsonl))
    assert report.metrics["accuracy"] == 1.0


def test_unknown_label_at_evaluation_is_refused(tmp_path, sentiment_dir):
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{t}\t{y}\n" for t, y in _rows()))
    art = tamer.train("text-classification", data=str(data), encoder="tiny", epochs=1, out=tmp_path / "a", progress=False)
    other = tmp_path / "o.tsv"
    other.write_text("fine\tneutral\n")
    with pytest.raises(UsageError, match="label 'neutral'"):
        tamer.evaluate(art, data=str(other))


def test_bad_text_files(tmp_path):
    no_tab = tmp_path / "a.tsv"
    no_tab.write_text("just text\n")
    with pytest.raises(DataError, match="no TAB"):
        tamer.train("text-classification", data=str(no_tab), encoder="tiny", out=tmp_path / "o", progress=False)
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text("{not json}\n")
    with pytest.raises(DataError, match="not valid JSON"):
        tamer.train("text-classification", data=str(bad_json), encoder="tiny", out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_tiny_causal_lm_beats_uniform_and_untrained(tmp_path, sentiment_dir):
    lines = (sentiment_dir / "yelp_labelled.txt").read_text().splitlines()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(l.split("\t")[0] for l in lines))
    one = tamer.train("causal-lm", data=str(corpus), model="tiny", epochs=1, vocab_size=500, block_size=64,
                      out=tmp_path / "one", progress=False)
    more = tamer.train("causal-lm", data=str(corpus), model="tiny", epochs=6, vocab_size=500, block_size=64,
                       out=tmp_path / "more", progress=False)
    vocab = more.manifest["model_config"]["decoder"]["vocab_size"]
    ppl = more.metrics["test"]["perplexity"]
    assert ppl < one.metrics["test"]["perplexity"] < vocab  # better than uniform over the vocabulary
    assert math.isclose(math.log(ppl), more.metrics["test"]["loss"], rel_tol=1e-6)
    again = tamer.evaluate(more)
    assert again.metrics["perplexity"] == pytest.approx(ppl, rel=1e-5)
