"""Running the service under uvicorn: the socket is bound first (so `--port 0` can say which port it got), one
process or K worker processes share it (their metrics in one private directory, summed by whichever answers
/metrics), and SIGTERM drains: uvicorn stops accepting, answers every request it accepted, the batcher finishes its
queue, and the process exits 0."""
from __future__ import annotations

import signal
import socket
from typing import Any, Callable

import uvicorn
from uvicorn.supervisors import Multiprocess

from ..errors import UsageError
from .config import LOOPBACK, ServeConfig
from .metrics import forget_exited, shared_directory


def bind(config: ServeConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {config.host}:{config.port} ({exc.strerror}); pick another --host or "
                         f"--port.") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def run(app: Any, config: ServeConfig, sock: socket.socket, announce: Callable[[str], None] | None = None,
        factory: bool = False) -> None:
    """Serve `app` (an app, or with `factory` the import string of a function returning one, which each worker
    process calls) on `sock` until SIGTERM or Ctrl-C; returns once everything accepted has been answered."""
    uv = uvicorn.Config(app, factory=factory, workers=config.workers, log_level="info", access_log=False,
                        timeout_graceful_shutdown=config.drain_seconds or None, lifespan="on")
    host, port = sock.getsockname()[:2]
    if announce:
        announce(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
    # uvicorn re-raises the signal it shut down on once done; by then the shutdown was graceful: exit 0
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if config.workers > 1:
            with shared_directory() as metrics:  # set before the workers are spawned, which import prometheus-client
                Workers(uv, [sock], metrics).run()
        else:
            uvicorn.Server(uv).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


class Workers(Multiprocess):
    """uvicorn's supervisor of K worker processes (it restarts one that dies), which also forgets the live-worker
    gauges of each worker that exited, so /metrics shows the queue and model of the workers alive now."""

    def __init__(self, config: Any, sockets: list[socket.socket], metrics_dir: str):
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        forget_exited(self.metrics_dir, {p.pid for p in self.processes if p.process.is_alive()})
