"""`tamer predict` / Artifact.predict, `tamer report`, `tamer --version` and `tamer train TASK --help`."""
import json

import numpy as np
import pytest
import torch

import tamer
from tamer.cli import main


def test_predict_index_agrees_with_the_model_and_the_test_label(digits_artifact, capsys):
    task, model = digits_artifact.load_model()
    test = task.prepare(digits_artifact.split_seed).test
    batch = task.collate([test[5]])
    with torch.no_grad():
        probs = model(pixels=batch["pixels"]).softmax(-1)[0]
    assert main(["predict", str(digits_artifact.path), "--index", "5", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["predictions"][0]
    assert row["label"] == str(int(probs.argmax())) and row["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert row["expected"] == str(int(batch["labels"][0]))
    assert main(["predict", str(digits_artifact.path), "--index", "100000"]) == 2
    assert "outside the test split" in capsys.readouterr().err


def test_artifact_predict_on_raw_images(digits_artifact):
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = digits_artifact.predict(np.stack([d.images[0], d.images[1]]))
    assert [r["label"] for r in rows] == ["0", "1"]  # two training-set digits a 0.95 model gets right


def test_predict_text_and_generation(tmp_path, capsys):
    rows = [("great food and service", "pos"), ("terrible, cold food", "neg")] * 30
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{t}\t{y}\n" for t, y in rows))
    art = tamer.train("text-classification", data=str(data), encoder="tiny", epochs=3, lr=3e-3, out=tmp_path / "t",
                      progress=False)
    got = art.predict(["great food and service", "terrible, cold food"])
    assert [r["label"] for r in got] == ["pos", "neg"] and set(got[0]["probabilities"]) == {"neg", "pos"}
    (tmp_path / "in.txt").write_text("great food and service\n\nterrible, cold food\n")
    assert main(["predict", str(art.path), "--input-file", str(tmp_path / "in.txt"), "--json"]) == 0
    assert [r["label"] for r in json.loads(capsys.readouterr().out)["predictions"]] == ["pos", "neg"]
    lm_data = tmp_path / "l.txt"
    lm_data.write_text("\n".join("the cat sat on the mat" for _ in range(80)))
    lm = tamer.train("causal-lm", data=str(lm_data), model="tiny", vocab_size=300, block_size=16, epochs=3,
                     out=tmp_path / "l", progress=False)
    out = tamer.predict(lm, "the cat", max_new_tokens=4)[0]
    assert out["generated_text"].startswith(out["prompt"]) and len(out["generated_text"]) > len(out["prompt"])


def test_report_writes_a_page_for_an_artifact_and_a_run(digits_artifact, tmp_path, capsys):
    page = tmp_path / "a.html"
    assert main(["report", str(digits_artifact.path), "--out", str(page), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["html"] == str(page)
    text = page.read_text()
    assert digits_artifact.id in text and "Evaluate" in text
    run = tamer.run({"task": "digits", "stages": [{"train": {"epochs": 1}}]}, out=tmp_path / "run", progress=False)
    (tmp_path / "run" / "report.html").unlink()
    assert main(["report", str(tmp_path / "run")]) == 0
    assert run.name in (tmp_path / "run" / "report.html").read_text()


def test_version_and_task_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"tamer {tamer.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "text-classification", "--help"])
    out = capsys.readouterr().out
    assert "options of task text-classification" in out and "--encoder" in out and "--epochs" in out
