"""The registry's tables at the newest schema revision (SQLAlchemy Core), read and written by registry.py.

The migrations under migrations/versions/ build the same tables step by step and stay frozen as written; HEAD names
the newest of them, so opening a registry whose `alembic_version` already says HEAD skips Alembic altogether.
Timestamps are ISO-8601 UTC strings: they sort as text and read the same on SQLite and PostgreSQL."""
from __future__ import annotations

import sqlalchemy as sa

HEAD = "0002"  # the newest revision in migrations/versions (a test checks it against Alembic's own head)
ID = sa.String(64)
NAME = sa.String(200)
TIME = sa.String(40)

metadata = sa.MetaData()

artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("id", ID, primary_key=True),  # the artifact's content id (artifact.content_id)
    sa.Column("task", NAME, nullable=False),
    sa.Column("format", sa.String(40), nullable=False),
    sa.Column("verb", sa.String(40), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("path", sa.Text, nullable=False),  # where it was first registered (every copy: locations)
    sa.Column("created_at", TIME),
    sa.Column("registered_at", TIME, nullable=False),
)

parents = sa.Table(
    "parents", metadata,
    sa.Column("child_id", ID, sa.ForeignKey("artifacts.id"), primary_key=True),
    sa.Column("parent_id", ID, primary_key=True),  # no foreign key: a parent made elsewhere may be unregistered
    sa.Column("position", sa.Integer, nullable=False),
)

aliases = sa.Table(
    "aliases", metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("artifact_id", ID, sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)

events = sa.Table(  # append-only: registry.py never updates or deletes a row, and triggers refuse it (revision 0002)
    "events", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", TIME, nullable=False),
    sa.Column("who", NAME, nullable=False),  # revision 0002
    sa.Column("action", sa.String(20), nullable=False),  # register | promote | rollback | tag | seal
    sa.Column("alias", NAME),
    sa.Column("artifact_id", ID),
    sa.Column("from_id", ID),
    sa.Column("to_id", ID),
    sa.Column("reason", sa.Text),
)

tags = sa.Table(  # revision 0002
    "tags", metadata,
    sa.Column("artifact_id", ID, sa.ForeignKey("artifacts.id"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

locations = sa.Table(  # revision 0002: every copy of an artifact, a sealed one beside its plaintext
    "locations", metadata,
    sa.Column("artifact_id", ID, sa.ForeignKey("artifacts.id"), primary_key=True),
    sa.Column("uri", sa.String(1000), primary_key=True),
    sa.Column("sealed", sa.Boolean, nullable=False),
    sa.Column("added_at", TIME, nullable=False),
)
