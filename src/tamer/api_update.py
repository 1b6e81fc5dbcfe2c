"""The update verb, composed: the alias's champion, a drift test of the new data against the champion's, a
challenger warm-started from the champion and fine-tuned through the one training loop, both scored on the same
held-out data (the new test split and the old one), gates, and a promotion only when every gate passes; the
registry's event log records the decision either way. Part of the api layer (api.update calls it)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Subset

from .artifact import Artifact, save_artifact
from .device import current, place_model
from .errors import UsageError, refuse_existing
from .maintenance.update import Gate, UpdateConfig, UpdateReport, mcnemar_p, standing_gates


def recipe_checks(path: str | None) -> tuple[list[Gate], dict[str, Any] | None]:
    """A recipe's gates, every stage's, as rules the challenger must pass (a metric it does not report fails its
    gate, so none is silently dropped), and the options of its attack stage, with which the challenger's
    robust_accuracy is measured (None when it has none)."""
    if not path:
        return [], None
    import yaml

    from .gates import parse_gate

    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--recipe {path!r} does not exist; give a recipe YAML file.") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--recipe {path!r} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    stages = recipe.get("stages") if isinstance(recipe, dict) else None
    if not isinstance(stages, list):
        raise UsageError(f"--recipe {path!r} has no list of stages; see `tamer run --help` for the recipe format.")
    gates, attack = [], None
    for i, stage in enumerate(s for s in stages if isinstance(s, dict)):
        verb = next((k for k in stage if k not in ("gate", "name")), f"stage {i}")
        source = f"recipe stage {verb}"
        gates += [Gate(metric, op, threshold, source) for metric, op, threshold in parse_gate(stage.get("gate"), source)]
        if verb == "attack" and attack is None:
            attack = dict(stage["attack"] or {})
    return gates, attack


def held_out(new_test, old_test) -> dict[str, Any]:
    """The held-out sets both models are scored on: the new data's test split, the champion's own test split (so
    nothing is forgotten unseen), and both together."""
    return {"new": new_test, "old": old_test, "all": ConcatDataset([new_test, old_test])}


def data_drift(champion: Artifact, data: str, progress: bool = False):
    """(verdict, p_value, summary) of the new data against the champion's own, on the champion's embeddings (MMD and
    a domain classifier, maintenance/drift.py)."""
    from .maintenance.drift import detect_drift
    from .maintenance.drift_data import DriftData
    from .tasks import task_from_artifact

    task = task_from_artifact(champion)
    old_path = task.data_files.get("data")
    old, new = task.raw_inputs(old_path), task.raw_inputs(data)
    kind = "text" if isinstance(old, list) else "array"
    side = lambda path, rows: DriftData(str(path), kind, **({"texts": rows} if kind == "text" else {"array": rows}))  # noqa: E731
    report = detect_drift(side(old_path or "built-in data", old), side(data, new), artifact=champion, progress=progress)
    summary = {"p_value": report.p_value, "rule": report.rule, "features": report.features,
               "tests": report.tests, "rows": [report.rows_reference, report.rows_current]}
    return report.drift, report.p_value, summary


def challenger_task(champion: Artifact, data: str):
    """The champion's task (its tokenizer and labels kept) reading `data` instead of the champion's data."""
    from .tasks import make_task

    manifest = champion.manifest
    task = make_task(manifest["task"]["name"], {**manifest["task"].get("config", {}), "data": data})
    task.restore(champion, manifest["model_config"])
    return task


def mixed_training(new_train, old_train, replay: float, seed: int):
    """The new training split plus a seeded sample of `replay` of the champion's own (rehearsal against
    forgetting)."""
    import numpy as np

    if replay <= 0 or old_train is None or len(old_train) == 0:
        return new_train
    keep = np.random.default_rng(seed).permutation(len(old_train))[:round(replay * len(old_train))]
    return ConcatDataset([new_train, Subset(old_train, sorted(keep.tolist()))])


def fine_tune(task, champion: Artifact, train, val, config: UpdateConfig, progress: bool):
    """The challenger: the champion's weights fine-tuned on the new data through the one training loop."""
    from .tasks.base import Splits
    from .training import Start, TrainConfig, fit

    if champion.manifest.get("format", "fp32") != "fp32":
        raise UsageError(f"the artifact behind the alias ({champion.id}) holds {champion.manifest['format']} weights, "
                         f"which cannot be fine-tuned; promote its fp32 parent, update that, and compress the winner.")
    defaults = task.train_defaults()
    train_config = TrainConfig(epochs=config.epochs or min(5, defaults["epochs"]), lr=config.lr or defaults["lr"] / 2,
                               batch_size=defaults["batch_size"], seed=config.seed, patience=0,
                               device=str(current().device), precision=current().precision)  # the verb's placement
    start = Start(champion.manifest["model_config"], champion.state_dict())
    fitted = fit(task, Splits(train, val, val), train_config, None, progress, start=start)
    return fitted, train_config


def scores(task, model, sets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in task.evaluate(model, data).items() if not isinstance(v, (list, dict))}
            for name, data in sets.items()}


def right_answers(task, model, data):
    """Per example of `data`: does `model` predict its label (classifiers)."""
    import torch
    from torch.utils.data import DataLoader

    out = []
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=256, shuffle=False, collate_fn=task.collate):
            out.append((task.forward(model, batch).argmax(-1).cpu() == batch["labels"].cpu()).numpy())
    import numpy as np

    return np.concatenate(out)


def size_mb(artifact: Artifact) -> float:
    return sum(artifact.size(name) for name in artifact.manifest.get("files", {})) / 1e6


def update(config: UpdateConfig, registry, *, attack=None, out: str | Path | None = None,
           progress: bool = True) -> UpdateReport:
    """Run one update of `config.alias` (see the module docstring). `registry` is an open maintenance Registry;
    `attack(artifact, options)` returns an AttackReport (api.attack), for a recipe gate on robust_accuracy."""
    t0 = time.perf_counter()
    if not config.data:
        raise UsageError("tamer update needs --data NEW_DATA (a data file in the champion's task format).")
    if not Path(config.data).is_file():
        raise UsageError(f"--data {config.data!r} does not exist; give the new data file.")
    gates_from_recipe, attack_options = recipe_checks(config.recipe)
    champion = Artifact.load(registry.resolve(config.alias)["path"])
    report = UpdateReport(alias=config.alias, task=champion.task, data=config.data, champion=champion.id,
                          champion_path=str(champion.path), options=dataclasses.asdict(config))
    report.drift, report.drift_p_value, report.drift_summary = data_drift(champion, config.data, progress)
    if config.when == "drift" and report.drift is False:
        report.decision = (f"no drift (p = {report.drift_p_value:.3g}): nothing retrained; {config.alias} stays on "
                           f"{champion.id}.")
        report.production = champion.id
        registry.note("update-skipped", config.alias, champion.id, report.decision)
        report.seconds = time.perf_counter() - t0
        return report
    champion_task, champion_model = champion.load_model()
    old = champion_task.splits(champion.split_seed)
    task = challenger_task(champion, config.data)
    new = task.prepare(config.seed)
    sets = held_out(new.test, old.test)
    train = mixed_training(new.train, old.train, config.replay, config.seed)
    fitted, train_config = fine_tune(task, champion, train, new.val, config, progress)
    from .training import recipe_options
    report.metric = task.metric
    report.scores = {"champion": scores(task, champion_model, sets),
                     "challenger": scores(task, place_model(fitted.model), sets)}  # both on the verb's device
    fitted.model.cpu()
    out = refuse_existing(Path(out) if out else Path("artifacts") / f"{champion.task}-update-{time.strftime('%Y%m%d-%H%M%S')}")
    challenger_metrics = dict(report.scores["challenger"]["all"])
    child = save_artifact(
        out, fitted.model.state_dict(), task=task.to_manifest(), model_config=champion.manifest["model_config"],
        verb="update", options={**recipe_options(train_config), "replay": config.replay, "split_seed": config.seed},
        metrics={"test": challenger_metrics, "held_out": report.scores["challenger"]}, parents=[champion.id],
        write_files=task.write_files,
        extra={"run": {"seconds": fitted.seconds, "data_files": task.data_files},
               "training": {"learning_curve": fitted.history, "best_epoch": fitted.best_epoch, "metric": task.metric}})
    report.challenger, report.challenger_path = child.id, str(child.path)
    registry.register(child.manifest, str(Path(child.path).resolve()))
    judged = {**challenger_metrics, **{f"old.{k}": v for k, v in report.scores["challenger"]["old"].items()},
              **{f"new.{k}": v for k, v in report.scores["challenger"]["new"].items()}, "size_mb": size_mb(child)}
    paired = task.kind == "classification"
    if paired:
        judged["mcnemar_p_value"] = mcnemar_p(right_answers(task, champion_model, sets["all"]),
                                              right_answers(task, fitted.model, sets["all"]))
    if attack is not None and attack_options is not None:
        judged["robust_accuracy"] = attack(child, attack_options).robust_accuracy
    gates = standing_gates(task.metric, task.higher_is_better, report.scores["champion"], config, paired) + gates_from_recipe
    for gate in gates:
        gate.judge(judged)
    report.gates = [{**dataclasses.asdict(g), "sentence": g.sentence()} for g in gates]
    failed = [g for g in gates if not g.passed]
    why = config.reason or f"update with {config.data}"
    if failed:
        report.decision = (f"challenger {child.id} refused: " + "; ".join(g.sentence() for g in failed)
                           + f". {config.alias} stays on {champion.id}.")
        registry.note("update-refused", config.alias, child.id, f"{why}: {report.decision}")
        report.production = champion.id
    else:
        registry.promote(child.id, config.alias, reason=f"{why}: every gate passed")  # alias and event in one transaction
        report.promoted, report.production = True, child.id
        report.decision = f"challenger {child.id} promoted to {config.alias} (was {champion.id}): every gate passed."
    report.seconds = time.perf_counter() - t0
    return report
