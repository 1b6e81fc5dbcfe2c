"""The `tamer` command: one thin subcommand per verb. Parses, calls the verb, prints for people or as JSON."""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from typing import Any, Sequence

from . import cli_device, cli_drift, cli_maintenance, cli_protection, cli_robustness, cli_serving
from .config import add_config_arguments
from .errors import TamerError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting, so errors look alike."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`).")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from .protection.config import PrivacyConfig
    from .training import TrainConfig

    p.add_argument("task", help="a task name (see `tamer tasks`)")
    p.add_argument("--out", help="artifact folder to write (default: artifacts/TASK-TIME)")
    p.add_argument("--data", help="data file for the task")
    add_config_arguments(p, TrainConfig)
    add_config_arguments(p, PrivacyConfig)  # --private --epsilon --delta --max-grad-norm: DP-SGD (protection/privacy.py)


def _sealed_input_arguments(p: argparse.ArgumentParser) -> None:
    """--key-file / --passphrase-env: every verb that reads an artifact opens a sealed one with them (and only then)."""
    p.add_argument("--key-file", help="key file of an encrypted artifact (see `tamer keygen`)")
    p.add_argument("--passphrase-env", help="environment variable holding the passphrase of an encrypted artifact")


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact folder")
    p.add_argument("--data", help="data file (default: the test split the artifact was trained with)")
    p.add_argument("--eval-batch-size", type=int, default=256, help="examples per evaluation step (default: 256)")
    _sealed_input_arguments(p)


def _federate_arguments(p: argparse.ArgumentParser) -> None:
    from .protection.config import PrivacyConfig
    from .protection.federated import FederateConfig

    p.add_argument("task", help="a task name (see `tamer tasks`)")
    p.add_argument("--out", help="artifact folder to write (default: artifacts/TASK-TIME)")
    p.add_argument("--data", help="data file for the task")
    add_config_arguments(p, FederateConfig)
    add_config_arguments(p, PrivacyConfig, skip=("max_grad_norm",))  # federate clips updates: --max-update-norm


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe YAML (default: the built-in one)")
    p.add_argument("--out", help="run folder (default: runs/NAME-TIME)")


def _compress_arguments(p: argparse.ArgumentParser) -> None:
    from .compression.config import CompressConfig

    p.add_argument("artifact", help="artifact folder")
    p.add_argument("--out", help="artifact folder to write (default: artifacts/TASK-TIME); sealed with the same "
                                 "key when --key-file / --passphrase-env is given")
    add_config_arguments(p, CompressConfig)
    _sealed_input_arguments(p)


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", action="append", metavar="TEXT", help="a text (or prompt) to predict on; repeat for more")
    source.add_argument("--input-file", metavar="FILE", help="one input per line")
    source.add_argument("--index", type=int, metavar="N", help="example N of the artifact's test split (its label shown)")
    p.add_argument("--max-new-tokens", type=int, default=20, help="tokens a language model generates (default: 20)")
    _sealed_input_arguments(p)


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="RUN_OR_ARTIFACT", help="an artifact folder or a run folder (`tamer run --out`)")
    p.add_argument("--out", help="HTML file to write (default: PATH/report.html for a run, PATH.html for an artifact)")
    _sealed_input_arguments(p)


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    from .explanation.config import ExplainConfig

    p.add_argument("artifact", help="artifact folder")
    from .explanation.config import GLOBAL_EXAMPLES

    p.add_argument("--out", help="folder to write (default: explanations/TASK-TIME)")
    add_config_arguments(p, ExplainConfig)
    p.add_argument("--global", dest="global_examples", action="store_const", const=GLOBAL_EXAMPLES,
                   help=f"add the per-class global view over {GLOBAL_EXAMPLES} test examples (same as "
                        f"--global-examples {GLOBAL_EXAMPLES}; one attribution run each)")
    _sealed_input_arguments(p)


# verb: (help, description, adds its arguments). The arguments come from config dataclasses whose packages may
# import torch, so `main` adds only the chosen verb's: `tamer encrypt` never loads torch.
_SUBCOMMANDS = {
    "tasks": ("list the registered tasks and their options", None, lambda p: None),
    "train": ("train a task's model and write an artifact",
              "Train TASK's model. Besides the flags below, every option of the task (see `tamer tasks`) is accepted "
              "as --OPTION VALUE.", _train_arguments),
    "evaluate": ("metrics of an artifact on its test split or a data file", None, _evaluate_arguments),
    "keygen": ("write a new random AES-256 key file", None, cli_protection.keygen_arguments),
    "encrypt": ("seal an artifact with AES-256-GCM (manifest stays readable, authenticated)", None, cli_protection.crypt_arguments("encrypt")),
    "decrypt": ("restore an encrypted artifact; any change or a wrong key is refused", None, cli_protection.crypt_arguments("decrypt")),
    "federate": ("federated averaging over simulated clients (one process), optional client-level DP",
                 "FedAvg on TASK. Every option of the task (see `tamer tasks`) is accepted as --OPTION VALUE.",
                 _federate_arguments),
    "scrub": ("replace PII (names, addresses, e-mail, phones, cards, IDs, ...) in TXT/TSV/CSV/JSONL, streamed", None, cli_protection.scrub_arguments),
    "run": ("run a recipe (default on digits: train -> evaluate -> explain -> compress -> encrypt, one HTML report)", None,
            _run_arguments),
    "compress": ("quantize (int8/int4), prune, distill or export ONNX; writes a child artifact",
                 "Each step (distill -> prune -> quantize -> export) writes a child artifact naming its parent; "
                 "intermediate steps are written beside --out as OUT.STEP.", _compress_arguments),
    "predict": ("labels and probabilities (or generated text) of an artifact on inputs", None, _predict_arguments),
    "report": ("write the HTML page of an artifact or a run folder", None, _report_arguments),
    "explain": ("attributions with completeness, faithfulness and pictures (HTML, JSON, SVG / PNG)", None, _explain_arguments),
    "attack": ("adversarial examples: fgsm, pgd, square, noise (images); charflip, wordswap (texts)", None,
               cli_robustness.attack_arguments),
    "harden": ("adversarial training (pgd, trades); writes a child artifact", None, cli_robustness.harden_arguments),
    "stability": ("flip rate under noise, agreement, calibration error; --calibrate writes a child", None,
                  cli_robustness.stability_arguments),
    "registry": ("the model registry: list, show, lineage, history, promote, rollback, tag, add", None, cli_maintenance.registry_arguments),
    "rollback": ("point an alias back at its previous artifact (as `registry rollback`)", None, cli_maintenance.rollback_arguments),
    "update": ("retrain a challenger on new data; promote it only if every gate passes", None, cli_maintenance.update_arguments),
    "drift": ("has the data drifted? per-column tests for tables; MMD and a domain classifier", None, cli_drift.drift_arguments),
    "serve": ("serve an artifact over HTTP: predict, OpenAI completions, batching, keys, metrics, hot swap", None,
              cli_serving.serve_arguments),
}


# verbs whose arguments and call live in a face module of their own: its run(args, progress) -> (payload, text)
_FACES = {"attack": cli_robustness, "harden": cli_robustness, "stability": cli_robustness, "registry": cli_maintenance,
          "rollback": cli_maintenance, "update": cli_maintenance, "drift": cli_drift, "keygen": cli_protection,
          "encrypt": cli_protection, "decrypt": cli_protection, "scrub": cli_protection}


def build_parser(only: str | None = None, help_task: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only=VERB`) one whose other subcommands have no arguments yet (`""`: none have).
    `help_task` adds that task's own options to the help of train / federate (they are parsed from the rest)."""
    from .version import __version__

    parser = _Parser(prog="tamer", description="Take a PyTorch model through the life of a large model.")
    parser.add_argument("--version", action="version", version=f"tamer {__version__}")
    _common(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, (text, description, add_arguments) in _SUBCOMMANDS.items():
        p = sub.add_parser(verb, help=text, description=description)
        _common(p)
        if only is None or only == verb:
            add_arguments(p)
            if verb in cli_device.MODEL_VERBS:
                cli_device.device_arguments(p)
            if help_task and verb in ("train", "federate"):
                from .tasks import get_task_class

                cls = get_task_class(help_task)
                add_config_arguments(p.add_argument_group(f"options of task {help_task} ({cls.description})"),
                                     cls.Config, skip=("data",))
    return parser


def _help_task(argv: Sequence[str]) -> str | None:
    """The task named in `tamer train TASK --help` (or federate), whose options the help then lists."""
    if not ({"-h", "--help"} & set(argv)):
        return None
    verb = _verb_in(argv)
    if verb not in ("train", "federate"):
        return None
    rest = argv[list(argv).index(verb) + 1:]
    return next((a for a in rest if not a.startswith("-")), None)


def _verb_in(argv: Sequence[str]) -> str:
    """The subcommand named in `argv` (the top-level flags take no values), or "" when there is none."""
    verb = next((a for a in argv if not a.startswith("-")), "")
    return verb if verb in _SUBCOMMANDS else ""


def _dispatch_federate(args: argparse.Namespace, extra: list[str] = ()) -> int:
    import tamer.api as api

    from .protection.config import PrivacyConfig
    from .protection.federated import FederateConfig

    options = {f.name: getattr(args, f.name) for cls in (FederateConfig, PrivacyConfig)
               for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    options.update(_task_options(args.task, extra))
    if args.data is not None:
        options["data"] = args.data
    artifact = api.federate(args.task, out=args.out, progress=not (args.quiet or args.json), **options,
                            **cli_device.placement(args))
    report = artifact.report
    _emit(args, {"artifact": str(artifact.path), "id": artifact.id,
                 "headline": _headline(artifact.task, artifact.metrics.get("test", {})), "report": report.to_dict()},
          report.summary())
    return 0


def _task_options(task: str, extra: list[str]) -> dict[str, Any]:
    """`--option value` pairs after the known flags configure the task itself."""
    from .tasks import get_task_class

    cls = get_task_class(task)
    tp = _Parser(prog=f"tamer train {task}", add_help=False)
    add_config_arguments(tp, cls.Config, skip=("data",))
    ns = tp.parse_args(extra)
    return {k: v for k, v in vars(ns).items() if v is not None}


def _headline(task: str, metrics: dict[str, Any], split: str = "test") -> dict[str, Any]:
    """The one number a verb's --json leads with, always at `headline`: the task's metric on the test split (or the
    data file evaluated), e.g. {"metric": "accuracy", "value": 0.97, "split": "test"}."""
    from .tasks import get_task_class

    try:
        name = get_task_class(task).metric
    except TamerError:  # a task registered in another process: no name to pick
        name = next((k for k, v in metrics.items() if isinstance(v, (int, float))), None)
    return {"metric": name, "value": metrics.get(name) if name else None, "split": split}


def _emit(args, payload: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(payload, default=str))
    else:
        print(text)


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    from . import api, pipeline

    progress = not (args.quiet or args.json)
    if args.verb == "tasks":
        rows = api.list_tasks()
        text = "\n".join(f"{t['name']:<22}{t['description']}\n{'':<22}options: "
                         + ", ".join(f"--{k.replace('_', '-')} ({v})" for k, v in t["options"].items()) for t in rows)
        _emit(args, {"tasks": rows}, text)
        return 0
    if args.verb == "train":
        from .training import TrainConfig

        from .protection.config import PrivacyConfig

        options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}
        options.update({f.name: getattr(args, f.name) for f in dataclasses.fields(PrivacyConfig) if getattr(args, f.name) is not None})
        options.update(_task_options(args.task, extra))
        if args.data is not None:
            options["data"] = args.data
        artifact = api.train(args.task, out=args.out, progress=progress, **options)
        if artifact is None:  # a torchrun worker other than rank 0, or a machine other than the one rank 0 is on
            return 0
        report = artifact.report
        _emit(args, {"artifact": str(artifact.path), "id": artifact.id,
                     "headline": _headline(artifact.task, artifact.metrics.get("test", {})), "report": report.to_dict()},
              report.summary())
        return 0
    if args.verb == "federate":
        return _dispatch_federate(args, extra)
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `tamer {args.verb} --help`).")
    if args.verb == "evaluate":
        report = api.evaluate(args.artifact, data=args.data, eval_batch_size=args.eval_batch_size,
                                key_file=args.key_file, passphrase_env=args.passphrase_env, **cli_device.placement(args))
        _emit(args, {"headline": _headline(report.task, report.metrics, "test" if report.data == "test split" else report.data),
                     **report.to_dict()}, report.summary())
        return 0
    if args.verb == "explain":
        from .config import config_from_args
        from .explanation.config import ExplainConfig

        report = api.explain(args.artifact, config_from_args(ExplainConfig, args), out=args.out, progress=progress,
                               key_file=args.key_file, passphrase_env=args.passphrase_env, **cli_device.placement(args))
        _emit(args, {**report.to_dict(), "metrics": report.gate_metrics()}, report.summary())
        return 0
    if args.verb in _FACES:
        _emit(args, *_FACES[args.verb].run(args, progress))
        return 0
    if args.verb == "serve":
        return cli_serving.run(args)
    if args.verb == "compress":
        from .compression.config import CompressConfig
        from .config import config_from_args

        artifact = api.compress(args.artifact, config_from_args(CompressConfig, args), out=args.out,
                                  progress=progress, key_file=args.key_file, passphrase_env=args.passphrase_env,
                                  **cli_device.placement(args))
        report = artifact.report
        _emit(args, {"artifact": str(artifact.path), "id": artifact.id,
                     "headline": _headline(artifact.task, artifact.metrics.get("test", {})),
                     **report.to_dict(), "metrics": report.gate_metrics()},
              report.summary())
        return 0
    if args.verb == "predict":
        inputs = args.input
        if args.input_file is not None:
            from pathlib import Path

            try:
                inputs = [line for line in Path(args.input_file).read_text(encoding="utf-8").splitlines() if line.strip()]
            except OSError as exc:
                raise UsageError(f"--input-file {args.input_file!r} cannot be read ({exc.strerror}).") from None
        artifact = api.load(args.artifact, key_file=args.key_file, passphrase_env=args.passphrase_env)
        rows, cost = api.predict(artifact, inputs, index=args.index, max_new_tokens=args.max_new_tokens, with_cost=True,
                                 **cli_device.placement(args))
        text = "\n".join(r["generated_text"] if "generated_text" in r else
                         (f"{r['label']} {r['score']:.4f}" if "label" in r else f"{r['value']:.6g}")
                         + (f" (expected {r['expected']})" if "expected" in r else "") for r in rows)
        _emit(args, {"artifact": str(artifact.path), "id": artifact.id, "predictions": rows, "cost": cost}, text)
        return 0
    if args.verb == "report":
        page = pipeline.write_report(args.path, out=args.out, key_file=args.key_file, passphrase_env=args.passphrase_env)
        _emit(args, {"html": str(page)}, f"wrote {page}")
        return 0
    if args.verb == "run":
        report = pipeline.run(args.recipe, out=args.out, progress=progress)
        _emit(args, report.to_dict(), report.summary())
        return 0
    raise UsageError("no verb given; try `tamer --help`.")


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C (temporary folders and half-written outputs are removed) instead of killing
    the process where it stands."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    debug = "--debug" in argv
    want_json = "--json" in argv
    try:
        parser = build_parser(only=_verb_in(argv), help_task=_help_task(argv))
        args, extra = parser.parse_known_args(argv)
        if args.verb is None:
            parser.print_help()
            return 2
        return _dispatch(args, extra)
    except TamerError as exc:
        if debug:
            raise
        report = getattr(exc, "report", None)
        if want_json:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__,
                              **({"report": report.to_dict()} if report is not None else {})}, default=str))
        elif report is not None:
            print(report.summary())
        print(f"tamer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tamer: interrupted; nothing half-written was kept.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in tamer, not the user's input: one line, the traceback only with --debug
        if debug:
            raise
        message = " ".join(str(exc).split())[:300]
        print(f"tamer: error: internal error in `tamer {_verb_in(argv) or ''}` ({type(exc).__name__}: {message}); "
              "rerun with --debug for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
