"""explain on compressed children: the zero baseline of a vocabulary-trimmed student is the zero embedding (the
baseline id is not sent through the token map), and a child compressed with its own seed is explained on its
parent's test split."""
import pytest
import torch

import tamer


def _zero_words_forward(student, ids, mask, words):
    """The student's probabilities with the word embeddings of `words` positions set to zero by a hook of our own
    (independent of tamer's id -1)."""
    table = student.encoder.get_input_embeddings()
    handle = table.register_forward_hook(lambda m, args, out: out * (~words).unsqueeze(-1).to(out.dtype))
    try:
        with torch.no_grad():
            return torch.softmax(student(ids, mask), -1)
    finally:
        handle.remove()


def test_zero_baseline_on_a_trimmed_student_is_the_zero_embedding(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "v", progress=False, distill_into="layers=1,vocab=40",
                           distill_epochs=1)
    task, student = child.load_model()
    student.eval()
    assert student.token_map is not None
    texts = ["the food was really terrible tonight", "great food and friendly place", "our meal was cold"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    r = tamer.explain(child, out=tmp_path / "e", input_file=str(tmp_path / "in.txt"), baseline="zero", sanity="none",
                      faithfulness=False, progress=False)
    gaps = []
    for text, item in zip(texts, r.items):
        enc = task.tokenizer([text], return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        words = torch.tensor([[w is not None for w in enc.word_ids(0)]])
        t = item["target"]
        with torch.no_grad():
            p_x = torch.softmax(student(ids, mask), -1)[0, t]
            # the baseline id -1 sent through the token map would land on token_map[-1], the last id's row
            p_mapped = torch.softmax(student(torch.where(words, len(student.token_map) - 1, ids), mask), -1)[0, t]
        p_zero = _zero_words_forward(student, ids, mask, words)[0, t]
        assert sum(item["attributions"]) == pytest.approx(float(p_x - p_zero), rel=2e-3, abs=1e-5)
        gaps.append(abs(float(p_mapped - p_zero)) / max(abs(float(p_x - p_zero)), 1e-5))
    assert max(gaps) > 1e-2  # the mapped baseline is another baseline: the check above tells them apart


def test_a_child_with_its_own_seed_is_explained_on_its_parents_test_split(explain_digits, tmp_path):
    assert explain_digits.split_seed == 0
    child = tamer.compress(explain_digits, out=tmp_path / "q", quantize="int8", seed=7, progress=False)
    assert child.manifest["options"]["seed"] == 7 and child.split_seed == 0
    index = (0, 1, 2, 3)
    parent = tamer.explain(explain_digits, out=tmp_path / "p", index=index, sanity="none", faithfulness=False, progress=False)
    kid = tamer.explain(child, out=tmp_path / "c", index=index, sanity="none", faithfulness=False, progress=False)
    task, _ = explain_digits.load_model()
    test = task.prepare(0).test
    for i, a, b in zip(index, parent.items, kid.items):
        assert a["pixels"] == b["pixels"] == test[i]["pixels"].flatten().tolist()
        assert a["label"] == b["label"]
    assert task.prepare(7).test[0]["pixels"].flatten().tolist() != test[0]["pixels"].flatten().tolist()  # the seed matters
