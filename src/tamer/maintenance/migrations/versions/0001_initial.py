"""Version 1 of the registry: artifacts, their parents, aliases and the event log (no tags, no `who`)."""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("verb", sa.String(40), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40)),
        sa.Column("registered_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "parents",
        sa.Column("child_id", sa.String(64), sa.ForeignKey("artifacts.id"), primary_key=True),
        sa.Column("parent_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_parents_parent_id", "parents", ["parent_id"])
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("artifact_id", sa.String(64), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("alias", sa.String(200)),
        sa.Column("artifact_id", sa.String(64)),
        sa.Column("from_id", sa.String(64)),
        sa.Column("to_id", sa.String(64)),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_events_alias", "events", ["alias", "seq"])


def downgrade() -> None:
    for table in ("events", "aliases", "parents", "artifacts"):
        op.drop_table(table)
