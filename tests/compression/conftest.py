import pytest

import tamer


def _rows(n=120):
    good = ["great food and service", "loved it, will come back", "excellent and friendly staff", "tasty and fresh"]
    bad = ["terrible, cold food", "rude staff and dirty tables", "never again, awful", "slow and bland"]
    return [(good[i % 4] if i % 2 else bad[i % 4], "pos" if i % 2 else "neg") for i in range(n)]


@pytest.fixture(scope="session")
def text_artifact(tmp_path_factory):
    """A tiny BERT on synthetic sentiment lines (no shared data needed)."""
    folder = tmp_path_factory.mktemp("text")
    data = folder / "d.tsv"
    data.write_text("".join(f"{t}\t{y}\n" for t, y in _rows()))
    return tamer.train("text-classification", data=str(data), encoder="tiny", epochs=3, lr=3e-3,
                       out=folder / "a", progress=False)


@pytest.fixture(scope="session")
def lm_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    data = folder / "d.txt"
    words = "the cat sat on the mat and the dog ran in the park while birds sang over green trees".split()
    data.write_text("\n".join(" ".join(words[(i + j) % len(words)] for j in range(12)) for i in range(150)))
    return tamer.train("causal-lm", data=str(data), model="tiny", vocab_size=300, block_size=32, epochs=2,
                       out=folder / "a", progress=False)
