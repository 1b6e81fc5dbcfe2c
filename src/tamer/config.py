"""Frozen config dataclasses that become CLI flags and recipe options under one name."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

from .errors import UsageError


def _base_type(tp: Any) -> Any:
    """Strip Optional[...] / `X | None` down to X."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _choices(tp: Any) -> tuple | None:
    tp = _base_type(tp)
    return get_args(tp) if get_origin(tp) is Literal else None


def _coerce(cls: type, name: str, tp: Any, value: Any) -> Any:
    """Convert a recipe or CLI value to the field's type, or raise one clear sentence."""
    if value is None:
        return None
    flag = "--" + name.replace("_", "-")
    base = _base_type(tp)
    choices = _choices(tp)
    if choices is not None:
        if value not in choices:
            raise UsageError(f"{flag} {value!r} is not accepted; choose one of {', '.join(map(str, choices))}.")
        return value
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if get_origin(base) in (tuple, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = get_args(base)[0] if get_args(base) else str
            return tuple(inner(x.strip() if isinstance(x, str) else x) for x in items if str(x).strip())
    except (TypeError, ValueError):
        kind = getattr(base, "__name__", str(base))
        raise UsageError(f"{flag} {value!r} is not a valid {kind}.") from None
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def make_config(cls: type, options: dict[str, Any] | None = None, **more: Any):
    """Build config `cls` from loosely typed options (CLI, recipe, Python); unknown names are an error."""
    options = {**(options or {}), **more}
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join("--" + f.replace("_", "-") for f in fields)
            raise UsageError(f"unknown option {key!r} for {cls.__name__}; accepted: {known}.")
        values[name] = _coerce(cls, name, hints[name], value)
    try:
        return cls(**values)
    except ValueError as exc:  # __post_init__ range checks
        raise UsageError(str(exc)) from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per field of `cls`; the help text is the field's `help` metadata."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        if default not in (None, ()) and not isinstance(default, bool):
            help_text += f" (default: {default})"
        if _base_type(tp) is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        choices = _choices(tp)
        parser.add_argument(flag, dest=f.name, default=None, metavar=("|".join(map(str, choices)) if choices else None),
                            help=help_text)


def config_from_args(cls: type, args: argparse.Namespace, skip: tuple[str, ...] = ()):
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return make_config(cls, given)


def check(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless condition; used in config __post_init__ range checks."""
    if not condition:
        raise ValueError(message)


def field(default: Any, help: str):
    return dataclasses.field(default=default, metadata={"help": help})
