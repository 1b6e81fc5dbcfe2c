"""The registry: every artifact a verb wrote (id, task, format, metrics, parents, where it lies), aliases
(`production`, `staging`, any name) and an append-only event log (when, who, what, from -> to, why), on SQLite by
default or PostgreSQL by URL (database.py). Each write is one transaction: registering twice changes nothing,
and a promotion moves its alias and appends its event together or not at all."""
from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import os
import re
from typing import Any, Iterator, Mapping

import sqlalchemy as sa

from ..errors import UsageError
from .database import ENV, RegistryUnavailable, make_engine, shown, upgrade, write_lock, writer
from .schema import aliases, artifacts, events, locations, parents, tags

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_MOVES = ("promote", "rollback")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def who() -> str:
    """Who an event is recorded for: $TAMER_USER, else the login name (else the uid)."""
    try:
        return os.environ.get("TAMER_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The test metrics worth a catalogue column: numbers and short strings (no confusion matrices)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


class Registry:
    """One registry database. `Registry()` opens $TAMER_REGISTRY_URL or .tamer/registry.db under the working
    directory, migrating its schema to the newest revision first."""

    def __init__(self, url: str | None = None):
        self.engine = make_engine(url)
        self._writer = writer(self.engine)
        self.url = shown(self.engine.url)
        with self._errors():
            upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures (unreachable server, unwritable file, lock timeout) as one sentence."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DatabaseError) as exc:
            if isinstance(exc, sa.exc.IntegrityError):
                raise
            reason = str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()[0].strip()
            raise RegistryUnavailable(f"the registry at {self.url} cannot be reached or written ({reason}); "
                                      f"check {ENV}.") from None

    @contextlib.contextmanager
    def _write(self, lock: str | None = None) -> Iterator[sa.Connection]:
        """One write transaction; `lock` names an alias whose moves are serialised (SQLite's BEGIN IMMEDIATE
        already serialises every writer; PostgreSQL takes a transaction-scoped advisory lock on the name)."""
        with self._errors(), write_lock(self.engine), self._writer.begin() as conn:
            if lock is not None and conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tamer-alias:{lock}"})
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn:
            yield conn

    def _insert(self, conn: sa.Connection, table: sa.Table):
        """INSERT ... ON CONFLICT for this dialect."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _event(self, conn: sa.Connection, action: str, *, alias: str | None = None, artifact_id: str | None = None,
               from_id: str | None = None, to_id: str | None = None, reason: str | None = None,
               by: str | None = None) -> dict[str, Any]:
        row = {"at": now(), "who": by or who(), "action": action, "alias": alias, "artifact_id": artifact_id,
               "from_id": from_id, "to_id": to_id, "reason": reason}
        seq = conn.execute(events.insert().values(**row)).inserted_primary_key[0]
        return {"seq": seq, **row}

    # -- writing -----------------------------------------------------------------------------------------------
    def register(self, manifest: Mapping[str, Any], location: str, sealed: bool = False, by: str | None = None) -> bool:
        """Record an artifact (its manifest) found at `location` (a path or URI); True when it was new. The same
        artifact again adds nothing but a new location (a sealed copy is recorded as one, with a `seal` event)."""
        aid = str(manifest["id"])
        row = {"id": aid, "task": str(manifest["task"]["name"]), "format": str(manifest.get("format", "fp32")),
               "verb": str(manifest.get("verb", "?")), "metrics": _scalars(manifest.get("metrics", {}).get("test", {})),
               "path": str(location), "created_at": manifest.get("created_at"), "registered_at": now()}
        with self._write() as conn:
            new = conn.execute(self._insert(conn, artifacts).values(**row).on_conflict_do_nothing()
                               .returning(artifacts.c.id)).first() is not None
            if new:
                rows = [{"child_id": aid, "parent_id": str(p), "position": i}
                        for i, p in enumerate(manifest.get("parents", []))]
                if rows:
                    conn.execute(self._insert(conn, parents).values(rows).on_conflict_do_nothing())
                self._event(conn, "register", artifact_id=aid, to_id=aid, by=by, reason=f"written by "
                            f"{row['verb']} at {location}")
            placed = conn.execute(self._insert(conn, locations).values(
                artifact_id=aid, uri=str(location), sealed=bool(sealed), added_at=row["registered_at"])
                .on_conflict_do_nothing().returning(locations.c.uri)).first() is not None
            if placed and not new:
                self._event(conn, "seal" if sealed else "copy", artifact_id=aid, to_id=aid, by=by,
                            reason=f"{'sealed ' if sealed else ''}copy at {location}")
        return new

    def _check_alias(self, alias: str) -> str:
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise UsageError(f"alias {alias!r} is not accepted; an alias starts with a letter and holds letters, "
                             f"digits, '_', '.' or '-' (at most 100), like production or staging.")
        return alias

    def promote(self, name: str, alias: str, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Point `alias` at the artifact `name` (an id, a unique id prefix or another alias), appending a `promote`
        event in the same transaction. Promoting the artifact the alias already names changes nothing."""
        self._check_alias(alias)
        with self._write(lock=alias) as conn:
            target = self._find(conn, name)["id"]
            current = conn.execute(sa.select(aliases.c.artifact_id).where(aliases.c.name == alias)).scalar()
            if current == target:
                return {"changed": False, "alias": alias, "from_id": current, "to_id": target}
            stamp = now()
            conn.execute(self._insert(conn, aliases).values(name=alias, artifact_id=target, updated_at=stamp)
                         .on_conflict_do_update(index_elements=["name"], set_={"artifact_id": target, "updated_at": stamp}))
            return {"changed": True, **self._event(conn, "promote", alias=alias, artifact_id=target, from_id=current,
                                                   to_id=target, reason=reason, by=by)}

    def rollback(self, alias: str, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Point `alias` back at the artifact it named before its latest promotion still standing. The moves form a
        stack (a promotion pushes, a rollback pops), so a second rollback goes back one step further; once one
        artifact is left, rollback is refused."""
        self._check_alias(alias)
        with self._write(lock=alias) as conn:
            stack = self._stack(conn, alias)
            if not stack:
                raise UsageError(f"alias {alias!r} is unknown to the registry at {self.url}; nothing to roll back "
                                 f"(`tamer registry history` lists the aliases' moves).")
            if len(stack) < 2:
                raise UsageError(f"alias {alias!r} has no earlier artifact to roll back to: it has pointed at "
                                 f"{stack[-1]} only (or every earlier promotion was rolled back already).")
            current, target = stack[-1], stack[-2]
            conn.execute(aliases.update().where(aliases.c.name == alias).values(artifact_id=target, updated_at=now()))
            return {"changed": True, **self._event(conn, "rollback", alias=alias, artifact_id=target, from_id=current,
                                                   to_id=target, reason=reason, by=by)}

    def note(self, action: str, alias: str, name: str, reason: str, by: str | None = None) -> dict[str, Any]:
        """Append an event that moves nothing (an update refused or skipped, and why) about artifact `name` and
        `alias`: the log says what was decided, not only what changed."""
        self._check_alias(alias)
        if action in _MOVES:
            raise UsageError(f"event {action!r} moves an alias; use promote or rollback for it.")
        with self._write() as conn:
            aid = self._find(conn, name)["id"]
            return self._event(conn, action, alias=alias, artifact_id=aid, to_id=aid, reason=reason, by=by)

    def tag(self, name: str, key: str, value: str, by: str | None = None) -> dict[str, Any]:
        """Set tag `key` of an artifact to `value` (replacing an earlier value), with a `tag` event."""
        if not isinstance(key, str) or not _KEY.match(key):
            raise UsageError(f"tag key {key!r} is not accepted; use letters, digits, '_', '.', ':' or '-' "
                             f"(at most 200), as in KEY=VALUE.")
        with self._write() as conn:
            aid = self._find(conn, name)["id"]
            conn.execute(self._insert(conn, tags).values(artifact_id=aid, key=key, value=str(value))
                         .on_conflict_do_update(index_elements=["artifact_id", "key"], set_={"value": str(value)}))
            return self._event(conn, "tag", artifact_id=aid, to_id=aid, reason=f"{key}={value}", by=by)

    # -- reading -----------------------------------------------------------------------------------------------
    def _stack(self, conn: sa.Connection, alias: str) -> list[str]:
        """The alias's standing promotions, oldest first, replayed from the event log."""
        stack: list[str] = []
        rows = conn.execute(sa.select(events.c.action, events.c.to_id).where(
            events.c.alias == alias, events.c.action.in_(_MOVES)).order_by(events.c.seq))
        for action, to_id in rows:
            if action == "promote":
                stack.append(to_id)
            elif stack:
                stack.pop()
        return stack

    def _find(self, conn: sa.Connection, name: str) -> dict[str, Any]:
        """The artifact row an alias, an id or a unique id prefix (4+ characters) names."""
        name = str(name)
        aid = conn.execute(sa.select(aliases.c.artifact_id).where(aliases.c.name == name)).scalar()
        row = conn.execute(sa.select(artifacts).where(artifacts.c.id == (aid or name))).mappings().first()
        if row is None and aid is None and len(name) >= 4 and re.fullmatch(r"[0-9a-f]+", name):
            found = conn.execute(sa.select(artifacts).where(artifacts.c.id.startswith(name, autoescape=True))
                                 .limit(2)).mappings().all()
            if len(found) > 1:
                raise UsageError(f"id prefix {name!r} names more than one artifact; give more of the id.")
            row = found[0] if found else None
        if row is None:
            raise UsageError(f"no artifact or alias named {name!r} in the registry at {self.url}; "
                             f"`tamer registry list` shows what it holds.")
        return dict(row)

    def show(self, name: str) -> dict[str, Any]:
        """One artifact: its record, parents, children, the aliases naming it, tags and every copy."""
        with self._read() as conn:
            row = self._find(conn, name)
            aid = row["id"]
            row["parents"] = list(conn.execute(sa.select(parents.c.parent_id).where(parents.c.child_id == aid)
                                               .order_by(parents.c.position)).scalars())
            row["children"] = sorted(conn.execute(sa.select(parents.c.child_id).where(parents.c.parent_id == aid)).scalars())
            row["aliases"] = sorted(conn.execute(sa.select(aliases.c.name).where(aliases.c.artifact_id == aid)).scalars())
            row["tags"] = dict(conn.execute(sa.select(tags.c.key, tags.c.value).where(tags.c.artifact_id == aid)).all())
            row["locations"] = [dict(r) for r in conn.execute(
                sa.select(locations.c.uri, locations.c.sealed).where(locations.c.artifact_id == aid)
                .order_by(locations.c.added_at, locations.c.uri)).mappings()]
        return row

    def list_artifacts(self) -> list[dict[str, Any]]:
        """Every registered artifact, newest first, with the aliases naming it."""
        with self._read() as conn:
            named: dict[str, list[str]] = {}
            for alias, aid in conn.execute(sa.select(aliases.c.name, aliases.c.artifact_id).order_by(aliases.c.name)):
                named.setdefault(aid, []).append(alias)
            rows = conn.execute(sa.select(artifacts).order_by(artifacts.c.registered_at.desc(), artifacts.c.id))
            return [{**dict(r), "aliases": named.get(r.id, [])} for r in rows.mappings()]

    def list_aliases(self) -> dict[str, str]:
        with self._read() as conn:
            return dict(conn.execute(sa.select(aliases.c.name, aliases.c.artifact_id).order_by(aliases.c.name)).all())

    def history(self, alias: str | None = None, artifact_id: str | None = None) -> list[dict[str, Any]]:
        """The event log in the order it was written; only one alias's moves, or one artifact's events, when named."""
        with self._read() as conn:
            query = sa.select(events).order_by(events.c.seq)
            if alias is not None:
                query = query.where(events.c.alias == alias)
            if artifact_id is not None:
                query = query.where(sa.or_(events.c.artifact_id == artifact_id, events.c.from_id == artifact_id))
            rows = [dict(r) for r in conn.execute(query).mappings()]
            if alias is not None and not rows:
                raise UsageError(f"alias {alias!r} is unknown to the registry at {self.url}; known aliases: "
                                 f"{', '.join(self.list_aliases()) or 'none yet'}.")
            return rows

    def lineage(self, name: str) -> dict[str, Any]:
        """The artifact's family: every ancestor (through parents) and descendant (through children) as nodes,
        parent -> child edges, the aliases naming any of them, and their promotions and rollbacks."""
        with self._read() as conn:
            root = self._find(conn, name)["id"]
            edges: set[tuple[str, str]] = set()
            seen = {root}
            for column, other in ((parents.c.child_id, parents.c.parent_id), (parents.c.parent_id, parents.c.child_id)):
                frontier = {root}
                while frontier:
                    found = conn.execute(sa.select(column, other).where(column.in_(frontier))).all()
                    for a, b in found:
                        edges.add((b, a) if column is parents.c.child_id else (a, b))
                    frontier = {b for _, b in found} - seen
                    seen |= frontier
            rows = {r["id"]: dict(r) for r in conn.execute(sa.select(artifacts).where(artifacts.c.id.in_(seen))).mappings()}
            named = dict(conn.execute(sa.select(aliases.c.name, aliases.c.artifact_id)
                                      .where(aliases.c.artifact_id.in_(seen))).all())
            moves = [dict(r) for r in conn.execute(sa.select(events).where(
                events.c.action.in_(_MOVES), events.c.to_id.in_(seen)).order_by(events.c.seq)).mappings()]
        nodes = [rows.get(i, {"id": i, "registered": False}) for i in sorted(seen)]
        return {"id": root, "nodes": nodes, "edges": sorted(edges), "aliases": named, "moves": moves}

    def resolve(self, name: str) -> dict[str, Any]:
        """Where the artifact an alias or id names lies: its first copy still on disk, plaintext before sealed
        ({"id", "path", "sealed"})."""
        record = self.show(name)
        copies = sorted(record["locations"], key=lambda c: bool(c["sealed"]))
        for copy in copies:
            if "://" in copy["uri"] or os.path.isdir(copy["uri"]):
                return {"id": record["id"], "path": copy["uri"], "sealed": bool(copy["sealed"])}
        raise UsageError(f"artifact {record['id']} ({name!r}) is registered at "
                         f"{', '.join(c['uri'] for c in copies)}, which no longer exists; register a copy with "
                         f"`tamer registry add PATH`.")
