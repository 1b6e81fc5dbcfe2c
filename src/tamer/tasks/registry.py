"""The registry of tasks by name: the built-ins and whatever a user adds with `@register_task`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import make_config
from ..errors import UsageError
from .base import Task

if TYPE_CHECKING:
    from ..artifact import Artifact


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task available by its `name` to every verb and the CLI."""
    if not getattr(cls, "name", None):
        raise UsageError(f"task class {cls.__name__} needs a `name` to be registered.")
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    _load_builtins()
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    _load_builtins()
    if name not in _TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}.")
    return _TASKS[name]


def make_task(name: str, options: dict[str, Any] | None = None) -> Task:
    cls = get_task_class(name)
    return cls(make_config(cls.Config, options or {}))


def task_from_artifact(artifact: Artifact) -> Task:
    """Rebuild the task an artifact was made for, with its saved state (tokenizer, labels)."""
    manifest = artifact.manifest
    task = make_task(manifest["task"]["name"], manifest["task"].get("config", {}))
    task.relocate(dict(manifest.get("run", {}).get("data_files", {})))
    task.restore(artifact, manifest["model_config"])
    return task


def _load_builtins() -> None:
    """The built-in tasks, imported on first use (they load transformers); a user's task of the same name wins."""
    from .causal_lm import CausalLMTask
    from .digits import DigitsTask
    from .text_classification import TextClassificationTask

    for cls in (CausalLMTask, DigitsTask, TextClassificationTask):
        _TASKS.setdefault(cls.name, cls)
