"""`tamer serve --alias production`: the registry alias names what is served, and a promotion or a rollback is
hot-swapped in at the next poll without a restart; an unknown alias is refused before serving (exit 2)."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx
from conftest import ServeProcess, wait_ready

import tamer


def _served(url: str) -> str:
    return httpx.get(url + "/v1/model", timeout=30).json()["id"]


def _wait_for(url: str, model: str, seconds: float = 90) -> str:
    end = time.monotonic() + seconds
    while (now := _served(url)) != model and time.monotonic() < end:
        time.sleep(0.1)
    return now


def test_serving_an_alias_follows_promotions_and_rollbacks(digits_artifact, digits_b, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("TAMER_REGISTRY_URL", url)
    tamer.api.add(digits_artifact.path)
    tamer.api.add(digits_b.path)
    tamer.promote(digits_artifact.id, "production", "first")
    server = ServeProcess("--alias", "production", "--no-auth", "--poll-seconds", "0.2",
                          env={"TAMER_REGISTRY_URL": url})
    try:
        wait_ready(server.url)
        assert _served(server.url) == digits_artifact.id
        tamer.promote(digits_b.id, "production", "better")
        assert _wait_for(server.url, digits_b.id) == digits_b.id
        tamer.rollback("production")
        assert _wait_for(server.url, digits_artifact.id) == digits_artifact.id
        code, _ = server.terminate()
        assert code == 0
    finally:
        server.kill()


def test_an_unknown_alias_is_refused_before_serving(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tamer", "serve", "--alias", "nowhere", "--no-auth", "--port", "0"],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "TAMER_REGISTRY_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    assert done.returncode == 2, done.stderr
    assert "nowhere" in done.stderr and len(done.stderr.strip().splitlines()) == 1
