"""Maintenance: the model registry (artifacts, lineage, aliases, an append-only event log) on SQLAlchemy with
Alembic migrations. sqlalchemy is owned by database.py, schema.py and registry.py; alembic by database.py and the
migrations under migrations/. Nothing here imports another capability: recording happens in tamer/api.py."""
from .database import ENV, RegistryUnavailable, default_url
from .registry import Registry

__all__ = ["ENV", "Registry", "RegistryUnavailable", "default_url"]
