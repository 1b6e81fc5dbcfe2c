"""`tamer serve` on the command line: making keys, and refusing a bad start in one sentence (exit 2)."""
from __future__ import annotations

import json

from tamer.cli import main
from tamer.serving import KeyRing


def test_make_api_key_prints_the_key_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "keys"
    assert main(["serve", "--make-api-key", "ci-bot", "--api-key-file", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert main(["serve", "--make-api-key", "ops", "--admin", "--api-key-file", str(path)]) == 0
    admin = capsys.readouterr().out.split()[0]
    ring = KeyRing.load(path)
    assert out["role"] == "client" and ring.identify(f"Bearer {out['key']}").name == "ci-bot"
    assert ring.identify(f"Bearer {admin}").role == "admin"
    assert out["key"] not in path.read_text() and admin not in path.read_text()


def test_a_bad_start_is_one_sentence_and_exit_2(tmp_path, digits_artifact, capsys):
    cases = [
        (["serve"], "ARTIFACT"),
        (["serve", str(digits_artifact.path)], "--no-auth"),
        (["serve", str(tmp_path / "missing"), "--no-auth"], "missing"),
        (["serve", str(digits_artifact.path), "--no-auth", "--max-batch-size", "0"], "--max-batch-size"),
        (["serve", "--make-api-key", "x"], "--api-key-file"),
        (["serve", "--make-api-key", "bad name!", "--api-key-file", str(tmp_path / "k")], "key name"),
        (["serve", str(digits_artifact.path), "--api-key-file", str(tmp_path / "none")], "cannot be read"),
        (["serve", str(digits_artifact.path), "--no-auth", "--key-file", str(tmp_path / "nokey")], "nokey"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)


def test_a_taken_port_is_refused_in_one_sentence(digits_artifact, capsys):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["serve", str(digits_artifact.path), "--no-auth", "--port", str(taken.getsockname()[1])]) == 2
    finally:
        taken.close()
    assert "cannot listen" in capsys.readouterr().err
