"""Distillation: a distilled student beats the same student trained alone; students start from the teacher where
shapes allow; the child artifact names its parent; bad student specs are refused with one clear sentence."""
import pytest
import torch
from torch.utils.data import Subset

import tamer
from tamer.cli import main
from tamer.compression import CompressConfig
from tamer.compression.distill import augmented_view, soft_loss, train_student
from tamer.compression.student import build_student, count_parameters, layer_map
from tamer.compression.measure import calibration_batches
from tamer.errors import UsageError


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    """A well trained digits CNN (~97% test accuracy); the shared 4-epoch fixture is too weak a teacher."""
    return tamer.train("digits", epochs=12, out=tmp_path_factory.mktemp("teacher") / "a", progress=False)


def test_layer_map_takes_every_kth_block_ending_on_the_last():
    assert layer_map(6, 2) == [2, 5]
    assert layer_map(6, 3) == [1, 3, 5]
    assert layer_map(4, 4) == [0, 1, 2, 3]
    assert layer_map(2, 1) == [1]


def test_soft_loss_is_zero_for_the_teacher_itself_and_scales_with_t_squared():
    from tamer.tasks import make_task

    task = make_task("digits")
    t = torch.randn(8, 10)
    assert float(soft_loss(task, t, t, {}, 2.0)) == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(8, 10)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / 3, -1), torch.softmax(t / 3, -1), reduction="batchmean")
    assert float(soft_loss(task, s, t, {}, 3.0)) == pytest.approx(9 * float(kl), rel=1e-5)


def test_distillation_beats_the_same_student_trained_alone(digits_teacher):
    """100 labelled examples, a 1/20-size student, same init, data order, epochs and seed: the teacher's soft
    targets (on the same examples and on mixed-up views of them) give a better student on the test split."""
    task, teacher = digits_teacher.load_model()
    splits = task.prepare(0)
    subset = Subset(splits.train, torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:100].tolist())
    spec, gains = "hidden=32,channels=8", []
    for seed in range(3):
        config = CompressConfig(distill_into=spec, distill_epochs=60, seed=seed, temperature=2.0, distill_alpha=0.5)
        accuracy = []
        for teach in (teacher, None):
            student, _, mapping, _ = build_student(task, teacher, digits_teacher.manifest["model_config"], spec, seed)
            student, _ = train_student(task, student, teach, "DigitsCNN", mapping, subset, splits.val, config, 1e-2)
            accuracy.append(task.evaluate(student, splits.test)["accuracy"])
        gains.append(accuracy[0] - accuracy[1])
    assert sum(gains) / len(gains) >= 0.02, gains


def test_distill_verb_writes_a_smaller_child_naming_its_parent(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, out=tmp_path / "s", progress=False, distill_into="hidden=32,channels=8",
                                   distill_epochs=2)
    report = child.report
    assert child.manifest["parents"] == [digits_artifact.id]
    assert child.manifest["options"]["step"] == "distill"
    assert child.manifest["model_config"]["hidden"] == 32 and child.manifest["model_config"]["channels"] == 8
    _, student = child.load_model()
    _, teacher = digits_artifact.load_model()
    step = report.steps[0]
    assert step.extra["student_params"] == count_parameters(student) < count_parameters(teacher) == step.extra["teacher_params"]
    assert step.size_ratio < 0.5 and step.child_metric is not None and step.parent_metric is not None
    assert child.manifest["distillation"]["learning_curve"]


def test_tiny_bert_student_starts_from_every_kth_teacher_block(text_artifact):
    task, teacher = text_artifact.load_model()
    config = text_artifact.manifest["model_config"]
    student, s_config, mapping, init = build_student(task, teacher, config, "layers=1,intermediate=64", 0)
    assert mapping == [1] and s_config["encoder"]["num_hidden_layers"] == 1
    t_block, s_block = teacher.encoder.encoder.layer[1], student.encoder.encoder.layer[0]
    assert torch.equal(s_block.attention.self.query.weight, t_block.attention.self.query.weight)
    assert torch.equal(student.encoder.embeddings.word_embeddings.weight, teacher.encoder.embeddings.word_embeddings.weight)
    # the MLP keeps the teacher's 64 neurons with the largest ||w_in|| * ||w_out||, in their order
    w_in, w_out = t_block.intermediate.dense.weight, t_block.output.dense.weight
    keep = (w_in.norm(dim=1) * w_out.norm(dim=0)).argsort(descending=True)[:64].sort().values
    assert torch.equal(s_block.intermediate.dense.weight, w_in[keep])
    assert torch.equal(s_block.output.dense.weight, w_out[:, keep])
    assert init["sliced"] == 3 and init["fresh"] == 0


def _layernorm_activation(task, model, batches):
    """Reference: sum over every LayerNorm of the mean |output| of each channel over real tokens."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    outs = []
    hooks = [m.register_forward_hook(lambda mod, a, o: outs.append(o)) for m in norms]
    total, tokens = 0, 0
    with torch.no_grad():
        for batch in batches:
            outs.clear()
            task.forward(model, batch)
            real = batch["attention_mask"].bool()
            total = total + sum(o[real].abs().sum(0) for o in outs)
            tokens += int(real.sum())
    for h in hooks:
        h.remove()
    return total / tokens


def test_narrower_student_keeps_the_same_most_active_teacher_channels_in_every_tensor(text_artifact):
    """Width pruning as the init: every tensor of a hidden=32 student is the teacher's, restricted to one set of
    residual channels (those with the largest LayerNorm activations), one whole head per block and its top neurons."""
    task, teacher = text_artifact.load_model()
    batches = calibration_batches(task, task.prepare(0).train, 64, 0)
    student, s_config, mapping, init = build_student(task, teacher, text_artifact.manifest["model_config"], "hidden=32", 0,
                                                     batches=batches)
    assert s_config["encoder"]["num_attention_heads"] == 1 and s_config["encoder"]["intermediate_size"] == 64
    assert init["fresh"] == 0
    cols = _layernorm_activation(task, teacher, batches).argsort(descending=True)[:32].sort().values
    t, s = teacher.encoder, student.encoder
    assert torch.equal(s.embeddings.word_embeddings.weight, t.embeddings.word_embeddings.weight[:, cols])
    assert torch.equal(s.embeddings.LayerNorm.bias, t.embeddings.LayerNorm.bias[cols])
    assert torch.equal(student.head.weight, teacher.head.weight[:, cols])
    for j, m in enumerate(mapping):
        sb, tb = s.encoder.layer[j], t.encoder.layer[m]
        heads = [h for h in range(2) if torch.equal(sb.attention.self.query.weight, tb.attention.self.query.weight[32 * h:32 * h + 32][:, cols])]
        assert len(heads) == 1
        att = slice(32 * heads[0], 32 * heads[0] + 32)
        assert torch.equal(sb.attention.self.value.bias, tb.attention.self.value.bias[att])
        assert torch.equal(sb.attention.output.dense.weight, tb.attention.output.dense.weight[cols][:, att])
        w_out = tb.output.dense.weight[cols]
        neurons = [int((tb.intermediate.dense.weight[:, cols] - row).abs().sum(1).argmin()) for row in sb.intermediate.dense.weight]
        assert len(set(neurons)) == 64 and torch.equal(sb.output.dense.weight, w_out[:, neurons])


def test_transformer_distillation_with_hidden_matching_runs_end_to_end(text_artifact, lm_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "t", progress=False, distill_into="layers=1", distill_epochs=1)
    report = child.report
    info = child.manifest["distillation"]
    assert info["layer_map"] == [1] and info["hidden_weight"] == 1.0
    assert info["learning_curve"][0]["hidden"] > 0
    assert report.steps[0].extra["param_ratio"] < 1
    lm_child = tamer.compress(lm_artifact, out=tmp_path / "l", progress=False, distill_into="layers=1,hidden=32",
                                         distill_epochs=1)
    lm_report = lm_child.report
    assert lm_child.manifest["model_config"]["decoder"]["n_embd"] == 32
    assert lm_child.manifest["distillation"]["init"]["fresh"] == 0  # GPT-2's packed q|k|v is narrowed too
    assert lm_report.steps[0].metric == "perplexity" and lm_report.steps[0].child_metric > 1


def test_augmented_views_keep_shapes_and_padding():
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
             "labels": torch.tensor([0, 1])}
    view = augmented_view(batch, g, replace=1.0)
    assert view["input_ids"].shape == batch["input_ids"].shape
    assert torch.equal(view["input_ids"][batch["attention_mask"] == 0], batch["input_ids"][batch["attention_mask"] == 0])
    assert set(view["input_ids"][batch["attention_mask"] == 1].tolist()) <= {5, 6, 7, 8, 9}
    pixels = {"pixels": torch.rand(4, 1, 8, 8), "labels": torch.arange(4)}
    mixed = augmented_view(pixels, g)["pixels"]
    assert mixed.min() >= 0 and mixed.max() <= 1 and not torch.equal(mixed, pixels["pixels"])


@pytest.mark.parametrize("spec, words", [
    ("layers=abc", "layers='abc' needs a positive whole number"),
    ("hidden", "is not KEY=NUMBER"),
    ("hidden=0", "positive whole number"),
    ("depth=2", "key 'depth' does not size the DigitsCNN model; accepted keys: channels, hidden"),
    ("channels=64", "not fewer than the teacher"),
])
def test_bad_student_specs_exit_2_and_write_nothing(digits_artifact, tmp_path, capsys, spec, words):
    out = tmp_path / "x"
    assert main(["compress", str(digits_artifact.path), "--out", str(out), "--distill-into", spec]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_bad_transformer_spec(text_artifact):
    task, teacher = text_artifact.load_model()
    with pytest.raises(UsageError, match="key 'channels' does not size the EncoderClassifier model"):
        build_student(task, teacher, text_artifact.manifest["model_config"], "channels=8", 0)
    with pytest.raises(UsageError, match="hidden=30 is not a multiple of heads=4"):
        build_student(task, teacher, text_artifact.manifest["model_config"], "hidden=30,heads=4", 0)


def test_trimmed_vocabulary_student_is_the_teacher_on_kept_tokens_and_unk_elsewhere(text_artifact):
    """vocab=N keeps the special tokens and the N - specials most frequent training tokens (counted here
    independently); before any training the student computes exactly what the teacher does on those tokens, and
    on a token it dropped what the teacher does on [UNK]."""
    from collections import Counter

    task, teacher = text_artifact.load_model()
    splits = task.prepare(0)
    config = text_artifact.manifest["model_config"]
    full = config["encoder"]["vocab_size"]
    student, s_config, _, init = build_student(task, teacher, config, "vocab=40", 0, train=splits.train)
    student.eval()
    assert s_config["token_map_size"] == full and s_config["encoder"]["vocab_size"] == 40
    assert student.encoder.embeddings.word_embeddings.weight.shape[0] == 40
    assert count_parameters(student) == count_parameters(teacher) - (full - 40) * config["encoder"]["hidden_size"]
    counts = Counter(i for k in range(len(splits.train)) for i in splits.train[k]["input_ids"])
    special = set(task.tokenizer.all_special_ids)
    ranked = sorted((i for i in range(full) if i not in special), key=lambda i: (-counts[i], i))
    kept = sorted(special | set(ranked[: 40 - len(special)]))
    rows = student.token_map[torch.tensor(kept)]
    assert torch.equal(rows, torch.arange(40))
    assert torch.equal(student.encoder.embeddings.word_embeddings.weight, teacher.encoder.embeddings.word_embeddings.weight[kept])
    unk = task.tokenizer.unk_token_id
    dropped = ranked[40 - len(special)]
    ids = torch.tensor([[kept[5], kept[9], dropped, kept[20]], [kept[7], dropped, kept[30], kept[6]]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        got = student(ids, mask)
        want = teacher(torch.where(ids == dropped, unk, ids), mask)
        assert not torch.allclose(teacher(ids, mask), want)  # the dropped token mattered to the teacher
    torch.testing.assert_close(got, want)
    from tamer.compression.distill import trimmed_inputs
    from tamer.tasks.base import ListDataset

    read = trimmed_inputs(ListDataset([{"input_ids": row.tolist(), "labels": 0} for row in ids]), student.token_map, unk)
    assert [e["input_ids"] for e in read] == torch.where(ids == dropped, unk, ids).tolist()


def test_trimmed_vocabulary_child_saves_loads_and_reports_coverage(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "v", progress=False, distill_into="layers=1,vocab=40",
                                   distill_epochs=1)
    report = child.report
    vocab = child.manifest["distillation"]["vocabulary"]
    assert vocab["kept"] == 40 and vocab["of"] == text_artifact.manifest["model_config"]["encoder"]["vocab_size"]
    assert vocab["test_tokens_unknown_before"] <= vocab["test_tokens_unknown"] < 1
    assert report.steps[0].extra["test_tokens_unknown"] == vocab["test_tokens_unknown"]
    assert 0 <= vocab["teacher_metric_trimmed"] <= 1
    task, student = child.load_model()
    batch = task.encode(["a sentence with words the student never kept: zyzzyva quixotic", "good"])
    with torch.no_grad():
        out = student(**batch)
    assert torch.isfinite(out).all()
    assert int(student.token_map.max()) == 39
    q = tamer.compress(child, out=tmp_path / "q", progress=False, quantize="int8", activations="weight-only")
    _, quantized = q.load_model()
    assert torch.equal(quantized.token_map, student.token_map)
    with torch.no_grad():
        torch.testing.assert_close(quantized(**batch), out, atol=0.05, rtol=0)


def test_bad_vocabulary_specs(text_artifact, lm_artifact):
    task, teacher = text_artifact.load_model()
    config = text_artifact.manifest["model_config"]
    with pytest.raises(UsageError, match="vocab=3 is not accepted; give a number of tokens from 8"):
        build_student(task, teacher, config, "vocab=3", 0, train=task.prepare(0).train)
    lm_task, lm = lm_artifact.load_model()
    with pytest.raises(UsageError, match="a CausalLM predicts over its vocabulary"):
        build_student(lm_task, lm, lm_artifact.manifest["model_config"], "vocab=100", 0)
