"""Pruning: mask sparsity and the 2:4 pattern as properties; structured pruning really shrinks the model."""
import pytest
import torch
from torch import nn

import tamer
from tamer.compression.prune import magnitude_masks, structured_prune, two_four_masks


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def test_magnitude_masks_remove_the_smallest_weights():
    model = _model()
    masks = magnitude_masks(model, 0.3)
    for name, mask in masks.items():
        w = dict(model.named_parameters())[name].detach()
        assert abs(float((mask == 0).float().mean()) - 0.3) < 1 / w.numel() + 1e-6
        if (mask == 0).any() and (mask == 1).any():
            assert w[mask == 0].abs().max() <= w[mask == 1].abs().min()


def test_two_four_keeps_two_largest_of_every_four():
    model = _model()
    masks = two_four_masks(model)
    for name, mask in masks.items():
        w = dict(model.named_parameters())[name].detach()
        groups = mask.reshape(mask.shape[0], -1, 4)
        assert torch.all(groups.sum(-1) == 2)
        wg = w.abs().reshape(w.shape[0], -1, 4)
        kept_min = torch.where(groups == 1, wg, torch.full_like(wg, float("inf"))).amin(-1)
        dropped_max = torch.where(groups == 0, wg, torch.full_like(wg, -1.0)).amax(-1)
        assert torch.all(kept_min >= dropped_max)


def test_structured_prune_of_a_tiny_bert_shrinks_shapes(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "p", progress=False, prune=0.5, prune_kind="structured",
                                   finetune_epochs=1)
    report = child.report
    width = text_artifact.manifest["model_config"]["encoder"]["intermediate_size"]
    assert child.manifest["model_config"]["encoder"]["intermediate_size"] == width // 2
    _, model = child.load_model()
    block = model.encoder.encoder.layer[0]
    assert block.intermediate.dense.weight.shape[0] == width // 2
    assert block.output.dense.weight.shape[1] == width // 2
    assert report.steps[0].size_ratio < 1.0
    assert child.manifest["parents"] == [text_artifact.id]


def test_structured_prune_keeps_the_function_of_kept_neurons(digits_artifact):
    """Removing neurons whose outgoing weights are zero changes nothing: a closed-form check of the slicing."""
    task, model = digits_artifact.load_model()
    with torch.no_grad():
        model.classifier[4].weight[:, 64:] = 0  # neurons 64.. contribute nothing
        model.classifier[1].weight[64:] *= 0.01  # and are the least important by ||w_in|| * ||w_out||
    batch = task.collate([task.prepare(0).test[i] for i in range(8)])
    before = task.forward(model, batch)
    pruned, config, _ = structured_prune(model, digits_artifact.manifest["model_config"], 0.5)
    assert config["hidden"] == 64 and pruned.classifier[1].out_features == 64
    assert torch.allclose(task.forward(pruned, batch), before, atol=1e-5)


def test_unstructured_and_two_four_artifacts(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, out=tmp_path / "u", progress=False, prune=0.5, prune_kind="2:4")
    report = child.report
    state = child.state_dict()
    w = state["classifier.1.weight"]
    assert torch.all((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2)
    assert report.steps[0].extra["sparsity"] > 0.45


def _kept(child_rows: torch.Tensor, parent_rows: torch.Tensor) -> list[int]:
    """Which parent rows the child kept (each child row equals exactly one parent row)."""
    return [int(torch.where((parent_rows == r).all(1))[0][0]) for r in child_rows]


def _agree(task, a, b, n=8) -> bool:
    batch = task.collate([task.prepare(0).test[i] for i in range(n)])
    with torch.no_grad():
        return torch.allclose(task.forward(a, batch), task.forward(b, batch), atol=1e-5)


def test_head_pruning_of_bert_equals_the_parent_with_those_heads_silenced(text_artifact, tmp_path):
    """A removed head contributes exactly what a head with zero values contributes: nothing. So the saved and
    reloaded pruned model must equal its parent with the removed heads' value rows set to zero."""
    child = tamer.compress(text_artifact, out=tmp_path / "h", progress=False, prune=0.5, prune_kind="structured",
                                   prune_units="heads")
    report = child.report
    enc = text_artifact.manifest["model_config"]["encoder"]
    heads, dh = enc["num_attention_heads"], enc["hidden_size"] // enc["num_attention_heads"]
    assert child.manifest["model_config"]["attention_heads"] == heads // 2
    task, pruned = child.load_model()
    _, silenced = text_artifact.load_model()
    with torch.no_grad():
        for block, small in zip(silenced.encoder.encoder.layer, pruned.encoder.encoder.layer):
            assert small.attention.self.query.weight.shape == (heads // 2 * dh, enc["hidden_size"])
            assert small.attention.output.dense.weight.shape == (enc["hidden_size"], heads // 2 * dh)
            kept = {i // dh for i in _kept(small.attention.self.value.weight, block.attention.self.value.weight)}
            assert len(kept) == heads // 2
            for h in set(range(heads)) - kept:
                block.attention.self.value.weight[h * dh:(h + 1) * dh] = 0
                block.attention.self.value.bias[h * dh:(h + 1) * dh] = 0
    assert _agree(task, pruned, silenced)
    assert report.steps[0].size_ratio < 1.0
    q = tamer.compress(child, out=tmp_path / "hq", progress=False, quantize="int8")  # the narrowed model quantizes
    _, q_model = q.load_model()
    assert q_model.encoder.encoder.layer[0].attention.self.query.shape == (heads // 2 * dh, enc["hidden_size"])


def test_head_pruning_of_gpt2_equals_the_parent_with_those_heads_silenced(lm_artifact, tmp_path):
    child = tamer.compress(lm_artifact, out=tmp_path / "h", progress=False, prune=0.5, prune_kind="structured",
                              prune_units="heads")
    dec = lm_artifact.manifest["model_config"]["decoder"]
    heads, width = dec["n_head"], dec["n_embd"]
    dh = width // heads
    task, pruned = child.load_model()
    _, silenced = lm_artifact.load_model()
    with torch.no_grad():
        for block, small in zip(silenced.model.transformer.h, pruned.model.transformer.h):
            kept_width = heads // 2 * dh
            assert small.attn.c_attn.weight.shape == (width, 3 * kept_width)
            v_small = small.attn.c_attn.weight[:, 2 * kept_width:].t()
            kept = {i // dh for i in _kept(v_small, block.attn.c_attn.weight[:, 2 * width:].t())}
            assert len(kept) == heads // 2
            for h in set(range(heads)) - kept:
                cols = slice(2 * width + h * dh, 2 * width + (h + 1) * dh)
                block.attn.c_attn.weight[:, cols] = 0
                block.attn.c_attn.bias[cols] = 0
    assert _agree(task, pruned, silenced)


def test_channel_pruning_of_the_cnn_equals_the_parent_with_those_channels_silenced(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, out=tmp_path / "c", progress=False, prune=0.5, prune_kind="structured",
                                   prune_units="channels")
    report = child.report
    c = digits_artifact.manifest["model_config"]["channels"]
    assert child.manifest["model_config"]["channels"] == c // 2
    task, pruned = child.load_model()
    _, silenced = digits_artifact.load_model()
    with torch.no_grad():
        for i, width in ((0, c), (3, 2 * c)):
            big, small = silenced.features[i], pruned.features[i]
            assert small.out_channels == width // 2
            # a kept channel's weights, over the inputs it kept, match exactly one parent channel
            kept = set(_kept(small.bias[:, None], big.bias[:, None]))
            assert len(kept) == width // 2
            for k in set(range(width)) - kept:  # ReLU(0) = 0: a zeroed channel feeds zeros onward
                big.weight[k] = 0
                big.bias[k] = 0
    assert _agree(task, pruned, silenced)
    assert report.steps[0].size_ratio < 0.75


def test_a_chain_is_gated_against_the_first_parent(digits_artifact, tmp_path):
    """prune -> quantize: unprefixed gate metrics compare the last child with the artifact compress was given
    (read back from the manifests), the `quantize.` ones with the pruned step; the report shows both."""
    child = tamer.compress(digits_artifact, out=tmp_path / "pq", progress=False, prune=0.6, prune_kind="structured",
                                   quantize="int8")
    report = child.report
    pruned = tamer.load(tmp_path / "pq.prune")
    final, first, middle = (a.metrics["test"]["accuracy"] for a in (child, digits_artifact, pruned))
    gates = report.gate_metrics()
    assert gates["accuracy_change"] == pytest.approx(final - first)
    assert gates["parent_accuracy"] == pytest.approx(first)
    assert gates["quantize.accuracy_change"] == pytest.approx(final - middle)
    assert gates["prune.accuracy_change"] == pytest.approx(middle - first)
    assert gates["size_ratio"] == pytest.approx(child.size("model.safetensors") / digits_artifact.size("model.safetensors"))
    assert "against the first parent" in report.summary() and "against the first parent" in report.html()


def test_overall_gate_metrics_from_known_steps():
    from tamer.compression.report import CompressReport, StepResult

    steps = [StepResult("prune", "a", "1", "", parent_bytes=1000, child_bytes=600, parent_metric=0.9, child_metric=0.8,
                        latency_ms={"batch1": {"parent": 10.0, "child": 5.0}}),
             StepResult("quantize", "b", "2", "", parent_bytes=600, child_bytes=150, parent_metric=0.8, child_metric=0.75,
                        latency_ms={"batch1": {"parent": 5.0, "child": 4.0}})]
    gates = CompressReport("p", "0", "b", "2", steps).gate_metrics()
    assert gates["accuracy_change"] == pytest.approx(-0.15) and gates["quantize.accuracy_change"] == pytest.approx(-0.05)
    assert gates["size_ratio"] == pytest.approx(0.15) and gates["quantize.size_ratio"] == pytest.approx(0.25)
    assert gates["latency_ratio_b1"] == pytest.approx(0.4) and "latency_ratio_b32" not in gates
