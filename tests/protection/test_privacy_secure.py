"""Privacy randomness no seed can replay, and no private data leaking through a fitted tokenizer (trust issue)."""
import math

import pytest
import torch
from scipy import stats

from tamer.cli import main
from tamer.errors import UsageError
from tamer.protection import PrivacyConfig
from tamer.protection.federated import FederateConfig, federate
from tamer.protection.privacy import SecurePoissonSampler, make_private, train_private
from tamer.protection.secure_random import SecureRandom
from tamer.tasks import make_task


def test_secure_normal_is_gaussian_with_the_asked_std_and_ignores_torchs_seed():
    torch.manual_seed(0)
    a = SecureRandom().normal((200_000,), 0.7, dtype=torch.float64)
    torch.manual_seed(0)
    b = SecureRandom().normal((200_000,), 0.7, dtype=torch.float64)
    assert not torch.equal(a, b)  # a fresh key from the OS each time, whatever the seed
    assert stats.kstest(a.numpy(), "norm", args=(0, 0.7)).pvalue > 1e-4
    assert float(a.std()) == pytest.approx(0.7, rel=0.01)
    assert abs(float(a.mean())) < 5 * 0.7 / math.sqrt(len(a))


def test_secure_poisson_sampler_draws_each_example_at_the_sample_rate():
    sampler = SecurePoissonSampler(size=1000, sample_rate=0.05, steps=400, rng=SecureRandom())
    sizes = [len(batch) for batch in sampler]
    assert len(sizes) == len(sampler) == 400
    # the batch size is Binomial(1000, 0.05): its mean over 400 batches lies within 5 standard errors of 50
    assert abs(sum(sizes) / 400 - 50) < 5 * math.sqrt(1000 * 0.05 * 0.95 / 400)
    assert all(len(set(b)) == len(b) and all(0 <= i < 1000 for i in b) for b in SecurePoissonSampler(1000, 0.05, 5, SecureRandom()))


def test_optimizer_noise_has_the_mechanisms_std_and_is_not_replayed_by_the_seed():
    # an empty Poisson batch: the step's gradient is pure noise, N(0, (sigma C / B)^2) per weight (Abadi et al. 2016)
    from tamer.protection.privacy import noise_only_step

    task = make_task("digits")
    task.prepare(0)

    def noise_of_one_step():
        torch.manual_seed(0)
        model = task.build_model(task.private_model_config())
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        loader = torch.utils.data.DataLoader(task.prepare(0).train, batch_size=128, collate_fn=task.collate)
        _, dp_model, dp_opt, dp_loader, _, mode = make_private(model, optimizer, loader, task, 2.0, 1.5)
        before = [p.detach().clone() for p in dp_model.parameters()]
        noise_only_step(dp_opt, [p for p in dp_model.parameters() if p.requires_grad], mode)
        return torch.cat([(b - p.detach()).flatten() for b, p in zip(before, dp_model.parameters())]), dp_opt

    first, optimizer = noise_of_one_step()
    second, _ = noise_of_one_step()
    expected = 2.0 * 1.5 / optimizer.expected_batch_size
    assert float(first.std()) == pytest.approx(expected, rel=0.05)
    assert not torch.allclose(first, second)


@pytest.fixture(scope="module")
def two_private_runs(tmp_path_factory):
    runs = []
    for i in range(2):
        task = make_task("digits", {"private_hidden": 16})
        runs.append(train_private(task, {"epochs": 2, "seed": 3}, PrivacyConfig(private=True, epsilon=2.0),
                                  tmp_path_factory.mktemp("dp") / f"run{i}", show_progress=False))
    return runs


def test_two_private_runs_with_one_seed_spend_the_same_epsilon_and_end_apart(two_private_runs):
    a, b = two_private_runs
    assert a.manifest["privacy"]["epsilon"] == b.manifest["privacy"]["epsilon"]
    assert a.manifest["options"]["seed"] == b.manifest["options"]["seed"] == 3
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    assert a.id != b.id and "os entropy" in a.manifest["privacy"]["noise_source"]


def test_dp_fedavg_noise_is_not_replayed_by_the_seed(tmp_path):
    config = FederateConfig(clients=2, rounds=1, local_epochs=1, seed=1)
    privacy = PrivacyConfig(private=True, epsilon=50.0, delta=1e-5)
    states = [federate(make_task("digits", {"channels": 2, "hidden": 8}), config, tmp_path / f"f{i}", privacy,
                       show_progress=False).state_dict() for i in range(2)]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])


def _texts(tmp_path, rare_name="Zbigniewska"):
    """A tiny labelled set where one record carries a rare name; public text holds no such name."""
    rows = [f"the food was {w} and fine\t1" for w in ("great", "good", "lovely", "tasty")] * 12
    rows += [f"the service was {w} and slow\t0" for w in ("bad", "awful", "poor", "rude")] * 12
    rows += [f"my waiter {rare_name} was rude\t0"] * 6  # one person's name in a few records
    data = tmp_path / "private.tsv"
    data.write_text("\n".join(rows) + "\n")
    public = tmp_path / "public.txt"
    public.write_text("\n".join(["the food was great", "the service was slow and rude", "a lovely place",
                                 "awful and poor", "good tasty fine bad my waiter was"] * 5) + "\n")
    return data, public


def test_private_training_refuses_a_tokenizer_fitted_on_the_private_data(tmp_path, capsys):
    data, _ = _texts(tmp_path)
    task = make_task("text-classification", {"data": str(data), "encoder": "tiny"})
    with pytest.raises(UsageError, match="tokenizer-data"):
        train_private(task, {"epochs": 1}, PrivacyConfig(private=True), tmp_path / "a", show_progress=False)
    assert main(["train", "text-classification", "--data", str(data), "--encoder", "tiny", "--private",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "tokenizer" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_federate_refuses_a_tokenizer_fitted_on_the_clients_data(tmp_path):
    data, _ = _texts(tmp_path)
    with pytest.raises(UsageError, match="federate would fit the tokenizer"):
        federate(make_task("causal-lm", {"data": str(data)}), FederateConfig(clients=2, rounds=1), tmp_path / "a",
                 show_progress=False)


def test_private_text_training_with_a_public_tokenizer_keeps_names_out_of_the_vocabulary(tmp_path):
    # hole 4 as well: DP-SGD on a BERT encoder (embeddings trained, ghost clipping) runs instead of crashing in Opacus
    data, public = _texts(tmp_path)
    task = make_task("text-classification", {"data": str(data), "encoder": "tiny", "tokenizer_data": str(public),
                                             "vocab_size": 1000})
    leaky = make_task("text-classification", {"data": str(data), "encoder": "tiny", "vocab_size": 1000})
    leaky.prepare(0)
    assert "zbigniewska" in leaky.tokenizer.get_vocab()  # what --tokenizer-data keeps out
    artifact = train_private(task, {"epochs": 2, "batch_size": 32}, PrivacyConfig(private=True, epsilon=8.0, delta=1e-3),
                             tmp_path / "a", show_progress=False)
    vocab = (tmp_path / "a" / "tokenizer" / "tokenizer.json").read_text()
    assert "zbigniew" not in vocab.lower()
    assert artifact.manifest["privacy"]["grad_sample_mode"] == "ghost"
    assert artifact.manifest["privacy"]["epsilon"] <= 8.0
    reloaded_task, model = artifact.load_model()
    assert reloaded_task.forward(model, reloaded_task.encode(["the food was great"])).shape == (1, 2)


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory):
    """A 2-layer BERT saved as a Hugging Face folder with its tokenizer: a stand-in for a public pretrained encoder."""
    from transformers import BertConfig, BertModel

    from tamer.tasks.vocab import train_tokenizer

    folder = tmp_path_factory.mktemp("encoder")
    tok = train_tokenizer(["the food was great", "the service was slow and rude", "a lovely place"] * 20, "wordpiece", 200)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("layers", [0, 1])
def test_private_training_of_a_pretrained_encoder_trains_the_head_and_top_layers_only(tmp_path, pretrained_folder, layers):
    from safetensors.torch import load_file

    data, _ = _texts(tmp_path)
    task = make_task("text-classification", {"data": str(data), "encoder": str(pretrained_folder), "private_layers": layers})
    artifact = train_private(task, {"epochs": 2, "batch_size": 32, "lr": 0.01}, PrivacyConfig(private=True, epsilon=8.0, delta=1e-3),
                             tmp_path / "a", show_progress=False)
    before = load_file(str(pretrained_folder / "model.safetensors"))
    after = artifact.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(after[f"encoder.{k}"], v)}
    assert all(k.startswith("encoder.layer.1.") for k in changed) and bool(changed) == (layers == 1), sorted(changed)[:3]
    assert artifact.manifest["privacy"]["frozen"][0] == "encoder.embeddings."


@pytest.mark.slow
def test_private_minilm_on_sentiment_learns_within_epsilon_8(tmp_path, sentiment_dir):
    # hole 4 on the real model: the CLI's DP path on the pretrained MiniLM (head over public features), no traceback
    assert main(["train", "text-classification", "--data", str(sentiment_dir / "yelp_labelled.txt"), "--private",
                 "--epsilon", "8", "--epochs", "4", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    from tamer.artifact import Artifact

    artifact = Artifact.load(tmp_path / "a")
    assert artifact.manifest["privacy"]["epsilon"] <= 8.0
    assert artifact.metrics["test"]["accuracy"] > 0.75  # 0.88 after 10 epochs; chance is 0.5
