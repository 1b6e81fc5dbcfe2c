"""Registry tests run on SQLite and on PostgreSQL. The PostgreSQL cases need $TAMER_TEST_POSTGRES_URL (`.ci/run`
sets it after starting a local server) and skip when it is unset or the server does not answer; each test gets its
own schema there (search_path), dropped afterwards."""
import uuid

import pytest

from registry_helpers import postgres_base


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh, empty registry database URL: a SQLite file, or a new schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    import sqlalchemy as sa

    base = postgres_base()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def registry(db_url):
    from tamer.maintenance import Registry

    with Registry(db_url) as reg:
        yield reg
