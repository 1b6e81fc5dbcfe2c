"""tamer: take a PyTorch model through the life of a large model. The public verbs live here."""
import os as _os

_os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a model hub
_os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import logging as _logging

# torchao (imported by transformers when installed) warns about its CUDA kernels on CPU machines; torch's pytree
# warns about torchao's enums. Neither concerns a tamer user.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

__version__ = "0.1.0"

from .api import evaluate, load, run, tasks, train  # noqa: E402
from .api import decrypt, encrypt, federate, keygen, scrub  # noqa: E402
from . import explain as _explain_package  # noqa: E402,F401  (imported first, so `tamer.explain` stays the verb)
from .api import explain  # noqa: E402
from . import compress as _compress_package  # noqa: E402,F401  (registers the int8 / int4 artifact loaders first)
from .api import compress  # noqa: E402
from .artifact import Artifact  # noqa: E402
from .errors import TamerError  # noqa: E402
from .tasks import Task, register_task  # noqa: E402
from .train import TrainConfig  # noqa: E402

__all__ = ["compress", "decrypt", "encrypt", "explain", "federate", "keygen", "scrub", "Artifact", "Task", "TamerError", "TrainConfig", "evaluate", "load", "register_task", "run", "tasks", "train"]
