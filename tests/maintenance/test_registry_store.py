"""The registry's records: round trips, idempotent registration, aliases, the event log's order, rollback as a
stack, tags, copies and resolve, lineage; on SQLite and PostgreSQL."""
import pytest
import sqlalchemy as sa

from registry_helpers import fake_manifest
from tamer.errors import UsageError


def test_an_artifact_round_trips_and_registering_it_again_adds_nothing(registry, tmp_path):
    m = fake_manifest("a1b2c3d4e5f60708")
    assert registry.register(m, str(tmp_path)) is True
    assert registry.register(m, str(tmp_path)) is False
    row = registry.show("a1b2c3d4e5f60708")
    assert (row["task"], row["format"], row["verb"], row["path"]) == ("digits", "fp32", "train", str(tmp_path))
    assert row["metrics"] == {"accuracy": 0.9}  # scalars only; the confusion matrix stays in the manifest
    assert row["parents"] == [] and row["locations"] == [{"uri": str(tmp_path), "sealed": False}]
    assert [a["id"] for a in registry.list_artifacts()] == ["a1b2c3d4e5f60708"]
    assert [e["action"] for e in registry.history()] == ["register"]
    assert registry.show("a1b2c3").get("id") == "a1b2c3d4e5f60708"  # a unique prefix


def test_parents_children_and_lineage(registry, tmp_path):
    registry.register(fake_manifest("1111aaaa"), str(tmp_path))
    registry.register(fake_manifest("2222bbbb", ["1111aaaa"], verb="compress"), str(tmp_path / "q"))
    registry.register(fake_manifest("3333cccc", ["2222bbbb"], verb="compress"), str(tmp_path / "p"))
    registry.register(fake_manifest("4444dddd", ["1111aaaa", "9999ffff"], verb="harden"), str(tmp_path / "h"))
    registry.promote("3333cccc", "production")
    assert registry.show("2222bbbb")["parents"] == ["1111aaaa"]
    assert registry.show("1111aaaa")["children"] == ["2222bbbb", "4444dddd"]
    family = registry.lineage("2222bbbb")
    assert {n["id"] for n in family["nodes"]} == {"1111aaaa", "2222bbbb", "3333cccc"}  # its line, not its siblings
    assert set(family["edges"]) == {("1111aaaa", "2222bbbb"), ("2222bbbb", "3333cccc")}
    assert family["aliases"] == {"production": "3333cccc"} and [e["to_id"] for e in family["moves"]] == ["3333cccc"]
    whole = registry.lineage("4444dddd")
    assert {"id": "9999ffff", "registered": False} in whole["nodes"]  # a parent made elsewhere


def test_aliases_history_order_and_rollback_as_a_stack(registry, tmp_path):
    for aid in ("aaaa0001", "aaaa0002", "aaaa0003"):
        registry.register(fake_manifest(aid), str(tmp_path))
    registry.promote("aaaa0001", "production", reason="first")
    registry.promote("aaaa0002", "production", reason="better")
    registry.promote("aaaa0003", "production")
    registry.promote("aaaa0001", "staging")
    assert registry.promote("aaaa0003", "production")["changed"] is False  # already there: no event
    assert registry.list_aliases() == {"production": "aaaa0003", "staging": "aaaa0001"}
    assert registry.show("production")["id"] == "aaaa0003"
    moves = registry.history("production")
    assert [(e["from_id"], e["to_id"], e["reason"]) for e in moves] == [
        (None, "aaaa0001", "first"), ("aaaa0001", "aaaa0002", "better"), ("aaaa0002", "aaaa0003", None)]
    assert [e["seq"] for e in registry.history()] == sorted(e["seq"] for e in registry.history())
    assert all(e["who"] for e in registry.history())
    back = registry.rollback("production", reason="regression")
    assert (back["from_id"], back["to_id"]) == ("aaaa0003", "aaaa0002")
    assert registry.rollback("production")["to_id"] == "aaaa0001"  # twice: two steps back
    with pytest.raises(UsageError, match="no earlier artifact to roll back to"):
        registry.rollback("production")
    assert registry.list_aliases()["production"] == "aaaa0001"  # a refused rollback moves nothing
    registry.promote("aaaa0003", "production")
    assert registry.rollback("production")["to_id"] == "aaaa0001"  # rolled-back steps stay popped
    assert registry.list_aliases()["staging"] == "aaaa0001"


@pytest.mark.parametrize("call, words", [
    (lambda r: r.show("nope"), "no artifact or alias named 'nope'"),
    (lambda r: r.promote("nope", "production"), "no artifact or alias named 'nope'"),
    (lambda r: r.promote("aaaa0001", "bad alias!"), "alias 'bad alias!' is not accepted"),
    (lambda r: r.rollback("production"), "alias 'production' is unknown"),
    (lambda r: r.history("production"), "alias 'production' is unknown"),
    (lambda r: r.tag("aaaa0001", "bad key", "x"), "tag key 'bad key' is not accepted"),
])
def test_bad_input_is_one_sentence(registry, tmp_path, call, words):
    registry.register(fake_manifest("aaaa0001"), str(tmp_path))
    with pytest.raises(UsageError, match=words) as info:
        call(registry)
    assert "\n" not in str(info.value)


def test_tags_copies_and_resolve(registry, tmp_path):
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    plain.mkdir(), sealed.mkdir()
    registry.register(fake_manifest("bbbb0001"), str(plain))
    registry.register(fake_manifest("bbbb0001"), str(sealed), sealed=True)
    registry.tag("bbbb0001", "owner", "alice")
    registry.tag("bbbb0001", "owner", "bob")  # replaced, both logged
    row = registry.show("bbbb0001")
    assert row["tags"] == {"owner": "bob"} and len(row["locations"]) == 2
    assert [e["action"] for e in registry.history()] == ["register", "seal", "tag", "tag"]
    registry.promote("bbbb0001", "production")
    assert registry.resolve("production") == {"id": "bbbb0001", "path": str(plain), "sealed": False}
    plain.rmdir()
    assert registry.resolve("production")["path"] == str(sealed)  # the plaintext is gone: the sealed copy
    sealed.rmdir()
    with pytest.raises(UsageError, match="no longer exists"):
        registry.resolve("bbbb0001")


def test_the_event_log_is_append_only_in_the_database(registry, tmp_path):
    registry.register(fake_manifest("cccc0001"), str(tmp_path))
    for statement in ("UPDATE events SET reason = 'x'", "DELETE FROM events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with registry.engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert len(registry.history()) == 1
