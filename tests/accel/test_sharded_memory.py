"""Activation checkpointing under FSDP2 on 2 ranks (torchrun, gloo on the CPU): applied per block before sharding, it
leaves the trained weights exactly as without it."""
import pytest

import tamer


@pytest.mark.slow
def test_fsdp_with_activation_checkpointing_trains_the_same_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7} times.\n"
                              for i in range(300)))
    common = dict(data=str(corpus), model="tiny", block_size=32, epochs=1, nproc=2, strategy="fsdp", device="cpu",
                  batch_size=8, progress=False)
    plain = tamer.train("causal-lm", out=tmp_path / "plain", **common)
    checked = tamer.train("causal-lm", out=tmp_path / "checked", activation_checkpointing=True, **common)
    assert checked.manifest["run"]["activation_checkpointing"] is True
    assert checked.manifest["run"]["world_size"] == 2 and checked.manifest["run"]["strategy"] == "fsdp"
    assert checked.id == plain.id
    assert checked.report.cost["cpu_s_children"] > 0  # the workers' CPU time is counted
    assert checked.report.cost["flops_per_example"]["train_step"] > 0  # counted in the workers
    per_rank = checked.manifest["run"]["peak_rss_bytes_per_rank"]  # gathered from both workers
    assert len(per_rank) == 2 and all(p >= 64 * 2**20 for p in per_rank)
    assert per_rank[0] <= checked.manifest["run"]["peak_rss_bytes"]  # rank 0's, before it wrote the artifact


@pytest.mark.slow
def test_a_llama_folder_trains_under_fsdp_with_checkpointing_to_the_same_model(tmp_path, llama_folder):
    """Any Hugging Face causal LM, not only GPT-2: a Llama folder under FSDP2 at 2 ranks, with and without activation
    checkpointing, gives the same artifact."""
    corpus, folder = llama_folder(160)
    common = dict(data=str(corpus), model=str(folder), block_size=32, epochs=1, nproc=2, strategy="fsdp", device="cpu",
                  batch_size=8, progress=False)
    plain = tamer.train("causal-lm", out=tmp_path / "plain", **common)
    checked = tamer.train("causal-lm", out=tmp_path / "checked", activation_checkpointing=True, **common)
    assert checked.manifest["run"]["world_size"] == 2 and checked.manifest["run"]["activation_checkpointing"] is True
    assert checked.id == plain.id
