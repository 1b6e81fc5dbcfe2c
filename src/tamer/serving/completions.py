"""`/v1/completions` for causal-lm artifacts: the subset of OpenAI's completions API that a served decoder can
honour (prompt, max_tokens, temperature, top_p, stop, seed, stream), so the `openai` client works unchanged.
Each token is one forward pass of the task's own model on the model thread, so concurrent generations and
predictions interleave step by step; temperature 0 is the greedy loop of `tamer predict`, token for token."""
from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

import torch

from .validation import RequestError, check_fields, check_text

FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "n", "user",
          "stream_options"}


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False


def _number(body: dict, name: str, default: Any, low: float, high: float, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not (low <= value <= high):
        kind = "an integer" if integer else "a number"
        raise RequestError(422, f"{name} {value!r} is not accepted; use {kind} in [{low:g}, {high:g}].")
    return value


def parse_completion(body: Any, max_tokens: int, max_chars: int) -> CompletionRequest:
    """A completions body checked field by field (422 naming the bad one)."""
    body = check_fields(body, FIELDS, {"prompt"})
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    prompt = check_text(prompt, "prompt", max_chars)
    if body.get("n", 1) != 1:
        raise RequestError(422, f"n {body['n']!r} is not accepted; this server returns one choice (n 1).")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or len(stop) > 4 or any(not isinstance(s, str) or not s for s in stop):
        raise RequestError(422, "stop is not accepted; give a non-empty string or a list of up to 4.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(422, f"stream {stream!r} is not accepted; use true or false.")
    return CompletionRequest(prompt, _number(body, "max_tokens", 16, 1, max_tokens, True),
                             float(_number(body, "temperature", 1.0, 0, 2)), float(_number(body, "top_p", 1.0, 0, 1)),
                             tuple(stop), _number(body, "seed", None, 0, 2**63 - 1, True), stream)


class Generation:
    """One prompt continued token by token: `step()` runs the model once and returns the new token, or None at
    end-of-text. Sampling is seeded by `seed` (the same seed, the same text) or by the OS."""

    def __init__(self, served: Any, request: CompletionRequest):
        self.task, self.model, self.request = served.task, served.model, request
        batch = self.task.encode([request.prompt])
        self.prompt = batch["input_ids"][0][batch["attention_mask"][0].bool()]
        self.ids = self.prompt.clone()
        self.window = int(getattr(self.task.config, "block_size", 1024))
        self.eos = self.task.tokenizer.eos_token_id
        self.rng = torch.Generator().manual_seed(request.seed if request.seed is not None else secrets.randbits(63))

    @torch.inference_mode()
    def step(self) -> int | None:
        window = self.ids[-self.window:][None]
        logits = self.task.forward(self.model, {"input_ids": window, "attention_mask": torch.ones_like(window)})[0, -1]
        token = self._choose(logits.float())
        if token == self.eos:
            return None
        self.ids = torch.cat([self.ids, torch.tensor([token])])
        return token

    def _choose(self, logits: torch.Tensor) -> int:
        r = self.request
        if r.temperature == 0:
            return int(logits.argmax())
        probs = (logits / r.temperature).softmax(-1)
        if r.top_p < 1:  # nucleus sampling (Holtzman et al. 2020): the smallest set holding top_p of the mass
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(0) - sorted_probs < r.top_p
            keep[0] = True
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs / probs.sum(), 1, generator=self.rng))

    def text(self) -> str:
        return self.task.tokenizer.decode(self.ids[len(self.prompt):].tolist())

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)


async def generate(call: Any, generation: Generation) -> AsyncIterator[tuple[str, str | None]]:
    """(new text, None) as it becomes final, then ("", finish_reason): "stop" at end-of-text or a stop string
    (which is not returned), "length" after max_tokens. Text that may begin a stop string, or ends inside a
    multi-byte character, is held back until it is decided."""
    stops, emitted, text = generation.request.stop, 0, ""
    hold = max((len(s) for s in stops), default=1) - 1
    for _ in range(generation.request.max_tokens):
        if await call(generation.step) is None:
            break
        text = generation.text()
        cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            if cut > emitted:
                yield text[emitted:cut], None
            yield "", "stop"
            return
        safe = len(text) - hold
        while safe > emitted and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe > emitted:
            yield text[emitted:safe], None
            emitted = safe
    else:
        if len(text) > emitted:
            yield text[emitted:], None
        yield "", "length"
        return
    if len(text) > emitted:
        yield text[emitted:], None
    yield "", "stop"


def completion_object(cid: str, model_id: str, text: str, finish: str | None, usage: dict | None = None) -> dict:
    """An OpenAI `text_completion` object (a whole answer, or one chunk of a stream)."""
    out = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model_id,
           "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def new_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(payload: Any) -> str:
    """One server-sent event, as OpenAI streams them."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"
