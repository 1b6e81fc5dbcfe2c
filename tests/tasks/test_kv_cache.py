"""causal-lm decoding through the model's key / value cache: the same greedy tokens as recomputing the window for
every token (the reference, `cache=False`), also once the text outgrows the window (which slides, so the cache is
prefilled again) and for compressed children (int8, int4, pruned heads and MLP) and sealed ones; the cache really
runs each new token alone while the window has room; layers that code activations with one scale per call (a token's
output then depends on the others in its call) fall back to the recompute."""
from __future__ import annotations

import pytest
import torch

import tamer
from tamer.tasks.causal_lm import CausalLMTask
from tamer.tasks.vocab import train_tokenizer

PROMPTS = ["the cat sat on", "birds sang", "the dog ran in the park while the"]
WORDS = "the cat sat on the mat and the dog ran in the park while birds sang over green trees".split()


@pytest.fixture(scope="module")
def random_lm():
    """A tiny GPT-2 from its config with a 16-token window, weights drawn wide so its greedy text varies."""
    task = CausalLMTask(CausalLMTask.Config(block_size=16, vocab_size=300))
    task.tokenizer = train_tokenizer([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], "bpe", 300)
    model = task.build_model(task.model_config()).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)
    return task, model


def _positions(model) -> list[int]:
    """Records how many positions each forward pass runs."""
    seen: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    return seen


def test_cached_logits_follow_the_recompute_and_the_cache_runs_one_token_until_the_window_slides(random_lm):
    task, model = random_lm
    window = task.config.block_size
    ids = task.encode(["the cat sat on the mat"])["input_ids"][0]
    prompt = len(ids)
    seen = _positions(model)
    kv = task.kv_cache(model)
    assert kv is not None
    with torch.no_grad():
        for _ in range(2 * window):  # well past the window
            ref = task.next_logits(model, ids, None)
            got = task.next_logits(model, ids, kv)
            assert torch.allclose(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
            assert int(got.argmax()) == int(ref.argmax())
            ids = torch.cat([ids, ref.argmax().reshape(1)])
    cached = seen[1::2]  # every other pass is the reference's
    # closed form: the prompt once, one token per step while the text fits, then the whole window each step
    lengths = range(prompt, prompt + 2 * window)
    assert cached == [prompt] + [1 if n <= window else window for n in lengths[1:]]
    assert seen[0::2] == [min(n, window) for n in lengths]


def test_greedy_tokens_with_the_cache_equal_the_recompute_past_the_window(random_lm):
    task, model = random_lm
    batch = task.encode(PROMPTS)
    for n in (1, 5, 40):  # 40 new tokens: the 16-token window slides for most of them
        assert task.predict(model, batch, n) == task.predict(model, batch, n, cache=False)


def _same_greedy(art, tokens=60):
    task, model = art.load_model()
    batch = task.encode(PROMPTS)
    cached, reference = task.predict(model, batch, tokens), task.predict(model, batch, tokens, cache=False)
    assert cached == reference
    return task, model, reference


def _force_int8_gemm(monkeypatch):
    """Every linear layer of a compressed child on the int8 GEMM (on the tiny model fp32 wins the timing)."""
    from tamer.compression import quantize as quantize_module

    monkeypatch.setattr(quantize_module, "time_layer", lambda *a, **k: (1.0, 0.5))
    monkeypatch.setattr(quantize_module, "compare_latency", lambda *a, **k: {"parent": 10.0, "child": 9.0})


@pytest.mark.parametrize("options", [
    {"quantize": "int8"}, {"quantize": "int4", "group_size": 32},
    {"prune": 0.5, "prune_kind": "structured", "prune_units": "heads"},
    {"prune": 0.5, "prune_kind": "structured", "prune_units": "mlp"}, {"prune": 0.5}], ids=str)
def test_compressed_children_decode_through_the_cache_to_the_same_tokens(lm_artifact, tmp_path, options):
    child = tamer.compress(lm_artifact, out=tmp_path / "c", progress=False, **options)
    task, model, reference = _same_greedy(child)
    assert task.kv_cache(model) is not None
    assert task.config.block_size == 32 and max(len(r["generated_text"]) for r in reference) > 32 * 2  # past the window
    if options.get("prune_units") == "heads":
        assert child.manifest["model_config"]["attention_heads"] == 1  # narrowed attention decodes through the cache


def test_the_int8_gemm_with_per_token_scales_uses_the_cache(lm_artifact, tmp_path, monkeypatch):
    from tamer.compression.layers import Int8DynamicLinear

    _force_int8_gemm(monkeypatch)
    child = tamer.compress(lm_artifact, out=tmp_path / "c", progress=False, quantize="int8")
    task, model, _ = _same_greedy(child)
    assert sum(isinstance(m, Int8DynamicLinear) for m in model.modules()) >= 8
    assert task.kv_cache(model) is not None


def test_one_activation_scale_per_call_falls_back_to_the_recompute(lm_artifact, tmp_path, monkeypatch):
    _force_int8_gemm(monkeypatch)
    child = tamer.compress(lm_artifact, out=tmp_path / "c", progress=False, quantize="int8", activation_scales="tensor")
    task, model = child.load_model()
    assert any(getattr(m, "mixes_tokens", False) for m in model.modules())
    assert task.kv_cache(model) is None
    seen = _positions(model)
    task.predict(model, task.encode(["the cat sat on"]), 3)
    assert seen[1] == seen[0] + 1  # each token ran its whole window


def test_a_sealed_artifact_decodes_through_the_cache(lm_artifact, tmp_path):
    key = tamer.keygen(tmp_path / "k.key")
    tamer.encrypt(lm_artifact, out=tmp_path / "e", key_file=str(key))
    sealed = tamer.load(tmp_path / "e", key_file=str(key))
    task, model, reference = _same_greedy(sealed)
    assert task.kv_cache(model) is not None
    assert reference == tamer.predict(lm_artifact, PROMPTS, max_new_tokens=60)
