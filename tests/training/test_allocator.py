"""--allocator: the workers --nproc starts run on tcmalloc (or jemalloc) where installed, preloaded, and the run record
says which; an allocator this machine lacks, or one asked of a running single process, is refused in one sentence."""
import json
import os
import subprocess
import sys

import pytest

import tamer
from tamer.cli import main
from tamer.errors import UsageError
from tamer.training import allocator

HAVE_TCMALLOC = allocator.find("tcmalloc") is not None
# CI installs libtcmalloc-minimal4 (.ci/run); elsewhere the cases that need it are skipped
needs_tcmalloc = pytest.mark.skipif(not HAVE_TCMALLOC and not os.environ.get("CI"), reason="no tcmalloc here")

CHILD = "import pathlib; maps = pathlib.Path('/proc/self/maps').read_text(); print('tcmalloc' in maps, 'jemalloc' in maps)"


def _child_maps(env):
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


@needs_tcmalloc
def test_auto_preloads_tcmalloc_into_a_child():
    assert _child_maps(allocator.worker_env("auto", dict(os.environ))) == ["True", "False"]
    assert _child_maps(allocator.worker_env("system", dict(os.environ))) == ["False", "False"]


def test_a_user_preload_is_kept_after_ours(monkeypatch):
    monkeypatch.setattr(allocator, "find", lambda name: f"/opt/lib{name}.so.4")
    env = allocator.worker_env("auto", {"LD_PRELOAD": "/opt/mine.so"})
    assert env["LD_PRELOAD"] == "/opt/libtcmalloc.so.4:/opt/mine.so"


@pytest.mark.parametrize("choice, given, expected", [
    ("auto", "/u/libjemalloc.so.2:/opt/mine.so", "/u/libjemalloc.so.2:/opt/mine.so"),  # the user's allocator stays
    ("system", "/u/libtcmalloc_minimal.so.4 /opt/mine.so", "/opt/mine.so"),  # system takes a preloaded one out
    ("system", "/u/libjemalloc.so.2", None),
    ("jemalloc", "/u/libtcmalloc_minimal.so.4:/opt/mine.so", "/opt/libjemalloc.so.4:/opt/mine.so"),  # replaced
    ("tcmalloc", "/opt/libtcmalloc.so.4", "/opt/libtcmalloc.so.4"),  # not twice
])
def test_one_allocator_is_preloaded_whatever_was_there(monkeypatch, choice, given, expected):
    monkeypatch.setattr(allocator, "find", lambda name: f"/opt/lib{name}.so.4")
    env = allocator.worker_env(choice, {"LD_PRELOAD": given, "A": "1"})
    assert env.get("LD_PRELOAD") == expected and env["A"] == "1"
    named = [allocator.named_in(e) for e in (env.get("LD_PRELOAD") or "").split(":")]
    assert len([n for n in named if n]) <= 1


def test_a_missing_allocator_is_refused_with_how_to_install_it(monkeypatch):
    monkeypatch.setattr(allocator, "find", lambda name: None)
    with pytest.raises(UsageError, match=r"--allocator jemalloc: no libjemalloc .*apt-get install libjemalloc2"):
        allocator.worker_env("jemalloc", {})
    assert allocator.worker_env("auto", {"A": "1"}) == {"A": "1"}  # auto falls back to the system's


def test_one_process_cannot_change_its_allocator(tmp_path, capsys):
    if allocator.in_use() == "jemalloc":
        pytest.skip("this test process runs on jemalloc")
    assert main(["train", "digits", "--epochs", "1", "--allocator", "jemalloc", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allocator jemalloc applies to the workers" in err
    assert not (tmp_path / "a").exists()


def test_the_allocator_is_not_part_of_the_artifact_id(tmp_path):
    a = tamer.train("digits", epochs=1, progress=False, out=tmp_path / "a", allocator="system")
    b = tamer.train("digits", epochs=1, progress=False, out=tmp_path / "b")
    assert a.id == b.id and "allocator" not in a.manifest["options"]
    assert a.manifest["run"]["allocator"] == allocator.in_use()


@needs_tcmalloc
def test_torchrun_workers_run_on_tcmalloc(tmp_path, capfd):
    assert main(["train", "digits", "--nproc", "2", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
                 "--out", str(tmp_path / "a"), "--json", "--quiet"]) == 0
    assert json.loads(capfd.readouterr().out)["report"]["cost"]["cpu_s_children"] > 0  # the workers' own time
    run = tamer.load(tmp_path / "a").manifest["run"]
    assert run["world_size"] == 2 and run["allocator"] == "tcmalloc" and run["allocator_per_rank"] == ["tcmalloc"] * 2
    assert len(run["peak_rss_bytes_per_rank"]) == 2
