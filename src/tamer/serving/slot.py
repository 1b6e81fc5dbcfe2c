"""The served model and its hot swap: a source names the artifact to serve (a path today, a registry alias's target
once the registry resolves it); each worker re-reads it, loads a new model in the background and replaces the old
one in one assignment, so a request keeps the model it started with."""
from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..artifact import Artifact
from ..errors import UsageError

log = logging.getLogger("tamer.serving")


@dataclass(frozen=True)
class Served:
    """One loaded model version: what the source named, the artifact, and its task and model (eval mode)."""

    ref: str
    artifact: Artifact
    task: Any
    model: Any
    loaded_at: float

    @property
    def id(self) -> str:
        return self.artifact.id

    def card(self) -> dict[str, Any]:
        """What /v1/model says: id, task, kind, labels, test metrics, format and lineage (never a key)."""
        m = self.artifact.manifest
        test = {k: v for k, v in m.get("metrics", {}).get("test", {}).items() if not isinstance(v, (list, dict))}
        return {"id": self.id, "task": self.artifact.task, "kind": self.task.kind, "format": m.get("format", "fp32"),
                "labels": list(getattr(self.task, "labels", None) or []), "metrics": test,
                "lineage": {"verb": m.get("verb"), "parents": list(m.get("parents", []))},
                "sealed": self.artifact.in_memory, "loaded_at": self.loaded_at}


class Pin:
    """An artifact an admin named with `POST /admin/reload`, served instead of the source's until the next reload
    without one. Kept in a file that every worker process reads (`path`), or in memory for one process."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self.value: str | None = None

    def get(self) -> str | None:
        if self.path is None:
            return self.value
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def set(self, value: str | None) -> None:
        if self.path is None:
            self.value = value
            return
        fd, tmp = tempfile.mkstemp(prefix=".tamer-tmp-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value or "")
        os.replace(tmp, self.path)


class ModelSlot:
    """The model a worker serves now. `opener(ref) -> Artifact` opens what `source() -> ref` names (sealed ones
    through their key, in memory); `current` is replaced by one assignment once a new model is fully loaded."""

    def __init__(self, opener: Callable[[str], Artifact], source: Callable[[], str], pin: Pin | None = None):
        self.opener, self.source, self.pin = opener, source, pin or Pin()
        self.current: Served | None = None
        self.swaps = 0
        self._lock: asyncio.Lock | None = None

    def wanted(self) -> str:
        """The artifact to serve: the admin's pin, else what the source resolves to now."""
        return self.pin.get() or str(self.source())

    def open(self, ref: str) -> Served:
        artifact = self.opener(ref)
        task, model = artifact.load_model()
        return Served(ref, artifact, task, model, time.time())

    async def reload(self, ref: str | None = None, pin: bool = False) -> tuple[Served, bool]:
        """Load `ref` (or what is wanted now) in a background thread and swap it in; (the model served, changed).
        A model for another task is refused: its clients would send the wrong inputs."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            target = ref if ref is not None else await asyncio.to_thread(self.wanted)
            if self.current is not None and target == self.current.ref:
                if pin:
                    self.pin.set(target)
                return self.current, False
            new = await asyncio.to_thread(self.open, target)
            old = self.current
            if old is not None and new.artifact.task != old.artifact.task:
                raise UsageError(f"artifact {target!r} is for task {new.artifact.task!r}, but this server serves "
                                 f"{old.artifact.task!r}; start another server for it.")
            if pin:
                self.pin.set(target)
            self.current = new  # the swap: requests that hold `old` finish on it
            if old is not None:
                self.swaps += 1
                log.info("serving %s (was %s)", new.id, old.id)
            return new, True
