"""Alembic's environment for the registry: always run by migrate.py on a connection it passes in (never from an
alembic.ini), inside that connection's transaction."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
