"""Helpers of the registry tests: the PostgreSQL server to test against, and artifact manifests without training."""
import os

import pytest

POSTGRES_ENV = "TAMER_TEST_POSTGRES_URL"


def postgres_base() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (`.ci/run` starts a PostgreSQL server and sets it)")
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: no server here
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} does not answer ({type(exc).__name__})")
    return url


def fake_manifest(aid: str, parents=(), verb: str = "train", task: str = "digits", accuracy: float = 0.9) -> dict:
    """The fields of an artifact manifest the registry reads, without training anything."""
    return {"id": aid, "task": {"name": task}, "format": "fp32", "verb": verb, "parents": list(parents),
            "metrics": {"test": {"accuracy": accuracy, "confusion_matrix": [[1, 0], [0, 1]]}},
            "created_at": "2026-01-01T00:00:00+00:00"}
