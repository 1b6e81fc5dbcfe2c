"""Tasks: what a model is for. The built-ins are found by name; users add theirs with `@register_task`."""
from .base import ListDataset, Splits, Task
from .meters import Meter
from .registry import get_task_class, make_task, register_task, task_from_artifact, task_names

__all__ = ["ListDataset", "Meter", "Splits", "Task", "get_task_class", "make_task", "register_task",
           "task_from_artifact", "task_names"]
