"""The explain verb end to end: digits, text classification, causal LM; files; faithfulness beats random; bad input."""
import json

import numpy as np
import pytest

import tamer
from tamer.cli import main


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_digits_attributions_are_faithful_complete_and_pass_the_sanity_check(explain_digits, tmp_path):
    report = tamer.explain(explain_digits, out=tmp_path / "e", index=tuple(range(24)), global_examples=60, progress=False)
    m = report.gate_metrics()
    assert m["deletion_auc"] < 0.5 * m["random_deletion_auc"]
    assert m["insertion_auc"] > m["random_insertion_auc"]
    assert m["completeness_max_error"] <= 1e-3
    assert m["sanity_change"] > 0.05  # randomized weights change the attributions
    assert report.sanity["verdict"] == "pass" and m["sanity_passed"] == 1.0  # their rank order comes from the weights
    for name in ("explanation.html", "explanation.json", "heatmaps.png", "curves.png", "global.png"):
        assert (tmp_path / "e" / name).is_file()
    saved = json.loads((tmp_path / "e" / "explanation.json").read_text())
    assert len(saved["items"]) == 24 and len(saved["items"][0]["attributions"]) == 64
    assert len(saved["global_view"]["classes"]) == 10
    page = (tmp_path / "e" / "explanation.html").read_text()
    assert page.count("data:image/png;base64") >= 3
    # completeness, checked independently of Captum's own delta: attributions sum to F(x) - F(0)
    task, model = explain_digits.load_model()
    import torch

    x = torch.tensor(saved["items"][0]["pixels"]).view(1, 1, 8, 8)
    t = saved["items"][0]["target"]
    with torch.no_grad():
        change = torch.softmax(model(x), -1)[0, t] - torch.softmax(model(torch.zeros_like(x)), -1)[0, t]
    assert sum(saved["items"][0]["attributions"]) == pytest.approx(float(change), rel=2e-3, abs=1e-4)


def test_digits_batch_file_with_every_method(explain_digits, tmp_path):
    from sklearn.datasets import load_digits

    np.save(tmp_path / "imgs.npy", load_digits().images[:5])
    for method in ("saliency", "gradxinput", "occlusion", "shap", "lime"):
        r = tamer.explain(explain_digits, out=tmp_path / method, input_file=str(tmp_path / "imgs.npy"), method=method,
                          baseline="blur", sanity="none", global_examples=0, n_samples=60, progress=False)
        assert r.examples == 5 and r.completeness is None
        assert r.gate_metrics()["deletion_auc"] < r.gate_metrics()["random_deletion_auc"]


def test_text_words_are_merged_complete_and_the_sentiment_word_matters(text_artifact, tmp_path, capsys):
    code = main(["explain", str(text_artifact.path), "--input", "the food was really terrible tonight",
                 "--out", str(tmp_path / "e"), "--global-examples", "40", "--json"])
    assert code == 0
    out = _json(capsys)
    item = out["items"][0]
    assert item["words"] == ["the", "food", "was", "really", "terrible", "tonight"]
    assert item["target_label"] == "0"
    assert item["completeness_error"] <= 1e-3
    assert max(range(6), key=lambda i: item["attributions"][i]) == 4  # "terrible" carries the prediction
    assert out["metrics"]["comprehensiveness"] > out["metrics"]["random_comprehensiveness"]
    tops = {c["class"]: [w for w, _, _ in c["top"][:4]] for c in out["global_view"]["classes"]}
    assert set(tops["1"]) & {"good", "great", "lovely", "excellent", "tasty", "friendly"}
    page = (tmp_path / "e" / "explanation.html").read_text()
    assert "rgba(" in page and "terrible" in page
    import xml.etree.ElementTree as ET

    for name in ("attributions.svg", "eraser.svg"):  # well-formed, drawn into the page as well
        root = ET.parse(tmp_path / "e" / name).getroot()
        assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}rect")) >= 4
        assert (tmp_path / "e" / name).read_text() in page
    bars = ET.parse(tmp_path / "e" / "attributions.svg").getroot().findall("{http://www.w3.org/2000/svg}rect")
    assert [b.get("fill") for b in bars][4] == "#d62728" and "terrible" in bars[4].find("{http://www.w3.org/2000/svg}title").text


@pytest.mark.parametrize("method,baseline", [("ig", "zero"), ("ig", "mask"), ("ig", "pad"), ("saliency", "pad"),
                                             ("gradxinput", "zero"), ("occlusion", "pad"), ("shap", "pad"), ("lime", "mask")])
def test_text_methods_and_baselines(text_artifact, tmp_path, method, baseline):
    lines = tmp_path / "in.txt"
    lines.write_text("great food and friendly place\n\nour meal was cold\n")
    r = tamer.explain(text_artifact, out=tmp_path / "e", input_file=str(lines), method=method, baseline=baseline,
                      sanity="none", global_examples=0, n_samples=60, progress=False)
    assert [i["words"] for i in r.items] == [["great", "food", "and", "friendly", "place"], ["our", "meal", "was", "cold"]]
    first = r.items[0]["attributions"]
    if method == "saliency":  # gradient norms: a magnitude per word, no sign
        assert all(v >= 0 for v in first) and max(first) > 0
    else:
        assert max(first) in (first[0], first[3])
    if method == "ig":
        assert r.completeness["max_error"] <= 1e-3 and r.baseline == baseline
    else:
        assert r.completeness is None


@pytest.mark.parametrize("baseline", ["zero", "mask", "blur"])
def test_digits_baselines_are_what_they_say_and_ig_is_complete_against_them(explain_digits, tmp_path, baseline):
    import torch
    from scipy.ndimage import convolve

    r = tamer.explain(explain_digits, out=tmp_path / "e", index=tuple(range(6)), baseline=baseline, sanity="none",
                      global_examples=0, faithfulness=False, progress=False)
    _, model = explain_digits.load_model()
    for item in r.items:
        x = np.asarray(item["pixels"], dtype=np.float32).reshape(8, 8)
        base = {"zero": np.zeros_like(x), "mask": np.full_like(x, x.mean()),
                "blur": convolve(x, np.outer([1, 2, 1], [1, 2, 1]) / 16.0, mode="nearest")}[baseline]
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor(np.stack([x, base]))[:, None]), -1)[:, item["target"]]
        assert sum(item["attributions"]) == pytest.approx(float(p[0] - p[1]), rel=2e-3, abs=1e-4)


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_text_surrogates_repeat_exactly_for_a_seed(text_artifact, tmp_path, method):
    run = lambda name, seed: tamer.explain(text_artifact, out=tmp_path / name, input="our meal was cold and slow", method=method,  # noqa: E731
                                           seed=seed, n_samples=40, sanity="none", global_examples=0, faithfulness=False,
                                           progress=False).items[0]["attributions"]
    first = run("a", 5)
    assert run("b", 5) == first
    assert run("c", 6) != first


def test_causal_lm_attributes_the_next_token_to_prompt_tokens(lm_artifact, tmp_path):
    r = tamer.explain(lm_artifact, out=tmp_path / "e", input="the food was", sanity="cascading", sanity_examples=1, progress=False)
    item = r.items[0]
    assert item["words"] == ["the", "food", "was"]
    assert item["completeness_error"] <= 1e-3
    assert r.global_view is None and len(r.sanity["steps"]) > 1
    r2 = tamer.explain(lm_artifact, out=tmp_path / "e2", input="the food was", target=str(item["target"]), sanity="none", progress=False)
    assert r2.items[0]["attributions"] == pytest.approx(item["attributions"])


def test_explain_stage_in_a_recipe(tmp_path):
    recipe = {"task": "digits", "stages": [{"train": {"epochs": 3, "seed": 0}},
                                           {"explain": {"global_examples": 20}, "gate": {"deletion_auc_ratio": "< 1"}}]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    assert run.status == "passed"
    assert (tmp_path / "run" / "02-explain" / "explanation" / "explanation.html").is_file()
    assert "Explain · digits" in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.parametrize("args,words", [
    (["--index", "0", "--target", "12"], "--target '12' is out of range"),
    (["--index", "100000"], "--index 100000 is out of range"),
    (["--input", "1,2,3"], "shape"),
    (["--baseline", "pad", "--index", "0"], "--baseline pad is not accepted"),
    (["--index", "0", "--input", "1"], "only one of"),
    ([], "nothing to explain"),
    (["--index", "0", "--method", "magic"], "--method 'magic' is not accepted"),
    (["--index", "0", "--n-steps", "0"], "--n-steps 0 is out of range"),
    (["--input-file", "missing.npy"], "does not exist"),
])
def test_bad_digits_input_is_a_clear_error_and_writes_nothing(explain_digits, tmp_path, capsys, args, words):
    out = tmp_path / "e"
    assert main(["explain", str(explain_digits.path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()


def test_bad_image_file_shape_and_bad_text_input(explain_digits, text_artifact, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((2, 7, 7)))
    assert main(["explain", str(explain_digits.path), "--input-file", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "a")]) == 2
    assert "(2, 7, 7) is not accepted" in capsys.readouterr().err
    assert main(["explain", str(text_artifact.path), "--input", "   ", "--out", str(tmp_path / "b")]) == 2
    assert "empty text" in capsys.readouterr().err
    assert main(["explain", str(text_artifact.path), "--input", "good", "--target", "7", "--out", str(tmp_path / "c")]) == 2
    assert "--target '7' is out of range" in capsys.readouterr().err
    assert main(["explain", str(text_artifact.path), "--input", "good", "--baseline", "blur", "--out", str(tmp_path / "d")]) == 2
    assert "--baseline blur is not accepted" in capsys.readouterr().err
    (tmp_path / "blank.txt").write_text("\n  \n")
    assert main(["explain", str(text_artifact.path), "--input-file", str(tmp_path / "blank.txt"), "--out", str(tmp_path / "e")]) == 2
    assert "holds no text" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_bad_next_token_targets_are_clear_errors(lm_artifact, tmp_path, capsys):
    assert main(["explain", str(lm_artifact.path), "--input", "the food", "--target", "99999999", "--out", str(tmp_path / "a")]) == 2
    assert "--target 99999999 is out of range" in capsys.readouterr().err
    assert main(["explain", str(lm_artifact.path), "--input", "the food", "--target", "food was", "--out", str(tmp_path / "b")]) == 2
    assert "is 2 tokens" in capsys.readouterr().err
    assert main(["explain", str(lm_artifact.path), "--input", "", "--out", str(tmp_path / "c")]) == 2
    assert "empty text" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")
