"""Scrubbing files: nothing in a CSV or JSONL record is skipped (holes 5), hash mode is keyed and tokens carry 64
bits without silent collisions (8), files that hold PII are created 0600 (15)."""
import csv
import json
import os
import stat

import pytest

import tamer
from tamer.cli import main
from tamer.config import make_config
from tamer.errors import DataError, UsageError
from tamer.protection import ScrubConfig
from tamer.protection import scrub as scrub_module


def test_csv_ragged_rows_are_scrubbed_whole_and_counted(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text("name,note\n"
                   "Ann,fine,ann@example.com,13812345678\n"          # cells beyond the header
                   "bob@example.org\n"                                # a short row: the cells may have slid
                   "Cid,call +1 202 555 0143\n"
                   "\n", encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "o.csv", columns=("note",), progress=False)
    rows = list(csv.reader((tmp_path / "o.csv").open(encoding="utf-8")))
    assert rows == [["name", "note"], ["Ann", "fine", "[EMAIL]", "[PHONE]"], ["[EMAIL]"], ["Cid", "call [PHONE]"], []]
    assert report.ragged_rows == 2 and report.gate_metrics()["ragged_rows"] == 2
    assert report.counts == {"email": 2, "phone": 2}
    assert report.by_column == {"(beyond header)": {"email": 1, "phone": 1}, "name": {"email": 1}, "note": {"phone": 1}}
    assert "2 ragged rows scrubbed whole" in report.summary()


def test_csv_header_cells_are_scrubbed_too(tmp_path):
    src = tmp_path / "a.tsv"
    src.write_text("id\tann@example.com\n1\tx\n", encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "o.tsv", progress=False)
    assert (tmp_path / "o.tsv").read_text(encoding="utf-8") == "id\t[EMAIL]\n1\tx\n"
    assert report.by_column == {"(header)": {"email": 1}}


def test_jsonl_numbers_and_keys_are_scrubbed_and_the_json_stays_valid(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text('{"phone": 13812345678, "card": 4111111111111111}\n'
                   '{"ann@example.com": {"n": 3, "x": 1.5, "ids": [6205500000000000004, 7]}, "ok": true}\n'
                   '{"a@example.com": 1, "b@example.com": 2}\n', encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "o.jsonl", progress=False)
    lines = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(l) for l in lines[:2]] == [
        {"phone": "[PHONE]", "card": "[CARD]"},
        {"[EMAIL]": {"n": 3, "x": 1.5, "ids": ["[CARD]", 7]}, "ok": True}]
    assert lines[2] == '{"[EMAIL]": 1, "[EMAIL]": 2}'  # two keys masked alike both stay (valid JSON, RFC 8259)
    assert report.counts == {"phone": 1, "credit_card": 2, "email": 3}
    assert report.by_column == {"phone": {"phone": 1}, "card": {"credit_card": 1}, "(key)": {"email": 3},
                                "[EMAIL].ids": {"credit_card": 1}}


def test_jsonl_keys_and_numbers_come_back_with_restore(tmp_path):
    key = tamer.keygen(tmp_path / "k.key")
    src = tmp_path / "a.jsonl"
    src.write_text('{"ann@example.com": {"tel": "+1 202 555 0143"}, "card": "4111111111111111"}\n', encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "p.jsonl", mode="pseudonymize", key_file=str(key), progress=False)
    assert "ann@" not in (tmp_path / "p.jsonl").read_text()
    back = tamer.scrub(tmp_path / "p.jsonl", restore=report.mapping, key_file=str(key), out=tmp_path / "b.jsonl")
    assert json.loads(back.read_text()) == json.loads(src.read_text())


def test_hash_mode_needs_a_key(tmp_path, capsys):
    with pytest.raises(UsageError, match="--mode hash needs --key-file or --passphrase-env"):
        make_config(ScrubConfig, {"mode": "hash"})
    with pytest.raises(UsageError):
        scrub_module.Replacer("hash", None)
    src = tmp_path / "a.txt"
    src.write_text("call 13812345678\n", encoding="utf-8")
    assert main(["scrub", str(src), "--mode", "hash", "--out", str(tmp_path / "o.txt")]) == 2
    assert "--mode hash needs" in capsys.readouterr().err and not (tmp_path / "o.txt").exists()


def test_hash_and_pseudonyms_are_keyed_64_bit_and_consistent(tmp_path, monkeypatch):
    key, other = tamer.keygen(tmp_path / "k.key"), tamer.keygen(tmp_path / "o.key")
    monkeypatch.setenv("SCRUB_PASS", "correct horse battery staple")
    src = tmp_path / "a.txt"
    src.write_text("call 13812345678 or 13812345678, mail ann@example.com\n", encoding="utf-8")
    outs = {}
    for name, mode, opts in (("h1", "hash", {"key_file": str(key)}), ("h2", "hash", {"key_file": str(key)}),
                             ("h3", "hash", {"key_file": str(other)}), ("p1", "pseudonymize", {"key_file": str(key)}),
                             ("q1", "hash", {"passphrase_env": "SCRUB_PASS"}), ("q2", "hash", {"passphrase_env": "SCRUB_PASS"})):
        tamer.scrub(src, out=tmp_path / f"{name}.txt", mode=mode, progress=False, **opts)
        outs[name] = (tmp_path / f"{name}.txt").read_text()
    words = outs["h1"].split()
    assert words[1].startswith("[PHONE:") and len(words[1]) == len("[PHONE:]") + 16 and words[1] == words[3].rstrip(",")
    assert outs["h1"] == outs["h2"] and outs["q1"] == outs["q2"]  # same key, same tokens, across runs
    assert outs["h1"] != outs["h3"] and outs["h1"] != outs["q1"]  # another key, other tokens
    token = outs["p1"].split()[1]
    assert token.startswith("PHONE_") and len(token) == len("PHONE_") + 16
    # the old unkeyed digest: sha256 of entity and value, cut to 40 bits
    import hashlib
    assert hashlib.sha256(b"phone\x0013812345678").hexdigest()[:10] not in outs["h1"]


@pytest.mark.parametrize("mode", ["hash", "pseudonymize"])
def test_a_token_collision_raises_instead_of_merging_two_people(tmp_path, monkeypatch, mode):
    key = tamer.keygen(tmp_path / "k.key")
    monkeypatch.setattr(scrub_module, "TOKEN_HEX", 1)  # 4 bits: 40 distinct values must collide
    src = tmp_path / "a.txt"
    src.write_text("".join(f"user{i}@example.com\n" for i in range(40)), encoding="utf-8")
    with pytest.raises(DataError, match="collision"):
        tamer.scrub(src, out=tmp_path / "o.txt", mode=mode, key_file=str(key), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "k.key"]


def test_restored_pii_and_the_pseudonym_mapping_are_written_0600(tmp_path):
    key = tamer.keygen(tmp_path / "k.key")
    src = tmp_path / "a.csv"
    src.write_text("who,contact\nann,ann@example.com\n", encoding="utf-8")
    old = os.umask(0)  # not the umask's doing
    try:
        report = tamer.scrub(src, out=tmp_path / "p.csv", mode="pseudonymize", key_file=str(key), progress=False)
        restored = tamer.scrub(tmp_path / "p.csv", restore=report.mapping, key_file=str(key), out=tmp_path / "r.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(report.mapping).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(restored).st_mode) == 0o600
    assert restored.read_text() == src.read_text()
    assert not [p for p in tmp_path.iterdir() if "tamer-tmp" in p.name]
