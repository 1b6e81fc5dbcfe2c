"""Tasks: what a model is for. Built-ins register themselves; users add theirs with `register_task`."""
from .base import ListDataset, Meter, Splits, Task, get_task_class, make_task, register_task, task_from_artifact, task_names

__all__ = ["ListDataset", "Meter", "Splits", "Task", "get_task_class", "make_task", "register_task",
           "task_from_artifact", "task_names"]
