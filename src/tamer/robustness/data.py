"""What the robustness verbs read: the artifact's model and one split of its data, as images or as texts."""
from __future__ import annotations

import torch

from ..artifact import Artifact
from ..errors import UsageError
from .images import ImageSpace


def input_kind(task, batch: dict) -> str:
    """"text" for token ids with a tokenizer, "image" for one float input tensor of shape N x C x H x W."""
    if "input_ids" in batch and getattr(task, "tokenizer", None) is not None:
        return "text"
    floats = [v for k, v in batch.items() if k != "labels" and torch.is_tensor(v) and v.is_floating_point()]
    if len(floats) == 1 and floats[0].dim() == 4:
        return "image"
    return "other"


def load_split(artifact: Artifact, split: str, limit: int):
    """(task, model, examples, kind): the model in eval mode and up to `limit` examples (0: all) of `split`."""
    task, model = artifact.load_model()
    if task.kind != "classification":
        raise UsageError(f"artifact task {artifact.task!r} is a {task.kind} task; the robustness verbs measure classifiers.")
    splits = task.splits(artifact.split_seed)
    data = splits.test if split == "test" else splits.val
    examples = [data[i] for i in range(len(data) if not limit else min(limit, len(data)))]
    if not examples:
        raise UsageError(f"the {split} split of {str(artifact.path)!r} is empty; nothing to measure.")
    kind = input_kind(task, task.collate(examples[:1]))
    if kind == "other":
        raise UsageError(f"artifact task {artifact.task!r} takes neither images nor texts; the robustness verbs read one or the other.")
    return task, model.eval(), examples, kind


def texts_of(task, examples: list[dict]) -> list[str]:
    """The sentences behind tokenized examples (decoded, special tokens dropped)."""
    return [task.tokenizer.decode(e["input_ids"], skip_special_tokens=True) for e in examples]


def text_scores(task, model):
    """`scores(texts, labels) -> (loss per text, correct per text)`, the model read through the task's own encoder."""

    @torch.no_grad()
    def scores(texts: list[str], labels: list[int]):
        batch = task.encode(texts)
        logits = task.forward(model, batch).float()
        y = torch.as_tensor(labels)
        return torch.nn.functional.cross_entropy(logits, y, reduction="none"), logits.argmax(1) == y

    return scores


def image_batches(task, examples: list[dict], batch_size: int):
    """(batch, ImageSpace, pixels, labels) per chunk of `examples`."""
    for s in range(0, len(examples), batch_size):
        batch = task.collate(examples[s:s + batch_size])
        space = ImageSpace.of(task, batch)
        yield batch, space, batch[space.key].float(), batch["labels"]
