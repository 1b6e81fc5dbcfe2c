"""`/v1/completions` for causal-lm artifacts: the subset of OpenAI's completions API that a served decoder can
honour (prompt, max_tokens, temperature, top_p, stop, seed, stream), so the `openai` client works unchanged.
The prompt is prefilled once and each token is then one forward pass of the new token through the model's key /
value cache (`task.next_logits`, shared with `tamer predict`), on the model thread, so concurrent generations and
predictions interleave step by step; temperature 0 is the greedy loop of `tamer predict`, token for token."""
from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections import deque
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
    """One prompt continued token by token through the task's key / value cache (`task.next_logits`): the prompt is
    prefilled when the generation is made, then `step()` runs the model on the one new token and returns the next
    token, or None at end-of-text (and from then on). Sampling is seeded by `seed` (the same seed, the same text) or
    by the OS. Made and stepped on the model thread."""

    def __init__(self, served: Any, request: CompletionRequest):
        self.task, self.model, self.request = served.task, served.model, request
        batch = self.task.encode([request.prompt])
        self.prompt = batch["input_ids"][0][batch["attention_mask"][0].bool()]
        self.all_ids = self.prompt.clone()  # the model thread's tokens: may run one step ahead of `kept`
        self.kept = 0  # generated tokens taken by the reader (`generate`)
        self.eos = self.task.tokenizer.eos_token_id
        self.rng = torch.Generator().manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        self.finished = False
        self.cache = self.task.kv_cache(self.model)
        with torch.inference_mode():
            self.logits: torch.Tensor | None = self.task.next_logits(self.model, self.all_ids, self.cache)

    @torch.inference_mode()
    def step(self) -> int | None:
        if self.finished:
            return None
        logits = self.logits if self.logits is not None else self.task.next_logits(self.model, self.all_ids, self.cache)
        self.logits = None
        token = self._choose(logits.float())
        if token == self.eos:
            self.finished = True
            return None
        self.all_ids = torch.cat([self.all_ids, torch.tensor([token], device=self.all_ids.device)])
        return token

    def stop(self) -> None:
        """No more steps: the ones already queued return None without running the model."""
        self.finished = True

    @property
    def ids(self) -> torch.Tensor:
        """The prompt and the generated tokens the reader has taken."""
        return self.all_ids[:len(self.prompt) + self.kept]

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
        """The generated text the reader has taken."""
        return self.task.tokenizer.decode(self.all_ids[len(self.prompt):len(self.prompt) + self.kept].tolist())

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)


async def generate(call: Any, generation: Generation) -> AsyncIterator[tuple[str, str | None]]:
    """(new text, None) as it becomes final, then ("", finish_reason): "stop" at end-of-text or a stop string
    (which is not returned), "length" after max_tokens. Text that may begin a stop string, or ends inside a
    multi-byte character, is held back until it is decided.

    `call(fn)` runs fn on the model thread. From the second token on, the next step is queued there before this
    one's text is decoded and sent, so the model thread goes from token to token without waiting for the event loop
    (other work queued on it still runs between two steps); the first token is sent before the model runs again.
    After a stop string the step ahead is thrown away."""
    stops, emitted, text, limit = generation.request.stop, 0, "", generation.request.max_tokens
    hold = max((len(s) for s in stops), default=1) - 1
    ahead: deque[asyncio.Future] = deque()
    queued = 0

    def queue_steps(upto: int) -> None:
        nonlocal queued
        while queued < min(upto, limit):
            ahead.append(asyncio.ensure_future(call(generation.step)))
            queued += 1

    try:
        for n in range(1, limit + 1):
            queue_steps(n + 1 if n > 1 else 1)
            if await ahead.popleft() is None:
                break
            generation.kept += 1
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
    finally:
        generation.stop()
        for future in ahead:  # a step that failed after the one that ended the text: its error is not news
            if not future.cancel() and not future.cancelled():
                future.exception()


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
