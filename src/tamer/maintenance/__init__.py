"""Keeping a model current: the registry of artifacts, drift detection, gated update and rollback."""
