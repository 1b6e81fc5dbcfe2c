"""PII scrubbing: Faker-made PII found (en_US, zh_CN, de_DE), clean sentences left alone, modes, formats, errors."""
import json
from pathlib import Path

import pytest

import tamer
from tamer.cli import main
from tamer.config import make_config
from tamer.errors import UsageError
from tamer.protection import DecryptionError, ScrubConfig
from tamer.protection.detect import ENTITIES, find_pii
from tamer.protection.scrub import read_pseudonyms

from pii_corpus import pii_corpus, score

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.mark.parametrize("locale", ["en_US", "zh_CN", "de_DE"])
def test_faker_pii_precision_and_recall(locale):
    corpus = pii_corpus(locale, per_entity=60, seed=7)
    scores = score([find_pii(text) for text, _ in corpus], corpus)
    for entity, s in scores.items():
        assert s["recall"] >= 0.98, (locale, entity, s)
        assert s["precision"] >= 0.98, (locale, entity, s)


def test_numbers_that_fail_their_checksum_are_left_alone():
    text = ("Order 4111111111111112 shipped; ref GB82WEST12345698765433; id 110105194912310021; "
            "code 666-12-3456; version 1.2.3.4.5; 300.1.1.1; score 10:30:00; 2 stars out of 5; call 12345.")
    assert find_pii(text) == []


@pytest.mark.skipif(not (SHARED / "data" / "sentiment").is_dir(), reason="needs ../shared/data/sentiment")
def test_sentiment_sentences_get_almost_no_masks():
    lines = [l.rsplit("\t", 1)[0] for f in sorted((SHARED / "data" / "sentiment").glob("*_labelled.txt"))
             for l in f.read_text(encoding="utf-8", errors="replace").splitlines()]
    flagged = [l for l in lines if find_pii(l, ENTITIES)]
    assert len(lines) >= 1000 and len(flagged) <= 0.01 * len(lines), flagged[:5]


def test_person_names_only_in_context():
    found = find_pii("Yesterday Mr. John Smith met 王小明先生 and said: my name is Anna Weber.", ["person"])
    assert [f.text for f in found] == ["John Smith", "王小明", "Anna Weber"]
    assert find_pii("The Great Wall was great.", ["person"]) == []


def test_modes(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("mail bob@example.com or bob@example.com, card 4111 1111 1111 1111\n", encoding="utf-8")
    masked = tamer.scrub(src, out=tmp_path / "m.txt", progress=False)
    assert (tmp_path / "m.txt").read_text() == "mail [EMAIL] or [EMAIL], card [CARD]\n"
    assert masked.counts == {"email": 2, "credit_card": 1} and masked.lines == 1
    tamer.scrub(src, out=tmp_path / "r.txt", mode="redact", progress=False)
    assert (tmp_path / "r.txt").read_text() == "mail  or , card \n"
    key = tamer.keygen(tmp_path / "k.key")
    tamer.scrub(src, out=tmp_path / "h.txt", mode="hash", key_file=str(key), progress=False)
    hashed = (tmp_path / "h.txt").read_text()
    assert "bob@" not in hashed and hashed.count(hashed.split()[1]) == 2  # same value, same digest


def test_pseudonymize_is_consistent_and_reversible_only_with_the_key(tmp_path):
    key, other = tamer.keygen(tmp_path / "k.key"), tamer.keygen(tmp_path / "o.key")
    rows = [{"user": "ann", "text": "reach me at ann@example.com or +1-202-555-0143", "n": 3},
            {"user": "bob", "text": "ann@example.com again", "n": 4}]
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "p.jsonl", mode="pseudonymize", key_file=str(key), progress=False)
    out = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    token = out[0]["text"].split()[3]
    assert token.startswith("EMAIL_") and out[1]["text"] == f"{token} again" and out[0]["n"] == 3
    assert report.by_column == {"text": {"email": 2, "phone": 1}}
    mapping = Path(report.mapping)
    assert b"ann@example.com" not in mapping.read_bytes()
    with pytest.raises(DecryptionError):
        read_pseudonyms(mapping, tamer.protection.secret_from_options(str(other)))
    restored = tamer.scrub(tmp_path / "p.jsonl", restore=mapping, key_file=str(key), out=tmp_path / "back.jsonl")
    assert [json.loads(l) for l in Path(restored).read_text().splitlines()] == rows
    again = tamer.scrub(src, out=tmp_path / "p2.jsonl", mode="pseudonymize", key_file=str(key), progress=False)
    assert (tmp_path / "p2.jsonl").read_text() == (tmp_path / "p.jsonl").read_text()  # same key, same tokens
    assert again.counts == report.counts


def test_csv_columns_and_counts_per_column(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text('name,contact,note\nAnn,ann@example.com,"IBAN DE89 3704 0044 0532 0130 00, thanks"\n'
                   'Bob,bob@example.org,fine\n', encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "o.csv", columns=("contact",), progress=False)
    assert report.by_column == {"contact": {"email": 2}}
    assert "DE89" in (tmp_path / "o.csv").read_text()
    report = tamer.scrub(src, out=tmp_path / "all.csv", progress=False)
    assert report.by_column == {"contact": {"email": 2}, "note": {"iban": 1}}
    tsv = tmp_path / "a.tsv"
    tsv.write_text("id\ttext\n1\t身份证号码：11010519491231002X\n", encoding="utf-8")
    assert tamer.scrub(tsv, out=tmp_path / "o.tsv", progress=False).counts == {"cn_resident_id": 1}
    assert (tmp_path / "o.tsv").read_text(encoding="utf-8") == "id\ttext\n1\t身份证号码：[CN_ID]\n"


def test_config_refusals():
    for bad in ({"entities": ("email", "passport")}, {"mode": "shred"}, {"lang": ("fr",)}, {"mode": "pseudonymize"},
                {"mode": "hash"}):
        with pytest.raises(UsageError):
            make_config(ScrubConfig, bad)


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "a.csv"
    src.write_text("a,b\nx@example.com,2\n", encoding="utf-8")
    (tmp_path / "a.pdf").write_text("x")
    bad = [
        ["scrub", str(src), "--entities", "email,bogus", "--out", str(tmp_path / "o.csv")],
        ["scrub", str(src), "--mode", "shred", "--out", str(tmp_path / "o.csv")],
        ["scrub", str(src), "--mode", "pseudonymize", "--out", str(tmp_path / "o.csv")],
        ["scrub", str(src), "--mode", "hash", "--out", str(tmp_path / "o.csv")],
        ["scrub", str(src), "--columns", "zzz", "--out", str(tmp_path / "o.csv")],
        ["scrub", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.csv")],
        ["scrub", str(tmp_path / "a.pdf"), "--out", str(tmp_path / "o.csv")],
        ["scrub", str(src), "--out", str(src)],
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in bad:
        assert main(argv) == 2, argv
        assert "error" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(["scrub", str(src), "--out", str(tmp_path / "o.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"email": 1}
