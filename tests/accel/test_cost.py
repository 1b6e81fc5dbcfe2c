"""What a verb cost: FLOP counts equal the closed forms, every verb's report carries the record (train --json too),
energy is a number from a readable counter or explicitly unavailable with the reason, stages add up."""
import json

import pytest
import torch
from torch import nn

import tamer
from tamer.cli import main
from tamer.cost import add_up, count_flops, flop_probe, measure, per_example, rapl_joules, rapl_read

FIELDS = ("wall_s", "cpu_s", "peak_rss_bytes", "peak_accelerator_bytes", "flops_per_example", "energy_j",
          "energy_source", "device", "precision", "computed_in")


def test_linear_flops_are_2_n_in_out():
    layer, x = nn.Linear(37, 11), torch.randn(5, 37)
    assert count_flops(lambda: layer(x)) == 2 * 5 * 37 * 11


def test_small_cnn_flops_are_the_closed_form():
    n, c_in, c_out, k, h = 3, 2, 6, 3, 10
    cnn = nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(c_out * (h // 2) ** 2, 4))
    x = torch.randn(n, c_in, h, h)
    conv = 2 * n * c_out * h * h * c_in * k * k  # every output position: c_in * k * k multiply-adds
    linear = 2 * n * c_out * (h // 2) ** 2 * 4
    assert count_flops(lambda: cnn(x)) == conv + linear
    # backward: the input gradient and the weight gradient each cost one forward's multiply-adds
    x.requires_grad_(True)
    assert count_flops(lambda: cnn(x).sum().backward()) == 3 * (conv + linear)


def test_probe_counts_the_first_forward_per_example():
    layer = nn.Linear(8, 4)
    with measure() as meter:
        with flop_probe(6):
            layer(torch.randn(6, 8))
        with flop_probe(2):  # already known: not counted again
            layer(torch.randn(2, 8))
    assert meter.result()["flops_per_example"] == {"forward": 2 * 8 * 4}
    with flop_probe(3):  # no meter open: nothing happens
        layer(torch.randn(3, 8))


def test_energy_is_a_number_or_unavailable_with_a_reason():
    with measure() as meter:
        sum(range(10_000))
    rec = meter.result()
    if rec["energy_j"] is None:
        assert rec["energy_source"] == "unavailable" and len(rec["energy_reason"]) > 10
    else:
        assert rec["energy_j"] >= 0 and rec["energy_source"] in ("RAPL (whole CPU packages, every process)",
                                                                  "NVML (whole GPUs, every process)",
                                                                  "RAPL (whole CPU packages, every process) + "
                                                                  "NVML (whole GPUs, every process)")


def test_rapl_counters_are_read_and_wrap_around(tmp_path):
    for zone, energy in (("intel-rapl:0", 1_000_000), ("intel-rapl:1", 5)):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "energy_uj").write_text(f"{energy}\n")
        (tmp_path / zone / "max_energy_range_uj").write_text("10000000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone (core) is inside its package: not counted twice
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("7\n")
    before, why = rapl_read(tmp_path)
    assert why == "" and set(before) == {"intel-rapl:0", "intel-rapl:1"}
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("3500000\n")  # +2.5 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("4\n")  # wrapped: +10 J - 1 uJ
    after, _ = rapl_read(tmp_path)
    assert rapl_joules(before, after) == pytest.approx(2.5 + 9.999999)
    missing, why = rapl_read(tmp_path / "nothing")
    assert missing is None and "no RAPL" in why


def test_peaks_and_times_are_measured():
    with measure() as meter:
        block = torch.ones(64, 2**20 // 8)  # 64 MiB of float32 held at once
        total = float(block.sum())
        del block
    rec = meter.result()
    assert total == 64 * 2**20 // 8
    assert rec["peak_rss_bytes"] >= 64 * 2**20 and rec["wall_s"] > 0 and rec["cpu_s"] > 0
    if not torch.cuda.is_available():
        assert rec["peak_accelerator_bytes"] is None and rec["peak_accelerator_reason"]


def test_train_json_carries_the_cost(tmp_path, capsys):
    assert main(["train", "digits", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "a"), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["report"]["cost"]
    assert set(FIELDS) <= set(cost)
    flops = cost["flops_per_example"]
    # a training step is one forward and a backward of about twice its FLOPs
    assert flops["train_step"] == pytest.approx(3 * flops["forward"], rel=0.05)
    run = tamer.load(tmp_path / "a").manifest["run"]
    # one process: one rank's peak, taken after the fit and so no larger than the whole verb's
    assert len(run["peak_rss_bytes_per_rank"]) == 1 and 64 * 2**20 <= run["peak_rss_bytes_per_rank"][0] <= run["peak_rss_bytes"]
    assert run["peak_accelerator_bytes_per_rank"] == [None]


def test_every_model_verb_reports_its_cost(digits_artifact, tmp_path, capsys):
    assert main(["predict", str(digits_artifact.path), "--index", "1", "--device", "cpu", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["per"] == "prediction" and cost["count"] == 1 and cost["flops_per_example"]["forward"] > 0
    reports = [tamer.evaluate(digits_artifact), tamer.attack(digits_artifact, method="fgsm", epsilon=0.1, limit=20),
               tamer.stability(digits_artifact, limit=40),
               tamer.compress(digits_artifact, quantize="int8", activations="weight-only", out=tmp_path / "q",
                              progress=False).report]
    for report in filter(None, reports):
        assert set(FIELDS) <= set(report.cost), type(report).__name__
        assert set(FIELDS) <= set(report.to_dict()["cost"])


def test_stage_costs_add_up():
    a = {"wall_s": 1.0, "cpu_s": 2.0, "cpu_s_children": 0.0, "energy_j": None, "peak_rss_bytes": 10,
         "peak_accelerator_bytes": None}
    b = {"wall_s": 0.5, "cpu_s": 1.0, "cpu_s_children": 0.5, "energy_j": 3.0, "peak_rss_bytes": 30,
         "peak_accelerator_bytes": None}
    total = add_up({"train": a, "eval": b, "skipped": None})
    assert total["wall_s"] == 1.5 and total["cpu_s"] == 3.0 and total["peak_rss_bytes"] == 30
    assert total["energy_j"] is None  # one stage could not measure it: no invented total
    assert per_example(b, 5)["wall_s"] == pytest.approx(0.1)
