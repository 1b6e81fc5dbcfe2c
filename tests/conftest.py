import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# keys that recipes generate go here, not into the home folder of whoever runs the tests
os.environ["TAMER_KEY_DIR"] = tempfile.mkdtemp(prefix="tamer-test-keys-")
_REGISTRY_DIR = tempfile.mkdtemp(prefix="tamer-test-registry-")
os.environ["TAMER_REGISTRY_URL"] = f"sqlite:///{_REGISTRY_DIR}/registry.db"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SENTIMENT = SHARED / "data" / "sentiment"


@pytest.fixture(scope="session", autouse=True)
def registry_for_the_session():
    """Every verb records what it writes in the registry: during the tests, in a temporary SQLite file, never in
    the repository's .tamer/. Set when this file is imported, so the environments that test modules copy at import
    (for subprocesses: torchrun, the CLI) carry it too; a test that needs its own registry sets it itself."""
    yield os.environ["TAMER_REGISTRY_URL"]
    shutil.rmtree(_REGISTRY_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def sentiment_dir() -> Path:
    if not (SENTIMENT / "yelp_labelled.txt").is_file():
        pytest.skip("../shared/data/sentiment is not here")
    return SENTIMENT


@pytest.fixture(scope="session")
def digits_artifact(tmp_path_factory):
    """One quickly trained digits model shared by the tests that only read it."""
    import tamer

    return tamer.train("digits", epochs=4, out=tmp_path_factory.mktemp("digits") / "a", progress=False)


def _rows(n=120):
    good = ["great food and service", "loved it, will come back", "excellent and friendly staff", "tasty and fresh"]
    bad = ["terrible, cold food", "rude staff and dirty tables", "never again, awful", "slow and bland"]
    return [(good[i % 4] if i % 2 else bad[i % 4], "pos" if i % 2 else "neg") for i in range(n)]


@pytest.fixture(scope="session")
def text_artifact(tmp_path_factory):
    """A tiny BERT on synthetic sentiment lines (no shared data needed), shared by the compression and serving tests."""
    import tamer

    folder = tmp_path_factory.mktemp("text")
    data = folder / "d.tsv"
    data.write_text("".join(f"{t}\t{y}\n" for t, y in _rows()))
    return tamer.train("text-classification", data=str(data), encoder="tiny", epochs=3, lr=3e-3,
                       out=folder / "a", progress=False)


@pytest.fixture(scope="session")
def lm_artifact(tmp_path_factory):
    """A tiny GPT-2 on a repetitive text, shared by the compression and serving tests."""
    import tamer

    folder = tmp_path_factory.mktemp("lm")
    data = folder / "d.txt"
    words = "the cat sat on the mat and the dog ran in the park while birds sang over green trees".split()
    data.write_text("\n".join(" ".join(words[(i + j) % len(words)] for j in range(12)) for i in range(150)))
    return tamer.train("causal-lm", data=str(data), model="tiny", vocab_size=300, block_size=32, epochs=2,
                       out=folder / "a", progress=False)


@pytest.fixture
def llama_folder(tmp_path):
    """make(lines) -> (corpus, folder): a tiny freshly initialised Llama as a Hugging Face folder, with a BPE tokenizer
    fitted on a corpus of `lines` short sentences, for `tamer train causal-lm --model FOLDER`."""
    def make(lines: int):
        import torch
        import transformers as hf

        from tamer.tasks import make_task

        corpus = tmp_path / "corpus.txt"
        corpus.write_text("".join(f"the cat {i % 5} sat on the mat and the dog sat on log {i % 3}.\n" for i in range(lines)))
        task = make_task("causal-lm", {"data": str(corpus), "model": "tiny", "block_size": 32, "vocab_size": 300})
        task.prepare(0)
        folder = tmp_path / "llama"
        task.tokenizer.save_pretrained(folder)
        torch.manual_seed(0)
        hf.LlamaForCausalLM(hf.LlamaConfig(vocab_size=len(task.tokenizer), hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                           max_position_embeddings=64, bos_token_id=task.tokenizer.bos_token_id,
                                           eos_token_id=task.tokenizer.eos_token_id)).save_pretrained(folder)
        return corpus, folder

    return make
