"""The verbs from the command line: --json numbers at the top, bad options as one sentence and exit 2."""
import json

import pytest

import tamer
from tamer.cli import main


@pytest.mark.parametrize("argv, words", [
    (["--epsilon", "-0.1"], "--epsilon -0.1 is not accepted"),
    (["--norm", "l3"], "--norm 'l3' is not accepted"),
    (["--method", "charflip"], "is a text attack"),
    (["--budget", "0"], "--budget 0 is not accepted"),
    (["--method", "square", "--norm", "l2"], "linf ball only"),
])
def test_bad_options_are_one_sentence_and_exit_2(digits_artifact, argv, words, capsys):
    assert main(["attack", str(digits_artifact.path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tamer: error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err


def test_harden_refuses_a_negative_epsilon_and_stability_calibrate_needs_somewhere_to_write(digits_artifact, capsys):
    assert main(["harden", str(digits_artifact.path), "--epsilon", "-1"]) == 2
    from tamer.errors import UsageError
    from tamer.robustness import StabilityConfig, stability

    with pytest.raises(UsageError, match="--out"):
        stability(digits_artifact, StabilityConfig(calibrate=True))


def test_attack_json_has_the_numbers_at_the_top_and_writes_its_page(digits_artifact, tmp_path, capsys):
    assert main(["attack", str(digits_artifact.path), "--method", "pgd", "--limit", "60", "--steps", "10",
                 "--out", str(tmp_path / "a"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"clean_accuracy", "robust_accuracy", "success_rate", "mean_perturbation"} <= set(out)
    assert out["robust_accuracy"] < out["clean_accuracy"] and out["mean_perturbation"] <= 0.2 + 1e-6
    page = (tmp_path / "a" / "attack.html").read_text()
    assert "data:image/png;base64," in page and json.loads((tmp_path / "a" / "attack.json").read_text())["examples"] == 60


def test_the_same_seed_gives_the_same_report(digits_artifact):
    a, b = (tamer.attack(digits_artifact, method="pgd", limit=40, steps=5, restarts=2, seed=3) for _ in range(2))
    assert (a.robust_accuracy, a.mean_perturbation) == (b.robust_accuracy, b.mean_perturbation)


def test_harden_writes_a_child_naming_its_parent(digits_artifact, tmp_path, capsys):
    assert main(["harden", str(digits_artifact.path), "--epochs", "1", "--steps", "2", "--eval-steps", "3",
                 "--limit", "40", "--out", str(tmp_path / "h"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    child = tamer.load(tmp_path / "h")
    assert child.manifest["parents"] == [digits_artifact.id] and child.manifest["verb"] == "harden"
    assert {"clean_accuracy", "robust_accuracy"} <= set(child.metrics["test"]) and "robust_accuracy" in out


def test_stability_json(digits_artifact, capsys):
    assert main(["stability", str(digits_artifact.path), "--against", str(digits_artifact.path), "--limit", "80",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["agreement"][0]["agreement"] == 1.0 and len(out["flip_rates"]) == 3 and 0 <= out["ece"] <= 1
