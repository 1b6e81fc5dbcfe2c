"""--activation-checkpointing holds for Hugging Face model families beyond GPT-2 and BERT: their blocks are found one
per layer and the checkpointed model has the plain model's gradients (dropout on where the family has it); a Llama
folder trains through `tamer train causal-lm --model FOLDER` to the same weights with and without it."""
import copy

import pytest
import torch
import transformers as hf

import tamer
from tamer.training.memory import checkpoint_blocks

SMALL = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
FAMILIES = {
    "llama": (lambda: hf.LlamaConfig(**SMALL, num_key_value_heads=2, attention_dropout=0.1), hf.LlamaForCausalLM, True),
    "qwen2": (lambda: hf.Qwen2Config(**SMALL, num_key_value_heads=2, attention_dropout=0.1), hf.Qwen2ForCausalLM, True),
    "mistral": (lambda: hf.MistralConfig(**SMALL, num_key_value_heads=2, attention_dropout=0.1), hf.MistralForCausalLM, True),
    "phi": (lambda: hf.PhiConfig(**SMALL, resid_pdrop=0.1), hf.PhiForCausalLM, True),
    "gpt_neox": (lambda: hf.GPTNeoXConfig(**SMALL, hidden_dropout=0.1), hf.GPTNeoXForCausalLM, True),
    "opt": (lambda: hf.OPTConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, ffn_dim=64,
                                 word_embed_proj_dim=32, dropout=0.1), hf.OPTForCausalLM, True),
    "roberta": (lambda: hf.RobertaConfig(**SMALL, hidden_dropout_prob=0.1), hf.RobertaModel, False),
    "distilbert": (lambda: hf.DistilBertConfig(vocab_size=64, dim=32, n_layers=3, n_heads=4, hidden_dim=64, dropout=0.1),
                   hf.DistilBertModel, False),
}


def _grads(model, ids, causal):
    torch.manual_seed(1)  # the same dropout masks for both
    model.train()
    model.zero_grad()
    out = model(input_ids=ids, labels=ids) if causal else model(input_ids=ids)
    (out.loss if causal else out.last_hidden_state.square().mean()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_checkpoints_to_the_same_gradients(family):
    config, cls, causal = FAMILIES[family]
    torch.manual_seed(0)
    plain = cls(config())
    checked = copy.deepcopy(plain)
    assert checkpoint_blocks(checked) == 3  # one block per layer, none nested
    ids = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    a, b = _grads(plain, ids, causal), _grads(checked, ids, causal)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5, msg=name)


def test_a_llama_folder_trains_the_same_with_checkpointing(tmp_path, llama_folder):
    corpus, folder = llama_folder(80)
    common = dict(data=str(corpus), model=str(folder), block_size=32, epochs=1, progress=False, device="cpu", seed=0)
    a = tamer.train("causal-lm", out=tmp_path / "a", **common)
    b = tamer.train("causal-lm", out=tmp_path / "b", activation_checkpointing=True, **common)
    assert b.manifest["run"]["activation_checkpointing"] is True
    assert a.id == b.id and a.metrics["test"]["perplexity"] == b.metrics["test"]["perplexity"]


def test_fsdp_shards_the_outermost_blocks_only():
    """A list nested in a block (a mixture of experts) stays in its block: FSDP2 units never nest top-down, and they
    are the units activation checkpointing wraps."""
    from torch import nn

    from tamer.training.distributed import blocks
    from tamer.training.memory import transformer_blocks

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.Linear(4, 4)
            self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    model = nn.Sequential(nn.Embedding(10, 4), nn.ModuleList(Block() for _ in range(2)), nn.Linear(4, 10))
    units = blocks(model)
    assert units == list(model[1]) == transformer_blocks(model)
    owned = [id(p) for u in units for p in u.parameters()]
    assert len(owned) == len(set(owned)) == 2 * (2 + 3 * 2)  # each parameter in one unit: none sharded twice
