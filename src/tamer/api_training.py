"""The training verbs of the public API: `train` (plain, distributed, or DP-SGD with `private=True`) and `federate`
(FedAvg, optionally with client-level DP). Part of the composing layer, beside api.py, which re-exports them; each
records what it wrote in the registry and returns the artifact with its report (and what it cost) attached."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api_base import costed_train, default_out, on_device
from .api_maintenance import record
from .artifact import Artifact
from .config import make_config
from .errors import UsageError

if TYPE_CHECKING:
    from .tasks.base import Task
    from .training import TrainConfig


def split_options(task_cls: type[Task], options: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """Options naming TrainConfig fields configure training; the rest configure the task."""
    from .training import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    task_fields = {f.name for f in dataclasses.fields(task_cls.Config)}
    train_opts, task_opts = {}, {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name in train_fields:
            train_opts[name] = value
        elif name in task_fields:
            task_opts[name] = value
        else:
            known = sorted(train_fields | task_fields)
            raise UsageError(f"unknown option {key!r} for train {task_cls.name}; accepted: {', '.join(known)}.")
    return make_config(TrainConfig, train_opts), task_opts


@costed_train
def train(task: str | Task = "digits", config: TrainConfig | None = None, *, out: str | Path | None = None,
          progress: bool = True, **options: Any) -> Artifact:
    """Train a task's model and write an artifact. Options are TrainConfig fields and the task's own (e.g. data=...).

    `private=True` (with epsilon, delta, max_grad_norm) trains with DP-SGD instead (protection/privacy.py)."""
    from .protection.config import PrivacyConfig
    from .tasks import Task, get_task_class, make_task
    from .training import TrainConfig
    from .training import train as _train

    privacy_fields = {f.name for f in dataclasses.fields(PrivacyConfig)}
    privacy = make_config(PrivacyConfig, {k: options.pop(k) for k in list(options) if k.replace("-", "_") in privacy_fields})
    if privacy.private:
        return _train_private(task, privacy, out, progress, options)
    if isinstance(task, Task):
        train_config, task_opts = split_options(type(task), options)
        if task_opts:
            raise UsageError(f"options {sorted(task_opts)} configure the task; pass them when you build {type(task).__name__}.")
    else:
        train_config, task_opts = split_options(get_task_class(task), options)
        task = make_task(task, task_opts)
    if config is not None:
        train_config = dataclasses.replace(config, **{k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    return _with_train_report(_train(task, train_config, out or default_out(task.name), show_progress=progress))


def _with_train_report(artifact: Artifact | None) -> Artifact | None:
    """The trained artifact, recorded in the registry, with its TrainReport (PrivacyReport for DP-SGD) attached (on
    every torchrun rank); None only where this process launched torchrun and the artifact was written on another
    machine."""
    if artifact is None:
        return None
    record((artifact, artifact.path, False))
    if "privacy" in artifact.manifest:
        from .protection.privacy import PrivacyReport

        return artifact.with_report(PrivacyReport.from_artifact(artifact))
    from .training import TrainReport

    return artifact.with_report(TrainReport.from_artifact(artifact))


def _train_private(task: str | Task, privacy, out, progress: bool, options: dict[str, Any]) -> Artifact:
    from .protection.privacy import train_private
    from .tasks import Task, make_task
    from .training import TrainConfig

    if isinstance(task, Task):
        train_opts = dict(options)
    else:
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        train_opts = {k: v for k, v in options.items() if k.replace("-", "_") in train_fields}
        task = make_task(task, {k: v for k, v in options.items() if k not in train_opts})
    given = dataclasses.asdict(make_config(TrainConfig, train_opts))  # the same checks and coercion as train
    return _with_train_report(train_private(task, {k: given[k.replace("-", "_")] for k in train_opts}, privacy,
                                            out or default_out(task.name), show_progress=progress))


@on_device
def federate(task: str | Task = "digits", config=None, *, out: str | Path | None = None, progress: bool = True,
             **options: Any) -> Artifact:
    """Federated averaging over simulated clients (FederateConfig fields), optionally with client-level DP
    (private, epsilon, delta; each client's update clipped to max_update_norm); other options configure the task.
    The clients train and the model is evaluated at `device` / `precision`, which a client-level DP run accepts too
    (its updates are clipped and noised in float64 whatever the clients computed in)."""
    from .protection.config import PrivacyConfig
    from .protection.federated import FederateConfig
    from .protection.federated import federate as _federate
    from .tasks import Task, make_task

    names = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    pick = lambda cls: {k: options.pop(k) for k in list(options) if k.replace("-", "_") in names(cls)}  # noqa: E731
    if "max_grad_norm" in {k.replace("-", "_") for k in options}:
        raise UsageError("federate clips each client's update, not each example's gradient: pass max_update_norm "
                         "(--max-update-norm) instead of max_grad_norm.")
    privacy = make_config(PrivacyConfig, pick(PrivacyConfig))
    fed = pick(FederateConfig)
    config = dataclasses.replace(config, **fed) if config is not None else make_config(FederateConfig, fed)
    if not isinstance(task, Task):
        task = make_task(task, options)
    elif options:
        raise UsageError(f"options {sorted(options)} configure the task; pass them when you build {type(task).__name__}.")
    from .protection.federated import FederateReport

    artifact = _federate(task, config, out or default_out(task.name), privacy, show_progress=progress)
    record((artifact, artifact.path, False))
    return artifact.with_report(FederateReport.from_artifact(artifact))
