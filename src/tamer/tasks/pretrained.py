"""Hugging Face configs, models and tokenizers read from a local folder: never its code, never the network.

A folder whose config asks Hugging Face to import a Python file (`auto_map`) is refused outright, before any load:
`trust_remote_code=False` alone would quietly fall back to the built-in class when there is one, and prompt or
fail with a traceback when there is none. Every load also passes `trust_remote_code=False` and
`local_files_only=True`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError

CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
SAFE = {"trust_remote_code": False, "local_files_only": True}


def refuse_remote_code(config: Mapping[str, Any], where: str) -> None:
    """Refuse a config that names code to run (`auto_map`)."""
    if isinstance(config, Mapping) and "auto_map" in config:
        raise UsageError(f"{where} asks Hugging Face to run code shipped with the model (auto_map); tamer never "
                         f"runs code from a model folder, so use a model whose architecture transformers has built in.")


def check_folder(folder: str | Path) -> Path:
    """`folder` after refusing any config in it that names code to run."""
    folder = Path(folder)
    for name in CONFIG_FILES:
        file = folder / name
        if file.is_file():
            try:
                config = json.loads(file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise UsageError(f"{name} in model folder {str(folder)!r} is not valid JSON; fix or replace the folder.") from None
            refuse_remote_code(config, f"{name} in model folder {str(folder)!r}")
    return folder


def _load(what: str, folder: str | Path, loader, **extra):
    folder = check_folder(folder)
    try:
        return loader(str(folder), **SAFE, **extra)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"cannot read a Hugging Face {what} from {str(folder)!r} ({first}).") from None


def pretrained_config(folder: str | Path) -> dict[str, Any]:
    """The folder's model config as plain JSON."""
    from transformers import AutoConfig

    config = _load("config", folder, AutoConfig.from_pretrained)
    return json.loads(config.to_json_string(use_diff=False))


def pretrained_model(folder: str | Path, causal_lm: bool = False, **extra):
    """The folder's model with its weights (AutoModel, or AutoModelForCausalLM)."""
    from transformers import AutoModel, AutoModelForCausalLM

    return _load("model", folder, (AutoModelForCausalLM if causal_lm else AutoModel).from_pretrained, **extra)


def pretrained_tokenizer(folder: str | Path):
    """The folder's tokenizer."""
    from transformers import AutoTokenizer

    return _load("tokenizer", folder, AutoTokenizer.from_pretrained)


def model_from_config(config: Mapping[str, Any], where: str, causal_lm: bool = False, **extra):
    """A freshly initialised model for a config dict (an artifact's model config): no weights, no code."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    refuse_remote_code(config, where)
    auto = AutoModelForCausalLM if causal_lm else AutoModel
    return auto.from_config(AutoConfig.for_model(**config), trust_remote_code=False, **extra)
