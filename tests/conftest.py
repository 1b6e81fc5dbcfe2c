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
