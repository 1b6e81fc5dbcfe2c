"""`tamer drift` from the command line and in a recipe: the verdict and p-value at the top of --json, the HTML
section with its plots, bad input as one sentence and exit 2, the `drift: false` gate."""
import json

import numpy as np
import pytest

from tamer.cli import main


def test_json_leads_with_the_verdict_and_the_page_has_its_plots(sentiment_dir, tmp_path, capsys):
    page = tmp_path / "drift.html"
    assert main(["drift", "--reference", str(sentiment_dir / "yelp_labelled.txt"), "--current",
                 str(sentiment_dir / "amazon_cells_labelled.txt"), "--permutations", "99", "--out", str(page),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["drift"] is True and 0 <= out["p_value"] <= 0.05 and out["kind"] == "text"
    assert out["p_value"] == min(1.0, 2 * min(out["mmd"]["p_value"], out["domain"]["p_value"]))
    assert out["mmd"]["permutations"] == 99 and len(out["mmd"]["null"]) == 99 and out["domain"]["auc"] > 0.8
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 1 and "MMD" in html and "Drift" in html


def test_text_for_people(sentiment_dir, capsys):
    yelp = str(sentiment_dir / "yelp_labelled.txt")
    assert main(["drift", "--reference", yelp, "--current", yelp, "--permutations", "99"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("no drift: p = ") and "Bonferroni" in text


def _csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return str(path)


def test_a_table_page_has_the_psi_bars(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ref = _csv(tmp_path / "r.csv", ["x", "k"], [(f"{v:.3f}", "ab"[i % 2]) for i, v in enumerate(rng.normal(size=300))])
    cur = _csv(tmp_path / "c.csv", ["x", "k"], [(f"{v:.3f}", "a") for v in rng.normal(1, 1, size=300)])
    assert main(["drift", "--reference", ref, "--current", cur, "--correction", "bh", "--out",
                 str(tmp_path / "t.html"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["drift"] and out["correction"] == "bh" and {c["column"] for c in out["columns"] if c["drift"]} == {"x", "k"}
    assert "Benjamini-Hochberg" in out["rule"] and out["metrics"]["max_psi"] > 0.25
    assert "PSI" in (tmp_path / "t.html").read_text()


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist"),
    ("columns", "the columns differ: only in --reference ['b'], only in --current ['c']"),
    ("empty", "is empty"),
    ("header-only", "no data rows"),
    ("empty-text", "is empty"),
    ("kinds", "is tabular data but --current"),
    ("suffix", "is not accepted; give a .csv or .tsv table"),
    ("one-row", "needs at least two on each side"),
    ("features", "--features words applies to text and arrays"),
    ("raw-text", "--features raw needs arrays"),
    ("alpha", "--alpha 2.0 is out of range"),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, case, words, capsys):
    good = _csv(tmp_path / "good.csv", ["a", "b"], [(1, 2), (3, 4), (5, 6)])
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "empty.txt").write_text("\n\n")
    np.save(tmp_path / "one.npy", np.zeros((1, 4)))
    np.save(tmp_path / "three.npy", np.zeros((3, 4)))
    current, extra = {
        "missing": (str(tmp_path / "nope.csv"), []),
        "columns": (_csv(tmp_path / "other.csv", ["a", "c"], [(1, 2), (3, 4)]), []),
        "empty": (str(tmp_path / "empty.csv"), []),
        "header-only": (_csv(tmp_path / "h.csv", ["a", "b"], []), []),
        "empty-text": (str(tmp_path / "empty.txt"), []),
        "kinds": (str(tmp_path / "three.npy"), []),
        "suffix": (str(tmp_path / "data.parquet"), []),
        "one-row": (str(tmp_path / "one.npy"), []),
        "features": (good, ["--features", "words"]),
        "alpha": (good, ["--alpha", "2"]),
        "raw-text": (str(sentiment_txt(tmp_path)), ["--features", "raw"]),
    }[case]
    reference = {"one-row": str(tmp_path / "three.npy"), "raw-text": str(sentiment_txt(tmp_path))}.get(case, good)
    if case == "empty-text":
        reference, current = current, str(sentiment_txt(tmp_path))
    code = main(["drift", "--reference", reference, "--current", current, *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tamer: error: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def sentiment_txt(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("good food\t1\nbad service\t0\n")
    return path


def test_the_drift_stage_and_its_gate(sentiment_dir, tmp_path, capsys):
    yelp, amazon = sentiment_dir / "yelp_labelled.txt", sentiment_dir / "amazon_cells_labelled.txt"
    half = tmp_path / "half.txt"
    half.write_text("\n".join(yelp.read_text().splitlines()[::2]) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: d\ntask: text-classification\noptions: {{data: {yelp}}}\nstages:\n"
                      f"  - drift: {{current: {half}, permutations: 99}}\n    gate: {{drift: false}}\n"
                      f"  - drift: {{current: {amazon}, permutations: 99}}\n    gate: {{drift: false}}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    stages = out["report"]["stages"]
    assert [s["status"] for s in stages] == ["passed", "failed"]
    assert stages[1]["gates"][0] == {"metric": "drift", "op": "==", "threshold": 0.0, "value": 1.0, "passed": False}
    assert "Drift" in (tmp_path / "run" / "report.html").read_text()
