"""The global view: attributions aggregated over a dataset — the words (text) or pixel regions (images) that drive each class."""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def image_class_maps(subject, items, scores: list[list[float]], targets: list[int]) -> dict:
    """Mean |attribution| map and mean image per class."""
    shape = list(items[0].pixels.shape[-2:])
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[t].append(i)
    classes = []
    for c in sorted(by_class):
        idx = by_class[c]
        classes.append({"class": subject.class_name(c), "count": len(idx),
                        "map": np.abs(np.asarray([scores[i] for i in idx])).mean(0).tolist(),
                        "mean_image": np.mean([items[i].pixels.flatten().numpy() for i in idx], 0).tolist()})
    return {"kind": "image", "examples": len(items), "shape": shape, "classes": classes}


def text_top_words(subject, items, scores: list[list[float]], targets: list[int], top_k: int) -> dict:
    """Per class: the words with the highest mean attribution toward it (seen at least twice when possible)."""
    sums: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for it, s, t in zip(items, scores, targets):
        for word, value in zip(it.words, s):
            acc = sums[t][word.lower()]
            acc[0] += value
            acc[1] += 1
    classes = []
    for c in sorted(sums):
        rows = [(w, v / n, n) for w, (v, n) in sums[c].items()]
        frequent = [r for r in rows if r[2] >= 2]
        pool = frequent if len(frequent) >= top_k else rows
        top = sorted(pool, key=lambda r: -r[1])[:top_k]
        classes.append({"class": subject.class_name(c), "count": sum(1 for t in targets if t == c),
                        "top": [[w, float(v), int(n)] for w, v, n in top]})
    return {"kind": "text", "examples": len(items), "classes": classes}
