"""Recipes: a chain of verbs with gates, validated before anything runs, ending in one HTML report."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .artifact import Artifact
from .cost import add_up, attach, measure
from .errors import GateFailed, TamerError, UsageError, refuse_existing
from .gates import OPS, parse_gate
from .report import Report, table_html, write_page
from .stages import STAGES, Context, Stage, plaintext_artifacts

def judge(stage: str, gates: list[tuple[str, str, float]], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate against the metrics: {metric, op, threshold, value, passed}; a metric not reported is an error."""
    checked = []
    for metric, op, threshold in gates:
        if metric not in metrics:
            raise UsageError(f"stage {stage}: gate metric {metric!r} is not reported; available: {', '.join(sorted(metrics))}.")
        checked.append({"metric": metric, "op": op, "threshold": threshold, "value": float(metrics[metric]),
                        "passed": bool(OPS[op](float(metrics[metric]), threshold))})
    return checked


def gate_message(stage: str, checked: list[dict[str, Any]], then: str) -> str:
    bad = next(g for g in checked if not g["passed"])
    return f"gate failed at stage {stage}: {bad['metric']} = {bad['value']:.4g}, which is not {bad['op']} {bad['threshold']}; {then}"


@dataclass
class StageResult:
    name: str
    verb: str
    status: str  # passed | failed | skipped
    seconds: float = 0.0
    gates: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None  # what the stage's verb cost (tamer/cost.py)


@dataclass
class RunReport(Report):
    name: str
    out: str
    status: str
    stages: list[StageResult]
    html_path: str
    message: str = ""
    artifact: str | None = None
    sealed: str | None = None
    plaintext_copies: list[str] = field(default_factory=list)  # unencrypted artifacts left after an encrypt stage
    removed_plaintext: list[str] = field(default_factory=list)  # what `encrypt: {remove_plaintext: true}` deleted
    title = "run"

    def summary(self) -> str:
        lines = [f"{s.status:>7}  {s.name} ({s.seconds:.1f} s)" + "".join(
            f"  [{g['metric']} {g['value']:.4g} {g['op']} {g['threshold']}: {'ok' if g['passed'] else 'FAILED'}]"
            for g in s.gates) for s in self.stages]
        tail = (f"run {self.status}: report {self.html_path}" + (f"\nfinal artifact {self.artifact}" if self.artifact else "")
                + (f"\nencrypted copy {self.sealed}" if self.sealed else "")
                + (f"\nplaintext copies remain: {', '.join(self.plaintext_copies)} (the encrypt stage's "
                   f"`remove_plaintext: true` deletes the run's own)" if self.plaintext_copies else "")
                + (f"\nplaintext removed: {', '.join(self.removed_plaintext)}" if self.removed_plaintext else ""))
        c = self.cost or {}
        cost = ([f"cost: {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} s CPU, peak {c['peak_rss_bytes'] / 2**20:,.0f} MiB "
                 f"resident, energy " + (f"{c['energy_j']:.1f} J" if c.get("energy_j") is not None else "unavailable")]
                if c.get("wall_s") is not None and c.get("peak_rss_bytes") is not None else [])
        return "\n".join(lines + ([self.message] if self.message else []) + cost + [tail])

    def html(self) -> str:
        rows = []
        for s in self.stages:
            gates = "; ".join(f"{g['metric']} {g['value']:.4g} {g['op']} {g['threshold']}" for g in s.gates) or "—"
            rows.append((s.name, s.status, f"{s.seconds:.1f} s", gates))
        cls = "pass" if self.status == "passed" else "fail"
        msg = f"<p class={cls}>{html.escape(self.message)}</p>" if self.message else ""
        sealed = ""
        if self.sealed:
            facts = [("encrypted copy", self.sealed),
                     ("plaintext copies remaining", ", ".join(self.plaintext_copies) or "none"),
                     *([("plaintext removed", ", ".join(self.removed_plaintext))] if self.removed_plaintext else [])]
            sealed = table_html(facts)
        return (f"<section><h2>Run · {html.escape(self.name)} · <span class={cls}>{self.status}</span></h2>{msg}"
                f"{table_html(rows, ['stage', 'status', 'time', 'gates'])}{sealed}{cost_table(self.stages)}</section>")


def placed_at(cost: dict[str, Any]) -> str:
    """`cpu bf16 (computed in bfloat16)`: where a stage ran, at what precision, and what its model computed in."""
    computed = f"(computed in {', '.join(cost['computed_in'])})" if cost.get("computed_in") else ""
    return " ".join(x for x in (cost.get("device"), cost.get("precision"), computed) if x) or "—"


def cost_table(stages: list[StageResult]) -> str:
    """What each stage cost and the run's total: wall and CPU seconds, peak memory, FLOPs per example, energy."""
    measured = [s for s in stages if s.cost]
    if not measured:
        return ""
    mib = lambda b: "—" if b is None else f"{b / 2**20:,.0f} MiB"  # noqa: E731
    flops = lambda f: ", ".join(f"{k} {v:.3g}" for k, v in (f or {}).items()) or "—"  # noqa: E731
    joules = lambda c: f"{c['energy_j']:.1f} J" if c.get("energy_j") is not None else "unavailable"  # noqa: E731
    rows = [(s.name, placed_at(c), f"{c['wall_s']:.1f} s", f"{c['cpu_s']:.1f} s", mib(c.get("peak_rss_bytes")),
             mib(c.get("peak_accelerator_bytes")), flops(c.get("flops_per_example")), joules(c))
            for s in measured for c in [s.cost]]
    total = add_up({s.name: s.cost for s in measured})
    rows.append(("total", "", f"{total['wall_s']:.1f} s", f"{total['cpu_s']:.1f} s", mib(total["peak_rss_bytes"]),
                 mib(total["peak_accelerator_bytes"]), "", joules(total)))
    reason = next((s.cost.get("energy_reason") for s in measured if s.cost.get("energy_reason")), "")
    note = f"<p class=muted>energy unavailable: {html.escape(reason)}</p>" if reason else ""
    return ("<h3>What it cost</h3>" + table_html(rows, ["stage", "device, precision", "wall", "CPU", "peak resident", "peak GPU",
                                                        "FLOPs / example", "energy"]) + note)


def run_page(folder: Path, out: Path) -> Path:
    """The HTML page of a finished run folder, rebuilt from its report.json and the artifacts it holds."""
    from .report.lineage import LineageReport

    try:
        data = json.loads((folder / "report.json").read_text())
        names = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
        stages = [StageResult(**{k: v for k, v in s.items() if k in names(StageResult)}) for s in data["stages"]]
        run = RunReport(**{**{k: v for k, v in data.items() if k in names(RunReport)}, "stages": stages})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"{str(folder)!r} has no readable run report ({type(exc).__name__}); give a folder "
                         f"written by `tamer run`.") from None
    sections: list[Report] = [run]
    for manifest in sorted(folder.rglob("manifest.json")):
        if not (manifest.parent / "encryption.json").exists():
            sections.append(LineageReport.from_artifact(Artifact.load(manifest.parent)))
    return write_page(out, sections, title=f"tamer run · {run.name}", subtitle=str(folder))


def load_recipe(recipe: str | Path | dict | None) -> dict[str, Any]:
    if recipe is None:
        return yaml.safe_load(resources.files("tamer").joinpath("recipes/default.yaml").read_text())
    if isinstance(recipe, dict):
        return recipe
    path = Path(recipe)
    if not path.is_file():
        raise UsageError(f"recipe {str(recipe)!r} does not exist; give a YAML file or no recipe for the built-in default.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"recipe {str(recipe)!r} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {str(recipe)!r} must be a mapping with `task` and `stages`.")
    return data


PLACEMENT = ("device", "precision")


def placement(where: str, stage: Stage | None, given: dict[str, Any]) -> dict[str, str]:
    """`device` / `precision` as given (a stage's over the recipe's), checked now: a bad name, or a device or precision
    this machine lacks, fails before any stage runs. Only stages that run a model take them."""
    from .config import make_config
    from .device import DeviceConfig, placed

    if given and stage is not None and not stage.runs_model:
        raise UsageError(f"{where}: {stage.verb} runs no model, so {next(iter(given))!r} does not apply; drop it "
                         f"(the recipe-level `device:` / `precision:` reach every stage that runs one).")
    try:
        config = make_config(DeviceConfig, given)
        with placed(config.device, config.precision):
            pass
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}" if stage is not None else str(exc)) from None
    return {k: str(v) for k, v in given.items()}


def plan(recipe: dict[str, Any], ctx: Context) -> list[tuple[str, Stage, dict[str, Any], list, dict[str, str]]]:
    """Check every stage before running any: unknown verbs, options, gates and placements fail up front."""
    from .tasks import get_task_class

    unknown = sorted(set(recipe) - {"name", "task", "options", "artifact", "stages", *PLACEMENT})
    if unknown:
        raise UsageError(f"recipe key {unknown[0]!r} is not accepted; use name, task, options, artifact, device, "
                         f"precision and stages.")
    everywhere = placement("recipe", None, {k: recipe[k] for k in PLACEMENT if k in recipe})
    get_task_class(ctx.task)
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise UsageError("the recipe has no stages; give `stages:` as a list like `- train: {epochs: 10}`.")
    steps = []
    for i, entry in enumerate(stages, 1):
        if not isinstance(entry, dict):
            raise UsageError(f"stage {i} ({entry!r}) is not accepted; write it as `- VERB: {{options}}` with an optional `gate:`.")
        verbs = [k for k in entry if k not in ("gate", "name")]
        if len(verbs) != 1 or verbs[0] not in STAGES:
            raise UsageError(f"stage {i} names {verbs or 'no verb'}; it must name exactly one of {', '.join(STAGES)}.")
        verb = verbs[0]
        options = entry[verb] or {}
        if not isinstance(options, dict):
            raise UsageError(f"stage {i} ({verb}): options {options!r} must be a mapping.")
        name = str(entry.get("name") or f"{i:02d}-{verb}")
        own = placement(f"stage {name}", STAGES[verb], {k: options[k] for k in PLACEMENT if k in options})
        options = {k: v for k, v in options.items() if k not in PLACEMENT}
        try:
            STAGES[verb].check(ctx, options)
        except UsageError as exc:
            raise UsageError(f"stage {name}: {exc}") from None
        where = {**everywhere, **own} if STAGES[verb].runs_model else {}
        steps.append((name, STAGES[verb], options, parse_gate(entry.get("gate"), f"stage {name}"), where))
    return steps


def run(recipe: str | Path | dict | None = None, out: str | Path | None = None, progress: bool = True) -> RunReport:
    """The `run` verb: a recipe (a chain of verbs with gates) and one HTML report. No recipe: the built-in default.
    Recipes compose the verbs of api.py; api.py never calls back into this module. A stage that runs a model runs at
    its `device` / `precision`, else the recipe's, else auto and fp32 (the verbs' defaults)."""
    from .device import placed

    spec = load_recipe(recipe)
    name = str(spec.get("name") or (Path(recipe).stem if isinstance(recipe, (str, Path)) else "recipe"))
    out = Path(out) if out else Path("runs") / f"{name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    refuse_existing(out, "a run")
    ctx = Context(task=str(spec.get("task", "digits")), task_options=dict(spec.get("options") or {}), out=out, progress=progress)
    if spec.get("artifact"):
        ctx.artifact = Artifact.load(spec["artifact"])
        ctx.task = ctx.artifact.task
    steps = plan(spec, ctx)
    out.mkdir(parents=True, exist_ok=True)

    results: list[StageResult] = []
    reports: list[Report] = []
    status, message, failure = "passed", "", None
    for stage_name, stage, options, gates, where in steps:
        t0 = time.perf_counter()
        before = ctx.artifact
        if stage.gate_first is not None:  # promote: the gate decides whether the stage acts at all
            checked = judge(stage_name, gates, stage.gate_first(ctx, options))
            if not all(g["passed"] for g in checked):
                results.append(StageResult(stage_name, stage.verb, "failed", time.perf_counter() - t0, checked))
                status, message = "failed", gate_message(stage_name, checked, "the stage did not act and later stages did not run.")
                break
        ctx.placement = where
        try:
            with nullcontext() if stage.measured else measure() as meter, \
                    placed(where.get("device"), where.get("precision")) if stage.runs_model else nullcontext() as placement:
                report = stage.run(ctx, options, out / stage_name)
        except TamerError as exc:
            results.append(StageResult(stage_name, stage.verb, "failed", time.perf_counter() - t0))
            status, message, failure = "failed", f"stage {stage_name} failed: {exc}", exc
            break
        reports.append(report)
        if meter is not None:  # a verb that does not measure itself (drift, scrub, encrypt, ...)
            attach(report, {**(placement.record() if placement else {}), **meter.result()})
        metrics = report.gate_metrics() if hasattr(report, "gate_metrics") else {}
        if stage.gate_first is None:
            checked = judge(stage_name, gates, metrics)
        if ctx.artifact is not before:  # what later gates judge was measured on the artifact they see
            ctx.metrics = {}
        ctx.metrics.update(metrics)
        ok = all(g["passed"] for g in checked)
        results.append(StageResult(stage_name, stage.verb, "passed" if ok else "failed", time.perf_counter() - t0,
                                   checked, report.to_dict(), getattr(report, "cost", None)))
        if not ok:
            status, message = "failed", gate_message(stage_name, checked, "later stages did not run.")
            break
    done = {r.name for r in results}
    results += [StageResult(n, s.verb, "skipped") for n, s, *_ in steps if n not in done]

    final = str(ctx.artifact.path) if ctx.artifact else None
    plaintext, removed = [], []
    if ctx.sealed:
        for folder in plaintext_artifacts(ctx):
            inside = out.resolve() in folder.resolve().parents
            if ctx.remove_plaintext and status == "passed" and inside:
                shutil.rmtree(folder)
                removed.append(str(folder))
            else:
                plaintext.append(str(folder))
        final = None if final in removed else final
    run = RunReport(name=name, out=str(out), status=status, stages=results, html_path=str(out / "report.html"),
                    message=message, artifact=final, sealed=ctx.sealed, plaintext_copies=plaintext,
                    removed_plaintext=removed)
    run.cost = add_up({s.name: s.cost for s in results})  # the run's total: times and energy summed, peaks the largest
    write_page(out / "report.html", [run, *reports], title=f"tamer run · {name}", subtitle=f"task {ctx.task}")
    tmp = out / ".report.json.tmp"
    tmp.write_text(run.to_json())
    os.replace(tmp, out / "report.json")
    if status != "passed":
        error = failure or GateFailed(f"{message} Report: {out / 'report.html'}")
        error.report = run  # the CLI prints it with --json
        raise error
    return run


def write_report(path: str | Path, out: str | Path | None = None, key_file: str | None = None,
                 passphrase_env: str | None = None) -> Path:
    """`tamer report`: write the HTML page of an artifact (what its manifest records, the report of the verb that wrote it, and
    its evaluation on the test split now) or of a run folder (its stages and gates, and each artifact it wrote).
    Default: PATH.html beside an artifact (never inside it: an artifact is exactly its listed files),
    PATH/report.html for a run."""
    from .api import evaluate, load
    from .report import write_page
    from .report.lineage import LineageReport

    path = Path(path)
    if (path / "report.json").is_file() and not (path / "manifest.json").is_file():
        return run_page(path, Path(out) if out else path / "report.html")
    if not path.exists():
        raise UsageError(f"{str(path)!r} does not exist; give an artifact folder or a run folder (`tamer run --out`).")
    artifact = load(path, key_file=key_file, passphrase_env=passphrase_env)
    sections = [LineageReport.from_artifact(artifact)]
    verb = artifact.manifest.get("verb")
    if verb == "train" and "privacy" in artifact.manifest:
        from .protection.privacy import PrivacyReport

        sections.append(PrivacyReport.from_artifact(artifact))
    elif verb == "train":
        from .training import TrainReport

        sections.append(TrainReport.from_artifact(artifact))
    elif verb == "federate":
        from .protection.federated import FederateReport

        sections.append(FederateReport.from_artifact(artifact))
    sections.append(evaluate(artifact))
    target = Path(out) if out else path.with_name(path.name + ".html")
    return write_page(target, sections, title=f"tamer · {artifact.task} · {artifact.id}", subtitle=str(path))
