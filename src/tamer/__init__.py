"""tamer: take a PyTorch model through the life of a large model. The public verbs live here.

`import tamer` is light: the verbs are thin functions (tamer/api.py) that import their capability, and torch,
when called, and the classes that need torch (Task, TrainConfig) are imported on first access (PEP 562). So
`tamer keygen`, `encrypt`, `decrypt` and `scrub` never load torch.
"""
import os as _os

_os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a model hub
_os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import logging as _logging  # noqa: E402

# torchao (imported by transformers when installed) warns about its CUDA kernels on CPU machines; torch's pytree
# warns about torchao's enums. Neither concerns a tamer user.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

from .version import __version__  # noqa: E402

from .api import (attack, compress, decrypt, drift, encrypt, evaluate, explain, federate, harden, keygen, list_tasks,  # noqa: E402
                  load, predict, promote, registry, resolve, rollback, scrub, serve, stability, train, update)
from .pipeline import run, write_report  # noqa: E402
from .artifact import FORMAT_LOADERS as _FORMAT_LOADERS  # noqa: E402
from .artifact import Artifact  # noqa: E402
from .errors import ArtifactError as _ArtifactError  # noqa: E402
from .errors import TamerError  # noqa: E402

# Public names that need torch, and the packages (nouns: tasks, training, compression, protection, explanation),
# imported on first access. The verbs are functions (tamer.train, tamer.compress, ...) and never share a name with
# a package, so importing a package cannot replace a verb.
_LAZY = {"Task": "tasks", "register_task": "tasks", "TrainConfig": "training"}
_PACKAGES = ("tasks", "training", "compression", "protection", "explanation", "robustness", "maintenance", "serving")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    if name in _PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_PACKAGES))


def _loader_in(module: str, fmt: str):
    """A loader for weight format `fmt` that imports `module` (which registers the real loader) on first use,
    so an int8 / int4 artifact opens in any process without importing tamer.compression (and torch) up front."""

    def load(model, state_dict, manifest):
        import importlib

        importlib.import_module(module)
        real = _FORMAT_LOADERS.get(fmt)
        if real is None or real is load:
            raise _ArtifactError(f"{module} did not register a loader for weight format {fmt!r}; this tamer cannot read it.")
        return real(model, state_dict, manifest)

    return load


for _fmt in ("int8", "int4"):  # written by tamer.compress, read by tamer/compression/loading.py
    _FORMAT_LOADERS.setdefault(_fmt, _loader_in(f"{__name__}.compression", _fmt))

__all__ = ["__version__", "attack", "compress", "decrypt", "drift", "encrypt", "explain", "federate", "keygen", "promote", "registry", "resolve", "rollback", "scrub", "serve", "update", "Artifact", "Task", "TamerError",
           "TrainConfig", "evaluate", "harden", "list_tasks", "load", "predict", "register_task", "run", "stability", "train", "write_report"]
