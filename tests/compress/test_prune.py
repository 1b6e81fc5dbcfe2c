"""Pruning: mask sparsity and the 2:4 pattern as properties; structured pruning really shrinks the model."""
import torch
from torch import nn

import tamer
from tamer.compress.prune import magnitude_masks, structured_prune, two_four_masks


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
    child, report = tamer.compress(text_artifact, out=tmp_path / "p", progress=False, prune=0.5, prune_kind="structured",
                                   finetune_epochs=1)
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
    child, report = tamer.compress(digits_artifact, out=tmp_path / "u", progress=False, prune=0.5, prune_kind="2:4")
    state = child.state_dict()
    w = state["classifier.1.weight"]
    assert torch.all((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2)
    assert report.steps[0].extra["sparsity"] > 0.45
