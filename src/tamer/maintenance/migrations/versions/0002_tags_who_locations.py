"""Version 2: tags (KEY=VALUE per artifact), who made each event, every copy of an artifact (locations: a sealed
copy beside its plaintext), and the event log made append-only in the database itself (triggers)."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE FUNCTION tamer_events_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'the registry event log is append-only'; END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("artifact_id", sa.String(64), sa.ForeignKey("artifacts.id"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "locations",
        sa.Column("artifact_id", sa.String(64), sa.ForeignKey("artifacts.id"), primary_key=True),
        sa.Column("uri", sa.String(1000), primary_key=True),
        sa.Column("sealed", sa.Boolean, nullable=False),
        sa.Column("added_at", sa.String(40), nullable=False),
    )
    # every version-1 artifact keeps its one path as its one (plaintext) location
    op.execute("INSERT INTO locations (artifact_id, uri, sealed, added_at) "
               "SELECT id, path, false, registered_at FROM artifacts")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("who", sa.String(200), nullable=False, server_default="unknown"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
                   "FOR EACH ROW EXECUTE FUNCTION tamer_events_append_only()")
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER events_no_{what.lower()} BEFORE {what} ON events "
                       f"BEGIN SELECT RAISE(ABORT, 'the registry event log is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER events_append_only ON events")
        op.execute("DROP FUNCTION tamer_events_append_only()")
    else:
        op.execute("DROP TRIGGER events_no_update")
        op.execute("DROP TRIGGER events_no_delete")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("who")
    op.drop_table("locations")
    op.drop_table("tags")
