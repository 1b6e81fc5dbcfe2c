"""ONNX export: the graph run by ONNX Runtime agrees with the PyTorch model (fp32 exactly, int8 closely)."""
import pytest
import torch

import tamer


def test_fp32_onnx_parity(text_artifact, tmp_path):
    child = tamer.compress(text_artifact, out=tmp_path / "o", progress=False, export="onnx")
    report = child.report
    assert (child.path / "model.onnx").is_file() and "model.onnx" in child.manifest["files"]
    assert child.manifest["onnx"]["onnx_max_abs_diff"] < 1e-4
    assert report.gate_metrics()["onnx_cosine"] > 0.99999
    parity = child.manifest["onnx"]["test_parity"]  # the exported graph measured on the whole test split
    assert parity["prediction_agreement"] == 1.0 and parity["max_abs_diff"] < 1e-4
    assert child.metrics["test"]["accuracy"] == pytest.approx(tamer.evaluate(text_artifact).metrics["accuracy"], abs=1e-9)


def test_int8_onnx_parity(digits_artifact, tmp_path):
    child = tamer.compress(digits_artifact, out=tmp_path / "o", progress=False, quantize="int8", export="onnx")
    assert child.manifest["format"] == "int8"
    assert child.manifest["onnx"]["onnx_cosine"] > 0.99
    parent = tamer.load(tmp_path / "o.quantize")
    parity = child.manifest["onnx"]["test_parity"]
    # ONNX Runtime's own int8 GEMMs: measured on the test split, not copied from the eager int8 parent
    assert parity["examples"] == child.metrics["test"]["examples"] == parent.metrics["test"]["examples"]
    assert parity["eager_accuracy"] == pytest.approx(parent.metrics["test"]["accuracy"])
    assert parity["onnx_accuracy"] == child.metrics["test"]["accuracy"]
    assert parity["prediction_agreement"] > 0.95 and abs(parity["onnx_accuracy"] - parity["eager_accuracy"]) < 0.03
    assert (tmp_path / "o.quantize").is_dir()  # the intermediate step is an artifact too
    assert child.manifest["parents"] == [tamer.load(tmp_path / "o.quantize").id]
    task, model = child.load_model()  # the export keeps its parent's int8 codes: the same eager model
    _, same = parent.load_model()
    batch = task.collate([task.prepare(child.split_seed).test[i] for i in range(16)])
    assert torch.equal(task.forward(model, batch), task.forward(same, batch))


def test_int4_export_is_refused(digits_artifact, tmp_path):
    from tamer.errors import UsageError

    q = tamer.compress(digits_artifact, out=tmp_path / "q", progress=False, quantize="int4", group_size=32)
    with pytest.raises(UsageError, match="fp32 and int8"):
        tamer.compress(q, out=tmp_path / "o", progress=False, export="onnx")
    assert not (tmp_path / "o").exists()
