"""The rows that MMD and the domain classifier compare, for text and arrays: an artifact's embeddings (the input of
its last linear layer: the text encoder's pooled output, the CNN's penultimate layer), TF-IDF word features, or
the raw values. Features are fitted on the pooled rows without their side labels, so the permutation test stays
exact."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import UsageError


def word_features(reference: list[str], current: list[str]):
    """TF-IDF of words (sublinear term frequency, rows L2-normalised) over the pooled sentences: sparse rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float64)
    z = vectorizer.fit_transform(list(reference) + list(current)).tocsr()
    return z[: len(reference)], z[len(reference):]


def last_linear(model) -> Any:
    """The model's last linear layer (in registration order): its input is the penultimate representation. A
    compressed child's int8 / int4 linear layers count (their class names end in Linear; maintenance may not import
    the compression package that defines them)."""
    import torch

    found = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__.endswith("Linear"):
            found = module
    if found is None:
        raise UsageError("the artifact's model has no linear layer whose input could serve as its embedding; "
                         "use --features words or raw.")
    return found


def artifact_embeddings(artifact, inputs, batch_size: int = 64, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """The artifact's penultimate representation of `inputs` (texts, or an array of images), one float32 row each:
    what its last linear layer reads, captured by a forward pre-hook, in eval mode and without gradients."""
    import torch

    task, model = artifact.load_model()
    if getattr(task, "kind", "") != "classification":
        raise UsageError(f"drift --artifact takes a classifier (text-classification, digits); {artifact.task!r} is a "
                         f"{task.kind}.")
    captured: list[np.ndarray] = []
    hook = last_linear(model).register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().float().reshape(args[0].shape[0], -1).cpu().numpy()))
    try:
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                chunk = inputs[start:start + batch_size]
                task.forward(model, task.encode(list(chunk) if isinstance(chunk, list) else chunk))
                if on_batch is not None:
                    on_batch(len(chunk))
    except (UsageError, ValueError, TypeError) as exc:  # e.g. sentences given to an image model
        raise UsageError(f"artifact {str(artifact.path)!r} ({artifact.task}) cannot read this data: "
                         f"{str(exc).rstrip('.')}.") from None
    finally:
        hook.remove()
    return np.concatenate(captured).astype(np.float32)
