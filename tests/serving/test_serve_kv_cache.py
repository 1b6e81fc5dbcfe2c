"""/v1/completions decodes through the key / value cache and queues each step on the model thread one ahead of the
reader: greedy text past the model's window equals the recompute of `tamer predict` (cache=False), seeded sampling
draws the tokens the recompute draws, a stop string counts only the tokens returned, and predictions still run
between two steps of a generation."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
import torch
from conftest import serve

from tamer.serving.batcher import DynamicBatcher
from tamer.serving.completions import CompletionRequest, Generation, generate

PROMPT = "the cat sat on"


@pytest.fixture(scope="module")
def served(lm_artifact):
    task, model = lm_artifact.load_model()
    return SimpleNamespace(task=task, model=model)


def _tokens(served, request, steps):
    gen = Generation(served, request)
    out = [gen.step() for _ in range(steps)]
    return out, gen


def test_served_greedy_text_past_the_window_equals_the_recompute(lm_artifact, served):
    window = served.task.config.block_size
    reference = served.task.predict(served.model, served.task.encode([PROMPT]), 60, cache=False)[0]
    with serve(lm_artifact, max_tokens=64) as s:
        body = {"prompt": PROMPT, "max_tokens": 60, "temperature": 0}
        whole = httpx.post(s.url + "/v1/completions", json=body, timeout=60).json()
        with httpx.stream("POST", s.url + "/v1/completions", json={**body, "stream": True}, timeout=60) as r:
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert whole["usage"]["prompt_tokens"] + whole["usage"]["completion_tokens"] > window
    assert whole["choices"][0]["text"] == reference["generated_text"][len(reference["prompt"]):]
    assert events[-1] == "data: [DONE]" and len(events) > 3


def test_seeded_sampling_draws_what_the_recompute_draws(served, monkeypatch):
    request = CompletionRequest(PROMPT, max_tokens=50, temperature=1.3, top_p=0.9, seed=11)
    cached, gen = _tokens(served, request, 50)
    assert gen.cache is not None and len(set(cached)) > 3
    monkeypatch.setattr(served.task, "kv_cache", lambda model: None)
    recomputed, gen = _tokens(served, request, 50)
    assert gen.cache is None
    assert cached == recomputed
    assert _tokens(served, CompletionRequest(PROMPT, max_tokens=50, temperature=1.3, top_p=0.9, seed=12), 50)[0] != cached


def _run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_a_stop_string_counts_only_the_tokens_returned(served):
    task, model = served.task, served.model
    ids = task.encode([PROMPT])["input_ids"][0]
    prompt, texts = len(ids), []
    with torch.no_grad():
        for _ in range(20):  # the reference greedy tokens, recomputed
            ids = torch.cat([ids, task.next_logits(model, ids).argmax().reshape(1)])
            texts.append(task.tokenizer.decode(ids[prompt:].tolist()))
    stop = " " + texts[-1].split()[3]
    k = next(i for i, t in enumerate(texts, 1) if stop in t)
    batcher = DynamicBatcher(lambda group, xs: xs)

    async def main():
        gen = await batcher.call(Generation, served, CompletionRequest(PROMPT, max_tokens=20, temperature=0, stop=(stop,)))
        pieces = [p async for p in generate(batcher.call, gen)]
        return gen, pieces

    gen, pieces = _run(main())
    assert "".join(p for p, _ in pieces) == texts[-1][:texts[-1].index(stop)] and pieces[-1] == ("", "stop")
    assert len(gen.ids) - gen.prompt_tokens == k


def test_other_model_work_runs_between_two_steps(served):
    batcher = DynamicBatcher(lambda group, xs: xs)
    request = CompletionRequest(PROMPT, max_tokens=40, temperature=0)

    async def main():
        gen = await batcher.call(Generation, served, request)
        taken_when_done = []
        other = None
        async for _piece, finish in generate(batcher.call, gen):
            if gen.kept >= 3 and other is None:
                other = asyncio.ensure_future(batcher.call(lambda: taken_when_done.append(gen.kept)))
        await other
        return gen, taken_when_done

    gen, taken = _run(main())
    assert len(gen.ids) - gen.prompt_tokens == 40
    assert taken and taken[0] <= 6  # queued behind at most the step ahead, not behind the whole generation
