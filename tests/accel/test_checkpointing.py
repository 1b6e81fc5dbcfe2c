"""--activation-checkpointing gives the gradients of the plain model (to 1e-5, dropout on), finds the blocks of
Hugging Face encoders and causal LMs, and --offload is refused where nothing is sharded on a GPU."""
import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

import tamer
from tamer.errors import UsageError
from tamer.training import TrainConfig
from tamer.training.distributed import World, wrap
from tamer.training.memory import checkpoint_blocks, transformer_blocks


def _gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=3, n_head=4,
                                      resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1))


def _grads(model, ids, seed=1):
    torch.manual_seed(seed)  # the same dropout masks for both models
    model.train()
    model.zero_grad()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_checkpointed_gpt2_has_the_same_gradients():
    plain = _gpt2()
    checked = copy.deepcopy(plain)
    assert checkpoint_blocks(checked) == 3
    ids = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    loss_a, a = _grads(plain, ids)
    loss_b, b = _grads(checked, ids)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5, msg=name)
    assert checked.state_dict().keys() == plain.state_dict().keys()  # names unchanged: artifacts load as before


def test_checkpointing_recomputes_in_backward():
    """It is really on: the blocks' forward runs again during backward."""
    model = _gpt2()
    calls = []
    model.transformer.h[0].attn.register_forward_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    checkpoint_blocks(model)
    ids = torch.randint(0, 50, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 2  # once forward, once recomputed


def test_encoder_blocks_are_found_once():
    bert = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64))
    blocks = transformer_blocks(bert)
    assert blocks == list(bert.encoder.layer)


def test_a_model_without_blocks_is_refused():
    with pytest.raises(UsageError, match="found no transformer blocks"):
        checkpoint_blocks(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_offload_needs_fsdp_on_gpus():
    with pytest.raises(UsageError, match="needs --strategy fsdp"):
        tamer.train("digits", epochs=1, offload=True, progress=False)
    with pytest.raises(UsageError, match="--offload moves FSDP2's GPU shards"):
        wrap(nn.Linear(2, 2), "fsdp", World(), offload=True)
    assert not TrainConfig().offload and not TrainConfig().activation_checkpointing


def test_causal_lm_trains_with_checkpointing(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat and the dog sat on the log.\n" * 60)
    a = tamer.train("causal-lm", data=str(corpus), model="tiny", block_size=32, epochs=1, progress=False,
                    out=tmp_path / "a", device="cpu", seed=0)
    b = tamer.train("causal-lm", data=str(corpus), model="tiny", block_size=32, epochs=1, progress=False,
                    out=tmp_path / "b", device="cpu", seed=0, activation_checkpointing=True)
    assert b.manifest["run"]["activation_checkpointing"] is True
    assert a.id == b.id  # the same weights: checkpointing changes memory, not the arithmetic



def test_checkpointed_bert_has_the_same_gradients():
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    checked = copy.deepcopy(bert)
    assert checkpoint_blocks(checked) == 2
    ids, mask = torch.randint(0, 30, (3, 12)), torch.ones(3, 12, dtype=torch.long)
    mask[0, 8:] = 0
    grads = []
    for model in (bert, checked):
        torch.manual_seed(1)
        model.train()
        model(input_ids=ids, attention_mask=mask).last_hidden_state.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-5, msg=name)
