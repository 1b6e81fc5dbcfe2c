"""The memory allocator of the torchrun workers. glibc's malloc keeps freed tensor memory in its heap (its mmap
threshold grows to 32 MiB as big blocks come and go), so a CPU training process's resident memory climbs step after
step and FSDP2's sharding barely shows in it; tcmalloc and jemalloc hand big blocks back and reuse them (PyTorch's
CPU performance guide recommends them). Measured here (bench/scale.py, GPT-2 100.9M, 2 ranks, gloo, the rank that
does not write the artifact): glibc 3,229 MiB under DDP and 3,368 under FSDP2; tcmalloc 2,785 and 1,924, with steps
no slower. A running process cannot change its allocator, so it is preloaded (LD_PRELOAD) into the workers that
`--nproc` starts."""
from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

from ..errors import UsageError

LIBRARIES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
INSTALL = {"tcmalloc": "Debian/Ubuntu: apt-get install libtcmalloc-minimal4; conda: conda install gperftools",
           "jemalloc": "Debian/Ubuntu: apt-get install libjemalloc2; conda: conda install jemalloc"}


def find(name: str) -> str | None:
    """The shared library of allocator `name` on this machine (the environment's own lib folder first, then the
    dynamic linker's cache), or None."""
    for lib in LIBRARIES[name]:
        for folder in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
            found = sorted(folder.glob(f"lib{lib}.so*")) if folder.is_dir() else []
            if found:
                return str(found[0])
        soname = ctypes.util.find_library(lib)
        if soname:
            return soname
    return None


def in_use() -> str:
    """The allocator this process runs on: tcmalloc or jemalloc when one is mapped into it (Linux), else system."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return named_in(maps) or "system"


def named_in(text: str) -> str | None:
    """The allocator whose library `text` (a maps file, an LD_PRELOAD list) names first, or None."""
    found = [(text.find(f"lib{lib}."), name) for name, libs in LIBRARIES.items() for lib in libs if f"lib{lib}." in text]
    return min(found)[1] if found else None


def worker_env(choice: str, env: dict[str, str]) -> dict[str, str]:
    """`env` for the workers with `choice` preloaded. auto: an allocator the user preloads already is kept, else
    tcmalloc, else jemalloc, where installed; system: none (a preloaded tcmalloc or jemalloc is taken out); a name:
    that one instead of any other. An allocator asked for by name that this machine lacks is refused with how to
    install it."""
    entries = [e for e in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if e]
    if choice == "auto" and any(named_in(e) for e in entries):
        return env
    others = [e for e in entries if not named_in(e)]
    kept = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    if others:
        kept["LD_PRELOAD"] = ":".join(others)
    if choice == "system":
        return kept
    preloadable = os.name == "posix" and sys.platform != "darwin"  # ELF dynamic linkers read LD_PRELOAD
    for name in ("tcmalloc", "jemalloc") if choice == "auto" else (choice,):
        path = find(name) if preloadable else None
        if path:
            quiet = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2 ** 40)} if name == "tcmalloc" else {}
            return {**quiet, **kept, "LD_PRELOAD": ":".join([path, *others])}  # ("large alloc" lines above 1 TiB only)
    if choice == "auto":
        return kept
    raise UsageError(f"--allocator {choice}: no lib{LIBRARIES[choice][0]} this machine can preload ({INSTALL[choice]}); "
                     f"use auto or system.")


def check_one_process(choice: str) -> None:
    """A single process keeps the allocator it started with: asking it for another is refused with how to start
    Python on it instead."""
    if choice != "auto" and in_use() != choice:
        how = "without LD_PRELOAD" if choice == "system" else f"with LD_PRELOAD={find(choice) or 'lib' + choice + '.so'}"
        raise UsageError(f"--allocator {choice} applies to the workers that --nproc > 1 starts; one process keeps the "
                         f"allocator it started with ({in_use()}; start Python {how}), or drop --allocator.")
