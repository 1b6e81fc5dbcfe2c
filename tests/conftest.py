import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# keys that recipes generate go here, not into the home folder of whoever runs the tests
os.environ["TAMER_KEY_DIR"] = tempfile.mkdtemp(prefix="tamer-test-keys-")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SENTIMENT = SHARED / "data" / "sentiment"


@pytest.fixture(scope="session", autouse=True)
def registry_for_the_session(tmp_path_factory):
    """Every verb records what it writes in the registry: during the tests, in a temporary SQLite file, never in
    the repository's .tamer/ (a test that needs its own registry sets TAMER_REGISTRY_URL itself)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
    before = os.environ.get("TAMER_REGISTRY_URL")
    os.environ["TAMER_REGISTRY_URL"] = url
    yield url
    if before is None:
        os.environ.pop("TAMER_REGISTRY_URL", None)
    else:
        os.environ["TAMER_REGISTRY_URL"] = before


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
