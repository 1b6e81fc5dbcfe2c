import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# keys that recipes generate go here, not into the home folder of whoever runs the tests
os.environ["TAMER_KEY_DIR"] = tempfile.mkdtemp(prefix="tamer-test-keys-")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SENTIMENT = SHARED / "data" / "sentiment"


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
