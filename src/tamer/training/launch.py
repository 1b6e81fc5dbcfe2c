"""`tamer train --nproc N ...` re-runs itself under torchrun (torch.distributed.run) and waits for it."""
from __future__ import annotations

import dataclasses
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..device import resolve_device
from ..errors import JobFailed, UsageError
from ..tasks import Task, get_task_class
from .allocator import worker_env
from .config import TrainConfig

LAUNCH_ONLY = ("nproc", "nnodes", "node_rank", "rdzv", "max_restarts", "allocator")


def _flags(config: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """`--name value` for every field of a config dataclass that differs from its default."""
    out: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip or value is None or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            out += [flag, ",".join(map(str, value))]
        else:
            out += [flag, str(value)]
    return out


def torchrun_command(task: Task, config: TrainConfig, out: Path, show_progress: bool = True) -> list[str]:
    """The torchrun command line that runs `tamer train` on every worker of this machine."""
    try:
        registered = get_task_class(task.name) is type(task)
    except UsageError:
        registered = False
    if not registered:
        raise UsageError(f"task {task.name!r} is not registered by name, so worker processes cannot rebuild it; "
                         "register it with @register_task, or start your own script with torchrun.")
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(config.nproc),
              "--max-restarts", str(config.max_restarts)]
    if config.nnodes > 1:
        launch += ["--nnodes", str(config.nnodes), "--node-rank", str(config.node_rank), "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", config.rdzv, "--rdzv-id", "tamer-" + out.name,
                   # node 0 hosts the rendezvous store even when the address is not its host name's
                   "--rdzv-conf", f"join_timeout={int(config.timeout)},is_host={int(config.node_rank == 0)}",
                   "--local-addr", local_address(config.rdzv)]
    elif config.rdzv:
        launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", config.rdzv, "--rdzv-id", "tamer-" + out.name]
    else:
        launch += ["--standalone"]
    worker = ["-m", "tamer", "train", task.name, "--out", str(out), *_flags(config, LAUNCH_ONLY),
              *_flags(task.config)]
    if not show_progress:
        worker.append("--quiet")
    return launch + worker


def local_address(rdzv: str) -> str:
    """This machine's address on the route to the rendezvous host (a host name may resolve to an unreachable one)."""
    host, _, port = rdzv.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))  # UDP: picks the route, sends nothing
        return s.getsockname()[0]


def interface_of(address: str) -> str | None:
    """The network interface holding `address` (Linux), which gloo must use on hosts with several."""
    try:
        import fcntl
    except ImportError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            except OSError:
                continue
            if socket.inet_ntoa(raw[20:24]) == address:
                return name
    return None


def launch(task: Task, config: TrainConfig, out: Path, show_progress: bool = True) -> Artifact | None:
    """Run torchrun and wait; the artifact rank 0 wrote, or None when it was written on another machine."""
    resolve_device(config.device)  # an explicit device this machine lacks is refused before any worker starts
    command = torchrun_command(task, config, out, show_progress)
    env = worker_env(config.allocator, {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // config.nproc))})
    if config.nnodes > 1 and "GLOO_SOCKET_IFNAME" not in env:
        interface = interface_of(local_address(config.rdzv))
        if interface:
            env["GLOO_SOCKET_IFNAME"] = interface
    # the workers' own prints go to stderr so that this process's stdout (--json) stays one object
    done = subprocess.run(command, env=env, stdout=sys.stderr)
    if done.returncode != 0:
        raise JobFailed(f"the training workers failed (torchrun exit code {done.returncode}, after at most "
                        f"{config.max_restarts} restart(s)); the log above names the failed rank. "
                        "Pass --resume to continue from the last checkpoint.")
    if (Path(out) / "manifest.json").is_file():
        return Artifact.load(out)
    return None
