"""tamer update: a challenger on drifted but good data is promoted; one trained on shuffled labels is refused and
production stays; rollback restores the champion; no drift with --when drift retrains nothing; bad input is one
sentence with exit code 2. Each test has its own registry (a SQLite file)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture
def own_registry(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("TAMER_REGISTRY_URL", url)
    return url


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Digits made dimmer, offset and noisier (the world drifted), their labels intact; the same with labels shuffled;
    and the built-in digits unchanged."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("update-data")
    d = load_digits()
    rng = np.random.default_rng(0)
    shifted = np.clip(d.images * 0.6 + rng.normal(0, 2.0, d.images.shape) + 4, 0, 16).astype(np.float32)
    np.savez(folder / "new.npz", images=shifted, labels=d.target)
    np.savez(folder / "shuffled.npz", images=shifted, labels=rng.permutation(d.target))
    np.savez(folder / "same.npz", images=d.images.astype(np.float32), labels=d.target)
    return folder


@pytest.fixture
def champion(own_registry, tmp_path):
    import tamer
    import tamer.api

    artifact = tamer.train("digits", epochs=4, out=tmp_path / "champion", progress=False)
    tamer.promote(artifact.id, "production", "first model")
    return artifact


def test_good_new_data_is_promoted_and_rollback_restores_the_champion(champion, data, tmp_path):
    import tamer
    import tamer.api

    report = tamer.update("production", data / "new.npz", out=tmp_path / "challenger", progress=False)
    assert report.drift is True and report.drift_p_value <= 0.05
    assert report.promoted, report.summary()
    assert tamer.api.show("production")["id"] == report.challenger != champion.id
    champ, chall = report.scores["champion"], report.scores["challenger"]
    assert chall["new"]["accuracy"] > champ["new"]["accuracy"]  # it learned the drifted data
    assert chall["all"]["accuracy"] > champ["all"]["accuracy"]
    assert chall["old"]["accuracy"] >= champ["old"]["accuracy"] - 0.02  # and forgot (almost) nothing
    # lineage: the challenger names the champion; the log holds the promotion with its reason
    assert tamer.api.show(report.challenger)["parents"] == [champion.id]
    moves = [e for e in tamer.api.history("production") if e["action"] in ("promote", "rollback")]
    assert [e["to_id"] for e in moves] == [champion.id, report.challenger]
    assert "every gate passed" in moves[-1]["reason"]
    tamer.rollback("production")
    assert tamer.api.show("production")["id"] == champion.id


def test_a_challenger_trained_on_shuffled_labels_is_refused(champion, data, tmp_path):
    import tamer
    import tamer.api

    for replay in (0.5, 0.0):  # with the default rehearsal of old data, and without
        report = tamer.update("production", data / "shuffled.npz", out=tmp_path / f"broken-{replay}", replay=replay,
                              progress=False)
        assert not report.promoted, report.summary()
        assert report.production == champion.id and tamer.api.show("production")["id"] == champion.id
        failed = [g for g in report.gates if not g["passed"]]
        assert failed and "refused" in report.decision
    refused = [e for e in tamer.api.history() if e["action"] == "update-refused"]
    assert len(refused) == 2 and all(e["alias"] == "production" for e in refused)
    assert "fails" in refused[-1]["reason"]


def test_no_drift_retrains_nothing_when_asked_to_wait_for_drift(champion, data, tmp_path):
    import tamer
    import tamer.api

    report = tamer.update("production", data / "same.npz", when="drift", out=tmp_path / "never", progress=False)
    assert report.drift is False and report.challenger is None and not report.promoted
    assert not (tmp_path / "never").exists()
    assert [e["action"] for e in tamer.api.history()][-1] == "update-skipped"


def test_recipe_gates_are_judged_too(champion, data, tmp_path):
    import tamer
    import tamer.api

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("stages:\n  - train: {}\n    gate: {accuracy: '>= 0.999'}\n")
    report = tamer.update("production", data / "new.npz", recipe=str(recipe), out=tmp_path / "c", progress=False)
    assert not report.promoted
    assert [g["source"] for g in report.gates if not g["passed"]] == ["recipe stage train"]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tamer", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_the_cli_updates_with_json_and_refuses_bad_input_in_one_sentence(champion, data, tmp_path):
    done = _cli("update", "--alias", "production", "--data", str(data / "new.npz"), "--out", str(tmp_path / "c"),
                "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["promoted"] is True and payload["production"] == payload["challenger"]
    for args, needle in [(("--alias", "staging", "--data", str(data / "new.npz")), "staging"),
                         (("--data", str(tmp_path / "missing.npz")), "missing.npz"),
                         (("--alias", "production",), "--data")]:
        bad = _cli("update", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in bad.stderr


def test_the_update_stage_promotes_and_the_report_shows_champion_and_challenger(own_registry, data, tmp_path):
    import tamer
    import tamer.api

    recipe = {"task": "digits", "stages": [
        {"train": {"epochs": 4}},
        {"promote": {"to": "production"}},
        {"update": {"data": str(data / "new.npz")}, "gate": {"promoted": ">= 1"}},
        {"evaluate": {"data": str(data / "new.npz")}},
    ]}
    tamer.run(recipe, out=tmp_path / "run", progress=False)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "champion vs challenger" in page and "every gate passed" in page
    moves = [e for e in tamer.api.history("production") if e["action"] == "promote"]
    assert len(moves) == 2 and tamer.api.show("production")["parents"] == [moves[0]["to_id"]]


_YELP_THEN_AMAZON = """
import json, sys
from pathlib import Path
import tamer
data, out = Path(sys.argv[1]), Path(sys.argv[2])
champion = tamer.train("text-classification", data=str(data / "yelp_labelled.txt"), encoder="tiny", epochs=10,
                       out=out / "yelp", progress=False)
tamer.promote(champion.id, "production")
report = tamer.update("production", data / "amazon_cells_labelled.txt", out=out / "amazon", progress=False)
print(json.dumps({"champion": champion.id, "challenger": report.challenger, "promoted": report.promoted,
                  "scores": report.scores, "gates": [g["value"] for g in report.gates]}))
"""


@pytest.mark.slow
def test_a_yelp_model_updated_with_amazon_reviews_learns_them(own_registry, sentiment_dir, tmp_path):
    """Text: the tiny encoder trained on yelp, updated with amazon sentences (a different vocabulary: drift on its
    embeddings), gets better on amazon without forgetting yelp and is promoted; and the same commands in another
    process, under another hash seed, give the same ids and every number (the tiny encoder's tokenizer is built
    deterministically, tasks/wordpiece.py; Hugging Face's WordPiece trainer was not, and this test could only
    assert what its noise could not change)."""
    import tamer
    import tamer.api

    champion = tamer.train("text-classification", data=str(sentiment_dir / "yelp_labelled.txt"), encoder="tiny",
                           epochs=10, out=tmp_path / "yelp", progress=False)
    tamer.promote(champion.id, "production")
    report = tamer.update("production", sentiment_dir / "amazon_cells_labelled.txt", out=tmp_path / "amazon",
                          progress=False)
    assert report.drift is True
    champ, chall = report.scores["champion"], report.scores["challenger"]
    assert chall["new"]["accuracy"] > champ["new"]["accuracy"] + 0.02, report.summary()
    assert chall["all"]["accuracy"] > champ["all"]["accuracy"], report.summary()
    assert report.promoted and all(g["passed"] for g in report.gates), report.summary()
    assert tamer.api.show("production")["id"] == report.challenger
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TAMER_REGISTRY_URL": f"sqlite:///{tmp_path / 'again.db'}"}
    again = subprocess.run([sys.executable, "-c", _YELP_THEN_AMAZON, str(sentiment_dir), str(tmp_path / "again")],
                           capture_output=True, text=True, timeout=1200, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1]) == json.loads(json.dumps(
        {"champion": champion.id, "challenger": report.challenger, "promoted": report.promoted,
         "scores": report.scores, "gates": [g["value"] for g in report.gates]}))


def test_mcnemar_p_is_the_binomial_tail_of_the_discordant_pairs():
    from math import comb

    from tamer.maintenance.update import mcnemar_p

    champion = [1] * 50 + [0] * 12 + [1] * 4 + [0] * 34  # 12 examples only the challenger gets, 4 only the champion
    challenger = [1] * 50 + [1] * 12 + [0] * 4 + [0] * 34
    expected = sum(comb(16, k) for k in range(12, 17)) / 2 ** 16
    assert abs(mcnemar_p(champion, challenger) - expected) < 1e-12
    assert mcnemar_p(challenger, champion) > 0.9 and mcnemar_p(champion, champion) == 1.0
