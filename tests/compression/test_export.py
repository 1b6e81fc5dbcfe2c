"""ONNX export: the graph run by ONNX Runtime agrees with the PyTorch model (fp32 exactly, int8 closely)."""
import pytest

import tamer


def test_fp32_onnx_parity(text_artifact, tmp_path):
    child, report = tamer.compress(text_artifact, out=tmp_path / "o", progress=False, export="onnx")
    assert (child.path / "model.onnx").is_file() and "model.onnx" in child.manifest["files"]
    assert child.manifest["onnx"]["onnx_max_abs_diff"] < 1e-4
    assert report.gate_metrics()["onnx_cosine"] > 0.99999


def test_int8_onnx_parity(digits_artifact, tmp_path):
    child, report = tamer.compress(digits_artifact, out=tmp_path / "o", progress=False, quantize="int8", export="onnx")
    assert child.manifest["format"] == "int8"
    assert child.manifest["onnx"]["onnx_cosine"] > 0.99
    assert (tmp_path / "o.quantize").is_dir()  # the intermediate step is an artifact too
    assert child.manifest["parents"] == [tamer.load(tmp_path / "o.quantize").id]
    task, model = child.load_model()
    assert model is not None


def test_int4_export_is_refused(digits_artifact, tmp_path):
    from tamer.errors import UsageError

    q, _ = tamer.compress(digits_artifact, out=tmp_path / "q", progress=False, quantize="int4", group_size=32)
    with pytest.raises(UsageError, match="fp32 and int8"):
        tamer.compress(q, out=tmp_path / "o", progress=False, export="onnx")
    assert not (tmp_path / "o").exists()
