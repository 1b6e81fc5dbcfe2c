"""Live servers for the serving tests: a real uvicorn on a free loopback port (in a thread, or a `tamer serve`
subprocess), tiny artifacts of each kind, and key files."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import tamer
from tamer.serving import make_api_key

SRC = Path(__file__).resolve().parents[2] / "src"


def wait_ready(url: str, timeout: float = 120.0, headers: dict | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} was not ready within {timeout} s")


class LiveServer:
    """uvicorn serving `app` in a thread on a free loopback port; `stop()` shuts it down gracefully."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def serve(artifact, **options) -> LiveServer:
    """A live server for `artifact` without keys (keys: pass api_key_file=..., auth=True)."""
    auth = options.pop("auth", False)
    return LiveServer(tamer.api.serve_app(getattr(artifact, "path", artifact), auth=auth, **options))


class ServeProcess:
    """`tamer serve ... --port 0 --json` as a subprocess: its URL read from the line it prints."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "tamer", "serve", *args, "--port", "0", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True,  # kill() reaches its worker processes too
                                     env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})})
        import json

        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"tamer serve did not start: {self.proc.stderr.read()}")
        self.url = json.loads(line)["url"]

    def terminate(self, timeout: float = 60) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def kill(self) -> None:
        """SIGKILL the server and every process it started (workers would outlive their parent and hold its pipes)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.returncode is None:
            self.proc.communicate()


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    """(file, client key, admin key)."""
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    return path, make_api_key(path, "alice"), make_api_key(path, "ops", "admin")


@pytest.fixture(scope="session")
def digits_b(tmp_path_factory):
    """A second digits model (another seed): what a hot swap swaps in."""
    return tamer.train("digits", epochs=2, seed=1, out=tmp_path_factory.mktemp("digits-b") / "b", progress=False)




@pytest.fixture(scope="session")
def digit_images():
    from sklearn.datasets import load_digits

    return load_digits().images[:12]
