"""explain on compressed children of one model: the int8 GEMM layers give gradients (straight-through for the
activation codes), and one explanation costs two attribution runs unless the global view is asked for."""
import numpy as np
import pytest

import tamer
from tamer.artifact import Artifact
from tamer.compression.layers import BACKENDS, Int8DynamicLinear, WeightOnlyLinear
from tamer.explanation import explainer


def _on_int8_gemm(model, backend):
    """The int8 child with its linear layers moved onto the int8 GEMM (what compress keeps where it measures it
    faster, and what compiled() does), same codes."""
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, WeightOnlyLinear) and child.bits == 8 and child.group_size is None:
                new = Int8DynamicLinear(child.shape[1], child.shape[0], child.bias is not None)
                new.backend = backend
                new.qweight.copy_(child.qweight)
                new.scale.copy_(child.scale)
                if child.bias is not None:
                    new.bias.copy_(child.bias)
                setattr(m, child_name, new)
    return model


@pytest.mark.parametrize("backend", ["onednn", "fbgemm"])
def test_explain_through_the_int8_gemm_agrees_with_the_dequantized_model(explain_digits, tmp_path, monkeypatch, backend):
    if backend not in BACKENDS:
        pytest.skip(f"this torch build has no {backend} int8 GEMM")
    child = tamer.compress(explain_digits, quantize="int8", out=tmp_path / "q", progress=False)
    reference = tamer.explain(child, index=(0, 1, 2), out=tmp_path / "ref", progress=False)  # weight-only: fp32 math
    load = Artifact.load_model

    def int8_gemm(self):
        task, model = load(self)
        return task, _on_int8_gemm(model, backend)

    monkeypatch.setattr(Artifact, "load_model", int8_gemm)
    assert any(isinstance(m, Int8DynamicLinear) for m in int8_gemm(child)[1].modules())
    report = tamer.explain(child, index=(0, 1, 2), out=tmp_path / "int8", progress=False)
    for got, want in zip(report.items, reference.items):
        a, b = np.asarray(got["attributions"]), np.asarray(want["attributions"])
        assert np.linalg.norm(a - b) <= 0.1 * np.linalg.norm(b)  # only the activation codes differ
        # completeness against the int8 model's own outputs: the straight-through gradient integrates to them
        assert got["completeness_error"] <= 0.05
    assert report.sanity["steps"][0]["layers"] >= 2  # the randomization reached the int8 layers (copied, codes shuffled)


def test_one_explanation_costs_two_attribution_runs_unless_the_global_view_is_asked(text_artifact, tmp_path, monkeypatch):
    attributed = []
    inner = explainer.attribute_items

    def counting(subject, items, *args, **kwargs):
        attributed.append(len(items))
        return inner(subject, items, *args, **kwargs)

    monkeypatch.setattr(explainer, "attribute_items", counting)
    r = tamer.explain(text_artifact, input="the food was really terrible tonight", out=tmp_path / "one", progress=False)
    assert attributed == [1, 1] and r.global_view is None  # the input, then the sanity check's re-explanation
    assert r.completeness["within_tolerance"] == 1.0 and r.faithfulness is not None
    attributed.clear()
    r = tamer.explain(text_artifact, input="the food was really terrible tonight", out=tmp_path / "global",
                      global_examples=20, progress=False)
    assert sum(attributed) == 22 and r.global_view["examples"] == 20
    attributed.clear()
    from tamer.cli import main

    assert main(["explain", str(text_artifact.path), "--index", ",".join(map(str, range(8))), "--sanity", "none",
                 "--out", str(tmp_path / "batch"), "--json"]) == 0
    assert attributed == [8]  # a batch is its own global view, at no extra cost
