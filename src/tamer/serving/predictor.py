"""The model call behind /v1/predict, and the request and response shapes that the OpenAPI docs show. One function
runs a list of checked inputs through the task's own predict path, batched or not, for every artifact format
(fp32, int8, int4, pruned, distilled, sealed): each was loaded by `Artifact.load_model`."""
from __future__ import annotations

import bisect
from typing import Any, Optional, Union

import torch
from pydantic import BaseModel, Field


FORWARD_TOKENS = 40  # a forward pass's fixed cost in padded tokens: MiniLM on 2 CPU cores ran ~7 ms + 0.18 ms a token


def length_groups(lengths: list[int], overhead: float = FORWARD_TOKENS) -> list[list[int]]:
    """The indices of `lengths` in groups, each run as one forward pass padded to its longest: the split of the
    length-sorted list that minimises the sum over groups of (overhead + size x longest), by dynamic programming over
    the distinct lengths (a group boundary never falls between equal lengths)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    distinct = sorted(set(lengths))
    ranked = [lengths[i] for i in order]
    upto = [bisect.bisect_right(ranked, d) for d in distinct]  # inputs no longer than each distinct length
    best, cut = [0.0] + [float("inf")] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        for i in range(j):
            cost = best[i] + overhead + (upto[j - 1] - (upto[i - 1] if i else 0)) * distinct[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(distinct)
    while j:
        i = cut[j]
        groups.append(order[(upto[i - 1] if i else 0):upto[j - 1]])
        j = i
    return groups[::-1]


def run_inputs(served: Any, inputs: list[Any], max_new_tokens: int = 20) -> list[dict[str, Any]]:
    """Outputs of `served`'s model for checked inputs: arrays were encoded one by one (validation.check_inputs) and
    are stacked; texts run in groups of similar token length (`length_groups`), each padded only to its own longest:
    a batch padded to its longest text computes mostly padding, and a pass per text repeats the fixed cost."""
    task, model = served.task, served.model
    with torch.inference_mode():
        if not isinstance(inputs[0], str):
            return task.predict(model, {k: torch.cat([x[k] for x in inputs]) for k in inputs[0]}, max_new_tokens)
        if len(inputs) == 1:
            return task.predict(model, task.encode(inputs), max_new_tokens)
        lengths = task.encode(inputs)["attention_mask"].sum(1).tolist()
        out: list[Any] = [None] * len(inputs)
        for part in length_groups(lengths):
            for i, row in zip(part, task.predict(model, task.encode([inputs[i] for i in part]), max_new_tokens)):
                out[i] = row
        return out


class PredictRequest(BaseModel):
    inputs: list[Union[str, list[Any]]] = Field(
        description="texts, or images as arrays of pixel values nested by their shape or flat (8x8 or 64 for digits)",
        examples=[["the food was great"]])


class Prediction(BaseModel):
    label: Optional[str] = None
    score: Optional[float] = None
    probabilities: Optional[dict[str, float]] = None
    value: Optional[float] = Field(None, description="regression: the predicted value")
    prompt: Optional[str] = Field(None, description="causal-lm: the prompt as the tokenizer read it")
    generated_text: Optional[str] = Field(None, description="causal-lm: the prompt continued")
    model: str = Field(description="id of the artifact that answered")


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class CompletionBody(BaseModel):
    model: Optional[str] = Field(None, description="accepted and ignored: the server serves one model")
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    stream: bool = Field(False, description="server-sent events, one chunk per piece of text, then [DONE]")


class ReloadBody(BaseModel):
    artifact: Optional[str] = Field(None, description="serve this artifact (pinned); omitted: re-read the source")


def body_schema(model: type[BaseModel], required: bool = True) -> dict:
    """`openapi_extra` for a route that reads its JSON body itself (to answer bad bodies with its own 4xx)."""
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}
