"""The registry's schema carries a version: an empty database is built to the newest revision, a version-1
registry is migrated with its data kept, a revision this tamer does not know is refused in one sentence."""
import pytest
import sqlalchemy as sa

from registry_helpers import fake_manifest
from tamer.maintenance import Registry, RegistryUnavailable
from tamer.maintenance.database import make_engine, revision, script_head, upgrade
from tamer.maintenance.schema import HEAD, metadata


def test_head_is_the_newest_shipped_migration():
    assert script_head() == HEAD


def test_an_empty_database_is_built_to_the_newest_revision(db_url):
    Registry(db_url).close()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert revision(conn) == HEAD
        tables = set(sa.inspect(conn).get_table_names())
        columns = {t: {c["name"] for c in sa.inspect(conn).get_columns(t)} for t in metadata.tables}
    assert set(metadata.tables) | {"alembic_version"} == tables
    assert all(columns[t] == {c.name for c in table.columns} for t, table in metadata.tables.items())
    Registry(db_url).close()  # opening it again changes nothing
    engine.dispose()


def test_a_version_1_registry_is_migrated_with_its_data_kept(db_url, tmp_path):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        assert revision(conn) == "0001"
        assert "who" not in {c["name"] for c in sa.inspect(conn).get_columns("events")}
        assert not sa.inspect(conn).has_table("tags")
        conn.execute(sa.text("INSERT INTO artifacts (id, task, format, verb, metrics, path, created_at, registered_at) "
                             "VALUES (:id, 'digits', 'fp32', 'train', :m, :p, 'c', '2025-01-01T00:00:00+00:00')"),
                     [{"id": "0ld00001", "m": '{"accuracy": 0.9}', "p": str(tmp_path / "a")},
                      {"id": "0ld00002", "m": '{"accuracy": 0.95}', "p": str(tmp_path / "b")}])
        conn.execute(sa.text("INSERT INTO parents (child_id, parent_id, position) VALUES ('0ld00002', '0ld00001', 0)"))
        conn.execute(sa.text("INSERT INTO aliases (name, artifact_id, updated_at) VALUES ('production', '0ld00002', 'x')"))
        conn.execute(sa.text("INSERT INTO events (at, action, alias, artifact_id, from_id, to_id, reason) VALUES "
                             "('2025-01-01', 'promote', 'production', '0ld00001', NULL, '0ld00001', 'v1 era'), "
                             "('2025-01-02', 'promote', 'production', '0ld00002', '0ld00001', '0ld00002', NULL)"))
    engine.dispose()

    with Registry(db_url) as reg:
        assert reg.show("production")["id"] == "0ld00002"
        assert reg.show("0ld00002")["parents"] == ["0ld00001"] and reg.show("0ld00001")["metrics"] == {"accuracy": 0.9}
        assert reg.show("0ld00001")["locations"] == [{"uri": str(tmp_path / "a"), "sealed": False}]
        moves = reg.history("production")
        assert [(e["to_id"], e["who"], e["reason"]) for e in moves] == [("0ld00001", "unknown", "v1 era"),
                                                                        ("0ld00002", "unknown", None)]
        reg.tag("0ld00002", "migrated", "yes")  # what version 2 added works on the old data
        assert reg.rollback("production")["to_id"] == "0ld00001"  # the v1 moves are the rollback stack
        reg.register(fake_manifest("new00003", ["0ld00002"]), str(tmp_path / "c"))
        assert reg.lineage("0ld00001")["edges"] == [("0ld00001", "0ld00002"), ("0ld00002", "new00003")]
    with make_engine(db_url).connect() as conn:
        assert revision(conn) == HEAD


def test_a_revision_from_a_newer_tamer_is_refused(db_url):
    Registry(db_url).close()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(RegistryUnavailable, match="schema revision '0099', which this tamer does not know"):
        Registry(db_url)
