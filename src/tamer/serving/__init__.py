"""Serving: an artifact as an HTTP service (FastAPI + uvicorn) with dynamic batching, API keys, Prometheus
metrics, hot swap, an OpenAI-compatible completions endpoint for causal-lm artifacts and a page for people.
Artifacts are opened by a function the caller gives (`tamer.api.serve` passes `tamer.load` with the key), so
sealed ones are decrypted in memory and this package imports no other capability."""
from .auth import Identity, KeyRing, hash_key, make_api_key
from .config import ServeConfig
from .slot import ModelSlot, Pin, Served

__all__ = ["Identity", "KeyRing", "ModelSlot", "Pin", "ServeConfig", "Served", "create_app", "hash_key",
           "make_api_key", "run_server"]


def __getattr__(name):  # the app needs fastapi and torch: imported when asked for
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run_server":
        from .server import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
