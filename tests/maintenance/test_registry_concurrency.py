"""Two processes writing at once lose nothing and duplicate nothing; a process killed (SIGKILL) in the middle of a
promotion leaves the alias on the old artifact or the new one, with the event log agreeing. SQLite and PostgreSQL."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry_helpers import fake_manifest
from tamer.maintenance import Registry

WORKER = Path(__file__).with_name("registry_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_two_writers_lose_nothing_and_duplicate_nothing(db_url):
    n = 200
    Registry(db_url).close()  # the schema first, so both writers time the same thing
    workers = [_spawn(db_url, "many", name, str(n)) for name in ("w1x", "w2x")]
    for w in workers:
        _, err = w.communicate(timeout=300)  # a generous hang bound
        assert w.returncode == 0, err
    with Registry(db_url) as reg:
        rows = reg.list_artifacts()
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) == 2 * n + 20  # every registration, the shared ones once
        log = reg.history()
        registered = [e["to_id"] for e in log if e["action"] == "register"]
        assert sorted(registered) == sorted(ids)  # one register event per artifact, none twice
        moves = reg.history("production")
        assert len(moves) == 2 * n  # every promotion, none lost
        assert [m["from_id"] for m in moves[1:]] == [m["to_id"] for m in moves[:-1]]  # each saw the one before
        assert reg.list_aliases()["production"] == moves[-1]["to_id"]
        for name in ("w1x", "w2x"):  # each worker's own promotions in its own order
            mine = [m["to_id"] for m in moves if m["to_id"].startswith(name)]
            assert mine == [f"{name}{i:05d}" for i in range(n)]


@pytest.mark.parametrize("table", ["aliases", "events"])
def test_a_promotion_killed_midway_leaves_the_alias_on_the_old_artifact(db_url, tmp_path, table):
    with Registry(db_url) as reg:
        for aid in ("a", "b"):
            reg.register(fake_manifest(aid), str(tmp_path))
        reg.promote("a", "production")
    worker = _spawn(db_url, "hang", table)
    try:
        assert worker.stdout.readline().strip() == "MID", worker.stderr.read()
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    with Registry(db_url) as reg:
        assert reg.list_aliases() == {"production": "a"}
        assert [e["to_id"] for e in reg.history("production")] == ["a"]
        assert reg.promote("b", "production")["to_id"] == "b"  # the dead writer's lock is gone
        assert reg.list_aliases() == {"production": "b"}


def test_promotions_killed_at_random_moments_leave_old_or_new_never_neither(db_url, tmp_path):
    with Registry(db_url) as reg:
        for aid in ("a", "b"):
            reg.register(fake_manifest(aid), str(tmp_path))
    rng = random.Random(0)
    for _ in range(4):
        worker = _spawn(db_url, "flip")
        assert worker.stdout.readline().strip() == "READY", worker.stderr.read()
        time.sleep(rng.uniform(0.05, 0.4))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        with Registry(db_url) as reg:
            moves = reg.history("production")
            assert moves and reg.list_aliases()["production"] in ("a", "b")
            assert reg.list_aliases()["production"] == moves[-1]["to_id"]  # alias and log moved together
            assert [m["from_id"] for m in moves[1:]] == [m["to_id"] for m in moves[:-1]]
