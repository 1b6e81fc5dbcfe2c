"""Encrypted artifacts: exact round trip, readable-but-authenticated manifest, verbs open them with the key."""
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import tamer
from tamer.cli import main
from tamer.errors import ArtifactError
from tamer.protection import DecryptionError

SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, artifact_factory):
    root = tmp_path_factory.mktemp("sealed")
    art = artifact_factory(root / "a")
    key = tamer.keygen(root / "k.key")
    tamer.encrypt(art, out=root / "e", key_file=str(key), chunk_size=65536)  # the minimum: the weights span several chunks
    return root, art, key


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_encrypt_then_decrypt_restores_the_artifact_exactly(trained, tmp_path):
    root, art, key = trained
    assert not (root / "e" / "model.safetensors").exists()
    assert json.loads((root / "e" / "manifest.json").read_text())["id"] == art.id  # readable
    tamer.decrypt(root / "e", out=tmp_path / "d", key_file=str(key))
    assert _files(tmp_path / "d") == _files(art.path)


def test_verbs_open_an_encrypted_artifact_with_the_key(trained, monkeypatch):
    root, art, key = trained
    with pytest.raises(ArtifactError, match="encrypted"):
        tamer.load(root / "e")
    opened = tamer.load(root / "e", key_file=str(key))
    assert opened.id == art.id
    assert tamer.evaluate(root / "e", key_file=str(key)).metrics["accuracy"] == pytest.approx(art.metrics["test"]["accuracy"])


def test_passphrase_round_trip(trained, tmp_path, monkeypatch):
    root, art, _ = trained
    monkeypatch.setenv("TAMER_TEST_PASS", "a good long passphrase")
    tamer.encrypt(art, out=tmp_path / "e", passphrase_env="TAMER_TEST_PASS")
    assert json.loads((tmp_path / "e" / "encryption.json").read_text())["kdf"] == "scrypt"
    assert tamer.load(tmp_path / "e", passphrase_env="TAMER_TEST_PASS").id == art.id
    monkeypatch.setenv("TAMER_TEST_PASS", "not the passphrase")
    with pytest.raises(DecryptionError, match="wrong key"):
        tamer.decrypt(tmp_path / "e", out=tmp_path / "d", passphrase_env="TAMER_TEST_PASS")
    assert not (tmp_path / "d").exists()


def test_edited_manifest_or_weights_are_refused(trained, tmp_path):
    import shutil

    root, art, key = trained
    for target in ("manifest.json", "model.safetensors.enc", "encryption.json"):
        copy = tmp_path / f"copy-{target}"
        shutil.copytree(root / "e", copy)
        data = bytearray((copy / target).read_bytes())
        if target.endswith(".json"):
            text = data.decode()
            text = text.replace("digits", "digitz", 1) if "digits" in text else text.replace("key-file", "key-fill", 1)
            data = bytearray(text.encode())
        else:
            data[len(data) // 2] ^= 0x10
        (copy / target).write_bytes(bytes(data))
        with pytest.raises(DecryptionError):
            tamer.decrypt(copy, out=tmp_path / "out", key_file=str(key))
        assert not (tmp_path / "out").exists()


def test_cli_keygen_encrypt_decrypt_and_bad_input(trained, tmp_path, capsys):
    root, art, key = trained
    assert main(["keygen", "--out", str(tmp_path / "k2.key"), "--json"]) == 0
    assert main(["encrypt", str(art.path), "--key-file", str(tmp_path / "k2.key"), "--out", str(tmp_path / "e"), "--json"]) == 0
    assert main(["evaluate", str(tmp_path / "e"), "--key-file", str(tmp_path / "k2.key"), "--json"]) == 0
    capsys.readouterr()
    bad = [
        ["encrypt", str(art.path), "--out", str(tmp_path / "x")],  # no key
        ["encrypt", str(art.path), "--key-file", str(key), "--passphrase-env", "X", "--out", str(tmp_path / "x")],
        ["encrypt", str(art.path), "--key-file", str(key), "--chunk-size", "0", "--out", str(tmp_path / "x")],
        ["encrypt", str(art.path), "--key-file", str(tmp_path / "missing.key"), "--out", str(tmp_path / "x")],
        ["decrypt", str(tmp_path / "e"), "--key-file", str(key), "--out", str(tmp_path / "x")],  # wrong key
        ["decrypt", str(art.path), "--key-file", str(key), "--out", str(tmp_path / "x")],  # not encrypted
        ["evaluate", str(tmp_path / "e")],  # encrypted, no key
        ["keygen", "--out", str(key)],  # exists
    ]
    for argv in bad:
        assert main(argv) == 2, argv
        assert "error" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_recipe_stages_scrub_then_encrypt(tmp_path, artifact_factory):
    from tamer.pipeline import run as run_recipe

    data = tmp_path / "reviews.tsv"
    data.write_text("text\tlabel\nmail me at ann@example.com\t1\ngreat phone\t1\n", encoding="utf-8")
    run = run_recipe({"task": "text-classification", "options": {"data": str(data)},
                      "stages": [{"scrub": {}, "gate": {"found_email": ">= 1"}}]}, out=tmp_path / "run1", progress=False)
    assert run.status == "passed"
    assert "[EMAIL]" in (tmp_path / "run1" / "01-scrub" / "reviews.tsv").read_text()
    art = artifact_factory(tmp_path / "a")
    run = run_recipe({"task": "digits", "artifact": str(art.path), "stages": [{"encrypt": {}}]},
                     out=tmp_path / "run2", progress=False)
    folder = tmp_path / "run2" / "01-encrypt"
    key = next(Path(os.environ["TAMER_KEY_DIR"]).glob(f"run2-{art.id}*.key"))  # outside the run folder (hole 10)
    assert run.status == "passed" and not list((tmp_path / "run2").rglob("*.key"))
    assert run.plaintext_copies == [str(art.path)]  # the input artifact, outside the run, is named as left in clear
    assert tamer.load(folder / "artifact.encrypted", key_file=str(key)).id == art.id


# -- a key means sealed or refused (issue 13, hole 1) ---------------------------------------------------------------
def test_a_key_never_opens_a_plain_artifact(trained, tmp_path, capsys):
    import shutil

    root, art, key = trained
    with pytest.raises(ArtifactError, match="not a sealed artifact"):
        tamer.load(art.path, key_file=str(key))
    with pytest.raises(ArtifactError, match="not a sealed artifact"):
        tamer.evaluate(art.path, key_file=str(key))
    swapped = tmp_path / "e"  # the sealed folder replaced by a plain artifact
    shutil.copytree(art.path, swapped)
    capsys.readouterr()
    assert main(["evaluate", str(swapped), "--key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert "not a sealed artifact" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_plaintext_file_planted_in_a_sealed_folder_is_refused(trained, tmp_path):
    import shutil

    root, art, key = trained
    copy = tmp_path / "e"
    shutil.copytree(root / "e", copy)
    shutil.copy(art.path / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(ArtifactError, match="'model.safetensors', which its encryption.json does not list"):
        tamer.load(copy, key_file=str(key))
    with pytest.raises(ArtifactError, match="does not list"):
        tamer.decrypt(copy, out=tmp_path / "d", key_file=str(key))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["../outside.bin", "/tmp/outside.bin", "a/../../outside.bin"])
def test_names_in_encryption_json_stay_inside_the_folder_before_anything_is_opened(trained, tmp_path, monkeypatch, name):
    import shutil

    from tamer.protection import crypto

    root, art, key = trained
    copy = tmp_path / "e"
    shutil.copytree(root / "e", copy)
    info = json.loads((copy / "encryption.json").read_text())
    info["files"] = {name: name + ".enc", **info["files"]}
    (copy / "encryption.json").write_text(json.dumps(info))
    monkeypatch.setattr(crypto, "open_header", lambda *a: pytest.fail("a sealed file was opened"))
    with pytest.raises(ArtifactError, match="not a plain relative path"):
        tamer.load(copy, key_file=str(key))


# -- opened in memory, never on disk (hole 11) ----------------------------------------------------------------------
def _tree(*roots) -> set[str]:
    seen = set()
    for root in roots:
        for folder, dirs, files in os.walk(root, onerror=lambda e: None):
            seen.update(os.path.join(folder, n) for n in dirs + files)
    return seen


def _leaks(before: set[str], roots, marker: bytes) -> list[str]:
    """New entries under `roots` that are tamer's or hold the plaintext weights (other users share /dev/shm)."""
    found = []
    for p in sorted(_tree(*roots) - before):
        if "tamer" in os.path.basename(p):
            found.append(p)
            continue
        try:
            if os.path.isfile(p) and os.path.getsize(p) < 1 << 30 and marker in Path(p).read_bytes():
                found.append(p)
        except OSError:
            pass
    return found


def _private_tmp(monkeypatch, tmp_path) -> Path:
    private = tmp_path / "tmpdir"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return private


def _marker(art) -> bytes:
    weights = (art.path / "model.safetensors").read_bytes()
    return weights[len(weights) // 2:len(weights) // 2 + 64]  # random weights: found in no other file


def test_opening_and_evaluating_a_sealed_artifact_writes_no_plaintext(trained, tmp_path, monkeypatch):
    root, art, key = trained
    private = _private_tmp(monkeypatch, tmp_path)
    roots = [r for r in (SHM, private) if r.is_dir()]
    before = _tree(*roots)
    opened = tamer.load(root / "e", key_file=str(key))
    report = tamer.evaluate(opened)
    assert opened.path == root / "e" and opened.in_memory and report.artifact == str(root / "e")
    assert report.metrics["accuracy"] == pytest.approx(art.metrics["test"]["accuracy"])
    assert _leaks(before, roots, _marker(art)) == []
    assert _tree(private) == set()


def test_a_process_killed_after_opening_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    root, art, key = trained
    private = _private_tmp(monkeypatch, tmp_path)
    roots = [r for r in (SHM, private) if r.is_dir()]
    before = _tree(*roots)
    code = ("import sys, time, tamer\nart = tamer.load(sys.argv[1], key_file=sys.argv[2])\nart.load_model()\n"
            "print('opened', flush=True)\ntime.sleep(120)\n")
    src = Path(tamer.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root / "e"), str(key)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "opened", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    assert _leaks(before, roots, _marker(art)) == []
    assert _tree(private) == set()


def test_verbs_run_on_a_sealed_artifact_opened_in_memory(trained, tmp_path):
    root, art, key = trained
    opened = tamer.load(root / "e", key_file=str(key))
    tamer.encrypt(opened, out=tmp_path / "again", key_file=str(key))  # sealed again straight from memory
    assert tamer.load(tmp_path / "again", key_file=str(key)).id == art.id
    child = tamer.compress(opened, out=tmp_path / "q", quantize="int8", progress=False)
    report = child.report
    assert report.parent == str(root / "e") and child.manifest["parents"] == [art.id]


@pytest.mark.parametrize("task", ["text-classification", "causal-lm"])
def test_a_sealed_text_artifact_restores_its_tokenizer_from_memory(task, tmp_path):
    if task == "text-classification":
        data = tmp_path / "d.tsv"
        data.write_text("".join(f"{'great food' if i % 2 else 'cold and rude'} {i}\t{i % 2}\n" for i in range(40)))
        options = {"encoder": "tiny"}
    else:
        data = tmp_path / "d.txt"
        data.write_text("".join(f"the cat sat on the mat number {i}\n" for i in range(40)))
        options = {"vocab_size": 300}
    art = tamer.train(task, data=str(data), epochs=1, out=tmp_path / "a", progress=False, **options)
    key = tamer.keygen(tmp_path / "k.key")
    tamer.encrypt(art, out=tmp_path / "e", key_file=str(key))
    opened = tamer.load(tmp_path / "e", key_file=str(key))
    plain_task, _ = art.load_model()
    sealed_task, _ = opened.load_model()
    texts = ["great food 7", "the cat sat", "unseen wörds here"]
    assert sealed_task.tokenizer(texts)["input_ids"] == plain_task.tokenizer(texts)["input_ids"]
    assert sealed_task.tokenizer.pad_token_id == plain_task.tokenizer.pad_token_id
    assert len(sealed_task.tokenizer) == len(plain_task.tokenizer)
    metric = "accuracy" if task == "text-classification" else "perplexity"
    got = tamer.evaluate(opened, data=str(data)).metrics[metric]
    assert got == pytest.approx(tamer.evaluate(art, data=str(data)).metrics[metric])


# -- decrypt --out writes owner-only files (hole 15) ----------------------------------------------------------------
def test_decrypted_files_are_owner_only(tmp_path):
    import torch

    from tamer.artifact import save_artifact

    def tokenizer(folder):
        (folder / "tokenizer").mkdir()
        (folder / "tokenizer" / "tokenizer.json").write_text("{}")

    art = save_artifact(tmp_path / "a", {"w": torch.ones(3)}, task={"name": "digits"}, model_config={}, verb="test",
                        options={}, write_files=tokenizer)
    key = tamer.keygen(tmp_path / "k.key")
    tamer.encrypt(art, out=tmp_path / "e", key_file=str(key))
    old = os.umask(0o022)
    try:
        assert main(["decrypt", str(tmp_path / "e"), "--key-file", str(key), "--out", str(tmp_path / "d")]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "d"
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes == {".": 0o700, "manifest.json": 0o600, "model.safetensors": 0o600, "tokenizer": 0o700,
                     "tokenizer/tokenizer.json": 0o600}


# -- format version 1 folders still open (hole 13) ------------------------------------------------------------------
def test_a_version_1_sealed_folder_still_opens(trained, tmp_path):
    from v1_format import seal_v1_folder

    from tamer.protection.keys import read_key_file

    root, art, key = trained
    seal_v1_folder(art.path, tmp_path / "old", read_key_file(key))
    assert tamer.load(tmp_path / "old", key_file=str(key)).id == art.id
    tamer.decrypt(tmp_path / "old", out=tmp_path / "d", key_file=str(key))
    assert _files(tmp_path / "d") == _files(art.path)
    info = json.loads((tmp_path / "old" / "encryption.json").read_text())
    info["chunk_size"] = 8192  # the version 1 tag covers encryption.json too
    (tmp_path / "old" / "encryption.json").write_text(json.dumps(info))
    with pytest.raises(DecryptionError, match="changed after encryption"):
        tamer.load(tmp_path / "old", key_file=str(key))
