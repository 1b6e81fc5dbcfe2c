"""The package version, in a module of its own so the core (artifact.py) can record it without importing
the package's face (tamer/__init__.py)."""
__version__ = "0.1.0"
