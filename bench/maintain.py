"""Maintenance benchmarks, one table of rows from each section (`--only SECTION` runs one):

  registry  registrations and promotions per second: tamer's registry on SQLite (one writer, and two writer
            processes at once) and on PostgreSQL (two writers), against MLflow's model registry on the same kind
            of SQLite file doing the same registrations (a model version with the task, format and parent as tags)
            and promotions (an alias moved). MLflow is a bench-only peer kept out of the project's environment:
            it runs in its own venv (--mlflow-python, default /work/venv-mlflow/bin/python); without it, its rows
            say so and are skipped.

  update    a MiniLM sentiment model trained on yelp reviews, promoted to production, then `tamer update` with
            the amazon reviews: accuracy on amazon and on yelp before and after, promoted or not; and a challenger
            trained on the amazon reviews with their labels shuffled, which must be refused (production unchanged).
            No peer does this in one call (MLflow registers, it does not judge); the rows are tamer's alone.

A section is a function `(args) -> list[Row]` in SECTIONS, with its options added by the function in ARGUMENTS, so
another section (drift) adds its rows to the same table.

    .venv/bin/python bench/maintain.py [--only registry] [--json] [--n 200] [--postgres-url URL]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@dataclass
class Row:
    section: str
    measure: str
    tamer: float | None
    peer: float | None = None
    peer_name: str = ""
    unit: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.tamer / self.peer if self.tamer is not None and self.peer else None


PHASES = {"register": "registrations", "promote": "promotions"}


# -- registry ----------------------------------------------------------------------------------------------------
TAMER_WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[5])
from tamer.maintenance import Registry
url, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
reg = Registry(url)
time.sleep(max(0.0, start - time.time()))
t0 = time.time()
for i in range(n):
    aid = f"{name}{i:06d}"
    reg.register({"id": aid, "task": {"name": "digits"}, "format": "int8", "verb": "compress",
                  "parents": [f"{name}{i - 1:06d}"] if i else [], "metrics": {"test": {"accuracy": 0.9}}},
                 f"/artifacts/{aid}")
t1 = time.time()
for i in range(n):
    reg.promote(f"{name}{i:06d}", "production", reason="bench")
t2 = time.time()
print(json.dumps({"register": [t0, t1], "promote": [t1, t2], "errors": 0}))
"""

MLFLOW_WORKER = r"""
import json, logging, sys, time, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
from mlflow import MlflowClient
url, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
client = MlflowClient(tracking_uri=url, registry_uri=url)
if name == "init":
    client.create_registered_model("bench")
    print(json.dumps({"ok": True}))
    sys.exit()
time.sleep(max(0.0, start - time.time()))
errors, versions = 0, []
t0 = time.time()
for i in range(n):
    try:
        v = client.create_model_version("bench", source=f"/artifacts/{name}{i:06d}",
                                        tags={"task": "digits", "format": "int8", "parent": f"{name}{i - 1:06d}"})
        versions.append(v.version)
    except Exception:
        errors += 1
t1 = time.time()
for v in versions:
    try:
        client.set_registered_model_alias("bench", "production", v)
    except Exception:
        errors += 1
t2 = time.time()
import mlflow
print(json.dumps({"register": [t0, t1], "promote": [t1, t2], "errors": errors, "version": mlflow.__version__,
                  "registered": len(versions)}))
"""


def _writers(python: str, code: str, url: str, names: list[str], n: int) -> dict:
    """Start one process per name, all timing from the same moment (imports and connecting are outside it):
    each phase's rate is the operations of all of them over the span from the first start to the last end."""
    start = time.time() + 6.0
    procs = [subprocess.Popen([python, "-c", code, url, name, str(n), str(start), str(ROOT / "src")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for name in names]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    result = {"errors": sum(o["errors"] for o in outs), "version": outs[0].get("version", "")}
    for phase in ("register", "promote"):
        span = max(o[phase][1] for o in outs) - min(o[phase][0] for o in outs)
        result[phase] = len(names) * n / span
    return result


def _postgres_url(args) -> str | None:
    url = args.postgres_url or os.environ.get("TAMER_TEST_POSTGRES_URL")
    if not url:
        return None
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        schema = f"bench_{os.getpid()}"
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - no server: the row says so
        print(f"PostgreSQL at {url.split('@')[-1]} does not answer ({type(exc).__name__}); its row is skipped", file=sys.stderr)
        return None
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def registry_rows(args) -> list[Row]:
    from tamer.maintenance import Registry

    work = Path(tempfile.mkdtemp(prefix="tamer-bench-maintain-"))
    rows: list[Row] = []
    mlflow_ok = Path(args.mlflow_python).is_file()
    if not mlflow_ok:
        print(f"MLflow's venv {args.mlflow_python} is missing (python3 -m venv /work/venv-mlflow && "
              f"/work/venv-mlflow/bin/pip install mlflow); its rows are skipped", file=sys.stderr)
    for writers in (1, 2):
        names = [f"w{i}x" for i in range(writers)]
        url = f"sqlite:///{work / f'tamer-{writers}.db'}"
        Registry(url).close()  # schema first, outside the timing
        ours = _writers(sys.executable, TAMER_WORKER, url, names, args.n)
        theirs, note = {}, ""
        if mlflow_ok:
            murl = f"sqlite:///{work / f'mlflow-{writers}.db'}"
            try:
                _init = subprocess.run([args.mlflow_python, "-c", MLFLOW_WORKER, murl, "init", "0", "0"],
                                       capture_output=True, text=True, timeout=600)
                if _init.returncode != 0:
                    raise RuntimeError(_init.stderr.strip().splitlines()[-1])
                theirs = _writers(args.mlflow_python, MLFLOW_WORKER, murl, names, args.n)
                note = f"MLflow errors: {theirs['errors']}" if theirs["errors"] else ""
            except Exception as exc:  # noqa: BLE001 - the peer failing is a result to print, not a crash
                note = f"MLflow failed: {exc}"
        peer = f"MLflow {theirs.get('version', '')}".strip()
        for phase in ("register", "promote"):
            rows.append(Row("registry", f"SQLite, {writers} writer{'s' if writers > 1 else ''}: {PHASES[phase]} per second",
                            ours[phase], theirs.get(phase), peer, "1/s", note))
    pg = _postgres_url(args)
    if pg:
        Registry(pg).close()
        ours = _writers(sys.executable, TAMER_WORKER, pg, ["w0x", "w1x"], args.n)
        for phase in ("register", "promote"):
            rows.append(Row("registry", f"PostgreSQL, 2 writers: {PHASES[phase]} per second", ours[phase], unit="1/s",
                            note="tamer only (MLflow's row is on SQLite)"))
    else:
        rows.append(Row("registry", "PostgreSQL, 2 writers", None, note="skipped: no --postgres-url / TAMER_TEST_POSTGRES_URL answers"))
    return rows


def registry_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--n", type=int, default=200, help="registrations (and promotions) per writer")
    ap.add_argument("--postgres-url", help="PostgreSQL for the registry rows (default: $TAMER_TEST_POSTGRES_URL)")
    ap.add_argument("--mlflow-python", default="/work/venv-mlflow/bin/python", help="python of MLflow's own venv")


def update_rows(args) -> list[Row]:
    import numpy as np

    shared = ROOT.parent / "shared" / "data" / "sentiment"
    work = Path(tempfile.mkdtemp(prefix="tamer-bench-update-"))
    os.environ["TAMER_REGISTRY_URL"] = f"sqlite:///{work / 'registry.db'}"
    import tamer
    import tamer.api

    lines = (shared / "amazon_cells_labelled.txt").read_text().splitlines()
    labels = [line.rsplit("\t", 1)[1] for line in lines]
    shuffled = np.random.default_rng(0).permutation(labels)
    (work / "amazon_shuffled.txt").write_text("".join(f"{line.rsplit(chr(9), 1)[0]}\t{y}\n" for line, y in zip(lines, shuffled)))
    t0 = time.perf_counter()
    champion = tamer.train("text-classification", data=str(shared / "yelp_labelled.txt"), encoder=args.update_encoder,
                           epochs=args.update_epochs, max_length=64, out=work / "yelp", progress=False)
    train_s = time.perf_counter() - t0
    tamer.promote(champion.id, "production", "bench: the yelp model")
    t0 = time.perf_counter()
    good = tamer.update("production", shared / "amazon_cells_labelled.txt", out=work / "amazon", progress=False)
    good_s = time.perf_counter() - t0
    if good.promoted:
        tamer.rollback("production")  # the broken challenger is judged against the same champion
    print(good.summary(), file=sys.stderr)
    bad = tamer.update("production", work / "amazon_shuffled.txt", out=work / "broken", progress=False)
    still = tamer.api.show("production")["id"] == champion.id
    c, g = good.scores["champion"], good.scores["challenger"]
    enc = args.update_encoder
    return [Row("update", f"{enc} yelp model: amazon test accuracy, champion -> challenger", g["new"]["accuracy"],
                c["new"]["accuracy"], "champion", note=f"promoted: {good.promoted}; drift p = {good.drift_p_value:.2g}"),
            Row("update", f"{enc}: yelp (old) test accuracy, champion -> challenger", g["old"]["accuracy"],
                c["old"]["accuracy"], "champion", note="forgetting gate: at most 0.02 lower"),
            Row("update", f"{enc}: update wall time (drift + fine-tune + scoring)", good_s, train_s, "first training", "s"),
            Row("update", "challenger on shuffled amazon labels", float(bad.promoted), note=
                f"refused: {not bad.promoted}; production unchanged: {still}; " + bad.decision.split(':', 1)[-1][:120])]


def update_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--update-encoder", default="minilm", help="encoder of the update rows' model (minilm or tiny)")
    ap.add_argument("--update-epochs", type=int, default=1, help="epochs of the yelp model before the update")


# -- the table -----------------------------------------------------------------------------------------------------
SECTIONS = {"registry": registry_rows, "update": update_rows}
ARGUMENTS = [registry_arguments, update_arguments]


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(SECTIONS), help="run one section")
    ap.add_argument("--json", action="store_true")
    for add in ARGUMENTS:
        add(ap)
    args = ap.parse_args()
    rows = [row for name, section in SECTIONS.items() if args.only in (None, name) for row in section(args)]
    if args.json:
        print(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2))
        return
    print("| section | measure | tamer | peer | ratio (tamer / peer) | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        peer = f"{_num(r.peer)} ({r.peer_name})" if r.peer is not None else "—"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        print(f"| {r.section} | {r.measure} | {_num(r.tamer)} | {peer} | {ratio} | {r.note} |")


if __name__ == "__main__":
    main()
