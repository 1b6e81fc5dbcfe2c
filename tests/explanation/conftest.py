import random

import pytest

import tamer

POSITIVE = ["good", "great", "lovely", "excellent", "tasty", "friendly"]
NEGATIVE = ["bad", "awful", "rude", "cold", "terrible", "slow"]
FILLER = ["the", "food", "was", "really", "and", "service", "place", "our", "meal", "very"]


def sentiment_lines(n: int, seed: int = 0) -> list[str]:
    """Synthetic reviews whose label is decided by one sentiment word: a model must look at that word."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(6), rng.choice(POSITIVE if label else NEGATIVE))
        lines.append(f"{' '.join(words)}\t{label}")
    return lines


@pytest.fixture(scope="session")
def explain_digits(tmp_path_factory):
    return tamer.train("digits", epochs=5, seed=0, out=tmp_path_factory.mktemp("digits") / "a", progress=False)


@pytest.fixture(scope="session")
def text_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    data = folder / "reviews.tsv"
    data.write_text("text\tlabel\n" + "\n".join(sentiment_lines(400)) + "\n")
    return tamer.train("text-classification", data=str(data), encoder="tiny", epochs=3, seed=0, out=folder / "a", progress=False)


@pytest.fixture(scope="session")
def lm_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    data = folder / "corpus.txt"
    data.write_text("\n".join(line.split("\t")[0] for line in sentiment_lines(200)) + "\n")
    return tamer.train("causal-lm", data=str(data), model="tiny", epochs=1, seed=0, out=folder / "a", progress=False)
