"""Artifact: round trip, content id, tamper detection, atomic writes."""
import json

import pytest
import torch

from tamer.artifact import MANIFEST, WEIGHTS, Artifact, save_artifact
from tamer.errors import ArtifactError, UsageError


def _save(out, **kw):
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(3)}
    args = dict(task={"name": "digits", "config": {}}, model_config={"arch": "x"}, verb="test", options={"seed": 1})
    args.update(kw)
    return save_artifact(out, state, **args), state


def test_round_trip_keeps_tensors_and_manifest(tmp_path):
    art, state = _save(tmp_path / "a", metrics={"accuracy": 0.5})
    loaded = Artifact.load(tmp_path / "a")
    assert loaded.manifest == art.manifest
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v)
    m = loaded.manifest
    for key in ("schema_version", "task", "model_config", "format", "metrics", "verb", "options", "parents",
                "weights_sha256", "versions", "created_at", "id"):
        assert key in m
    assert m["versions"]["torch"] == torch.__version__


def test_id_is_derived_from_content(tmp_path):
    a, _ = _save(tmp_path / "a")
    b, _ = _save(tmp_path / "b")
    c, _ = _save(tmp_path / "c", options={"seed": 2})
    assert a.id == b.id != c.id


def test_flipped_byte_in_weights_is_refused(tmp_path):
    _save(tmp_path / "a")
    path = tmp_path / "a" / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        Artifact.load(tmp_path / "a")


def test_edited_manifest_is_refused(tmp_path):
    _save(tmp_path / "a", metrics={"accuracy": 0.5})
    path = tmp_path / "a" / MANIFEST
    m = json.loads(path.read_text())
    m["metrics"]["accuracy"] = 0.99
    path.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="edited"):
        Artifact.load(tmp_path / "a")


def test_missing_or_foreign_folder_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a tamer artifact"):
        Artifact.load(tmp_path / "empty")


def test_crash_while_writing_leaves_nothing(tmp_path):
    def boom(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _save(tmp_path / "a", write_files=boom)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_never_overwritten(tmp_path):
    _save(tmp_path / "a")
    before = (tmp_path / "a" / MANIFEST).read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        _save(tmp_path / "a", options={"seed": 3})
    assert (tmp_path / "a" / MANIFEST).read_bytes() == before


def test_tied_weights_are_saved(tmp_path):
    shared = torch.randn(5, 3)
    art = save_artifact(tmp_path / "t", {"a": shared, "b": shared}, task={"name": "x"}, model_config={}, verb="t", options={})
    sd = Artifact.load(art.path).state_dict()
    assert torch.equal(sd["a"], sd["b"])


def _relist(folder, files):
    """Rewrite the manifest with `files` as its file list and a matching id (so only the list can be at fault)."""
    from tamer.artifact import content_id

    m = json.loads((folder / MANIFEST).read_text())
    m["files"] = files
    m["id"] = content_id(m)
    (folder / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize("name", ["../outside.bin", "/tmp/outside.bin", "sub/../../outside.bin", "./model.bin", "a//b", "C:/x"])
def test_manifest_names_outside_the_folder_are_refused_before_any_file_is_opened(tmp_path, monkeypatch, name):
    import hashlib

    import tamer.artifact as artifact_module

    art, _ = _save(tmp_path / "a")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not part of the artifact")
    _relist(art.path, {**art.manifest["files"], name: hashlib.sha256(outside.read_bytes()).hexdigest()})
    opened = []
    monkeypatch.setattr(artifact_module, "sha256_file", lambda p: opened.append(p) or "0")
    with pytest.raises(ArtifactError, match="not a plain relative path"):
        Artifact.load(tmp_path / "a")
    assert opened == []


def test_a_file_the_manifest_does_not_list_is_refused(tmp_path):
    _save(tmp_path / "a")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "extra.py").write_text("print('hello')")
    with pytest.raises(ArtifactError, match="'sub/extra.py', which its manifest does not list"):
        Artifact.load(tmp_path / "a")


def test_writers_leave_no_unlisted_file(tmp_path):
    def tokenizer(folder):
        (folder / "tokenizer").mkdir()
        (folder / "tokenizer" / "tokenizer.json").write_text("{}")

    art, _ = _save(tmp_path / "a", write_files=tokenizer)
    assert sorted(art.manifest["files"]) == ["model.safetensors", "tokenizer/tokenizer.json"]
    assert Artifact.load(art.path).manifest == art.manifest


def test_an_artifact_in_memory_is_checked_like_a_folder_and_reads_the_same(tmp_path):
    art, state = _save(tmp_path / "a")
    files = {n: (art.path / n).read_bytes() for n in [MANIFEST, *art.manifest["files"]]}
    mem = Artifact.from_memory(tmp_path / "sealed", files)
    assert mem.in_memory and mem.path == tmp_path / "sealed" and mem.manifest == art.manifest
    assert mem.read_bytes(WEIGHTS) == art.read_bytes(WEIGHTS) and mem.size(WEIGHTS) == art.size(WEIGHTS)
    for k, v in state.items():
        assert torch.equal(mem.state_dict()[k], v)
    with pytest.raises(ArtifactError, match="no path on disk"):
        mem.file(WEIGHTS)
    with pytest.raises(ArtifactError, match="has no file"):
        mem.read_bytes("../manifest.json")
    bad = dict(files)
    bad[WEIGHTS] = bad[WEIGHTS][:-1] + bytes([bad[WEIGHTS][-1] ^ 1])
    with pytest.raises(ArtifactError, match="sha256"):
        Artifact.from_memory(tmp_path / "x", bad)
    with pytest.raises(ArtifactError, match="does not list"):
        Artifact.from_memory(tmp_path / "x", {**files, "extra.bin": b"x"})
