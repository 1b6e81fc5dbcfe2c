"""Request checking: every bad request is answered with a 4xx and one sentence, before it reaches the model, so
bad input never produces a 500 and never stops a worker.

| bad request | status |
| --- | --- |
| no or a wrong API key | 401 (403: a client key on an admin route) |
| Content-Type other than application/json | 415 |
| body larger than --max-body-bytes | 413 |
| more inputs than --max-inputs | 413 |
| body that is not JSON, or not an object with `inputs` | 400 |
| wrong type or shape, NaN or infinite values, empty or too long text, unknown fields | 422 |
| the queue holds --max-queue inputs | 503 with Retry-After |
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..errors import TamerError


class RequestError(Exception):
    """A request refused with `status` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _no_constants(name: str):
    raise RequestError(422, f"the JSON constant {name} is not accepted; inputs must be finite numbers.")


async def read_json(request: Any, max_bytes: int) -> Any:
    """The request body parsed as JSON: 415 for another content type, 413 past `max_bytes` (counted as it
    streams in, whatever Content-Length claims), 400 when it does not parse, 422 for NaN / Infinity."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, f"Content-Type {kind or '(none)'!r} is not accepted; send application/json.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"the body has {int(declared)} bytes, more than the limit of {max_bytes}.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"the body has more than {max_bytes} bytes, the limit.")
    try:
        return json.loads(bytes(body), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({str(exc).split(':')[0]}).") from None


def check_fields(body: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(400, f"the body is a JSON {type(body).__name__}; send an object such as {{\"inputs\": [...]}}.")
    missing = sorted(required - set(body))
    if missing:
        raise RequestError(400, f"the body has no {missing[0]!r} field; send {{\"{missing[0]}\": [...]}}.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(422, f"field {unknown[0]!r} is not accepted; accepted fields: {', '.join(sorted(allowed))}.")
    return body


def check_text(value: Any, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{where} is a {_kind(value)}; this model takes text (a string).")
    if not value.strip():
        raise RequestError(422, f"{where} is empty; give a non-blank string.")
    if len(value) > max_chars:
        raise RequestError(422, f"{where} has {len(value)} characters, more than the limit of {max_chars}.")
    return value


def check_inputs(task: Any, body: Any, max_inputs: int, max_chars: int) -> list[Any]:
    """The `inputs` of a /v1/predict body, each checked and ready for the batcher: a string for text models, an
    encoded tensor batch of one for the others (so every input is scaled on its own, whatever it is batched with)."""
    body = check_fields(body, {"inputs"}, {"inputs"})
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise RequestError(422, f"'inputs' is a {_kind(inputs)}; send a list of inputs.")
    if not inputs:
        raise RequestError(422, "'inputs' is empty; send at least one input.")
    if len(inputs) > max_inputs:
        raise RequestError(413, f"'inputs' has {len(inputs)} items, more than the limit of {max_inputs} per request.")
    if getattr(task, "tokenizer", None) is not None:
        return [check_text(x, f"input {i}", max_chars) for i, x in enumerate(inputs)]
    return [_check_array(task, x, f"input {i}") for i, x in enumerate(inputs)]


def _check_array(task: Any, value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise RequestError(422, f"{where} is a {_kind(value)}; this model takes an array of numbers (nested lists).")
    flat = _flatten(value, where)
    if len(flat) > 1_000_000:
        raise RequestError(413, f"{where} has {len(flat)} numbers, more than 1,000,000.")
    bad = next((v for v in flat if not math.isfinite(v)), None)
    if bad is not None:
        raise RequestError(422, f"{where} holds {bad}; values must be finite numbers.")
    try:
        array = np.asarray(value, dtype=np.float32)
    except ValueError:
        raise RequestError(422, f"{where} is a ragged array (rows of different lengths); send a regular one.") from None
    try:
        return task.encode(array[None])
    except TamerError as exc:
        raise RequestError(422, f"{where}: {exc}") from None


def _flatten(value: Any, where: str, depth: int = 0) -> list[float]:
    if depth > 8:
        raise RequestError(422, f"{where} is nested more than 8 levels deep.")
    out: list[float] = []
    for v in value:
        if isinstance(v, list):
            out += _flatten(v, where, depth + 1)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                out.append(float(v))
            except OverflowError:
                raise RequestError(422, f"{where} holds a number too large for a float; values must be finite.") from None
        else:
            raise RequestError(422, f"{where} holds a {_kind(v)}; values must be numbers.")
    return out


def _kind(value: Any) -> str:
    names = {str: "string", list: "list", dict: "object", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)
