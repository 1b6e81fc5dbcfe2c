"""`federate --device --precision`: the clients train and the global model is evaluated at that placement, recorded in
the artifact's run and the report's cost; with client-level DP any precision keeps the clipping bound, since each
client's update is clipped and noised in float64 on fp32 weights (checked here on the updates the server receives)."""
import json

import pytest
import torch

import tamer
from tamer.cli import main
from tamer.protection import federated
from tamer.protection.privacy import epsilon_for
from tamer.protection.secure_random import SecureRandom

SMALL = ["--clients", "3", "--rounds", "2", "--local-epochs", "1", "--channels", "4", "--hidden", "8"]


def test_federate_on_an_explicit_cpu_records_where_and_in_what_it_ran(tmp_path, capsys):
    assert main(["federate", "digits", *SMALL, "--device", "cpu", "--out", str(tmp_path / "f"), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["report"]["cost"]
    assert cost["device"] == "cpu" and cost["precision"] == "fp32" and cost["computed_in"] == ["float32"]
    assert cost["flops_per_example"]["train_step"] > cost["flops_per_example"]["forward"] > 0
    run = tamer.load(tmp_path / "f").manifest["run"]
    assert run["device"] == "cpu" and run["computed_in"] == ["float32"]


def _norm(after: dict, before: dict) -> float:
    return float(torch.sqrt(sum(((after[n].double() - before[n].double()) ** 2).sum() for n in before
                                if before[n].is_floating_point())))


def test_client_level_dp_under_bf16_keeps_every_update_within_the_clip_and_the_budget(tmp_path, monkeypatch):
    rounds, original = [], federated.private_average

    def spy(global_state, states, clip, sigma, rng):
        rounds.append((global_state, states))
        return original(global_state, states, clip, sigma, rng)

    monkeypatch.setattr(federated, "private_average", spy)
    artifact = tamer.federate("digits", clients=3, rounds=2, local_epochs=1, channels=4, hidden=8, private=True,
                              epsilon=2.0, max_update_norm=0.1, device="cpu", precision="bf16", out=tmp_path / "f",
                              progress=False)
    cost, privacy = artifact.report.cost, artifact.manifest["privacy"]
    assert cost["precision"] == "bf16" and cost["computed_in"] == ["bfloat16"]  # the clients did compute in bf16
    assert len(rounds) == 2 and all(len(states) == 3 for _, states in rounds)
    quiet = SecureRandom()  # std 0: what the server adds before its noise
    for global_state, states in rounds:
        # what each client sends: fp32 weights, whatever autocast computed in
        assert {t.dtype for s in states for t in s.values() if t.is_floating_point()} == {torch.float32}
        assert max(_norm(s, global_state) for s in states) > 0.1  # the clip has something to do
        for s in states:  # one client's clipped update (an average of one) is within the clip
            assert _norm(original(global_state, [s], 0.1, 0.0, quiet), global_state) <= 0.1 * (1 + 1e-6)
        assert _norm(original(global_state, states, 0.1, 0.0, quiet), global_state) <= 0.1 * (1 + 1e-6)
    assert privacy["epsilon"] <= 2.0
    assert privacy["epsilon"] == pytest.approx(epsilon_for(privacy["noise_multiplier"], 1.0, 2, privacy["delta"]), rel=1e-9)


def test_fp16_on_a_cpu_is_refused_in_one_sentence_and_nothing_is_written(tmp_path, capsys):
    code = main(["federate", "digits", *SMALL, "--device", "cpu", "--precision", "fp16", "--out", str(tmp_path / "f")])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "fp16 needs a CUDA device" in lines[0], err
    assert not any(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_federate_on_cuda_trains_the_clients_there(precision, tmp_path):
    artifact = tamer.federate("digits", clients=3, rounds=3, private=True, epsilon=8.0, device="cuda",
                              precision=precision, out=tmp_path / "f", progress=False)
    dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
    assert artifact.manifest["run"]["device"].startswith("cuda") and artifact.report.cost["computed_in"] == [dtype]
    assert artifact.manifest["privacy"]["epsilon"] <= 8.0
    assert not any(t.is_cuda for t in artifact.state_dict().values())
