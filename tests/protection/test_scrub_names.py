"""Person and address entities in `scrub`: the issue's example, words that only look like surnames or places, the
modes and consistent pseudonyms, the report when the `ner` extra is missing, and jieba kept quiet and in its cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tamer
from tamer.protection.detect import DEFAULT_ENTITIES, find_pii

pytest.importorskip("jieba")
pytest.importorskip("probablepeople")
pytest.importorskip("usaddress")

SRC = Path(__file__).resolve().parents[2] / "src"


def _found(text, lang=("en", "zh", "de")):
    return [(f.entity, f.text) for f in find_pii(text, ("person", "address"), lang)]


def test_the_issue_example_masks_the_name_and_the_whole_address(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("联系人：王小明，电话 021-62345678，住址上海市浦东新区世纪大道100号\n", encoding="utf-8")
    report = tamer.scrub(src, out=tmp_path / "o.txt", progress=False)
    assert (tmp_path / "o.txt").read_text(encoding="utf-8") == "联系人：[PERSON]，电话 [PHONE]，住址[ADDRESS]\n"
    assert report.counts == {"person": 1, "phone": 1, "address": 1} and report.off == {}
    assert {"person", "address"} <= set(DEFAULT_ENTITIES)


@pytest.mark.parametrize("text", [
    "我把王国的李子张开放在一张纸上。",            # 王国 kingdom, 李子 plum, 张开 open, 一张纸 a sheet of paper
    "王者归来，李白的诗，张家界的风景，黄金周去哪儿？",
    "上海银行和北京大学都在深圳市腾讯计算机系统有限公司旁边。",  # places inside company names
    "他在广州酒家吃饭，坐四川航空去天津港，住南京路步行街附近。",
    "这本书一共有三张图，周末我们去公园。",
])
def test_chinese_words_that_look_like_surnames_or_places_are_left_alone(text):
    assert _found(text) == []


def test_chinese_names_with_cues_and_titles_and_addresses_from_province_to_room():
    assert _found("收件人张伟，寄到北京市朝阳区建国路88号SOHO现代城2号楼1单元1201室") == [
        ("person", "张伟"), ("address", "北京市朝阳区建国路88号SOHO现代城2号楼1单元1201室")]
    assert _found("王先生和欧阳娜娜女士住在杭州市西湖区文三路478号 310012") == [
        ("person", "王"), ("person", "欧阳娜娜"), ("address", "杭州市西湖区文三路478号 310012")]
    assert _found("我叫李建国，是这里的经理。") == [("person", "李建国")]


@pytest.mark.parametrize("text,name", [
    ("据张伟说，货物要晚到。", "张伟"), ("本报告由邓秀兰应要求编写。", "邓秀兰"), ("本报告由王磊应要求编写。", "王磊"),
    ("参会人员：丁冬梅（市场部）。", "丁冬梅"), ("这份表格由黄建国签字。", "黄建国"), ("李林先生昨天来过电话。", "李林"),
])
def test_chinese_names_jieba_glues_to_a_neighbour_or_cuts_apart_are_found_whole(text, name):
    assert _found(text, ("zh",)) == [("person", name)]


def test_the_dictionary_path_is_jiebas_own_cut():
    """names_zh computes jieba's most probable dictionary path itself (faster); the words must be jieba's."""
    import jieba

    from tamer.protection.names_zh import tokenize

    for text in ("联系人：王小明，电话 021-62345678，住址上海市浦东新区世纪大道100号", "我把王国的李子张开放在一张纸上。",
                 "收件人张伟，寄到北京市朝阳区建国路88号SOHO现代城2号楼1单元1201室 abc  x\r\n y", "The food was great!",
                 "据徐海燕说，本报告由张兰英应要求编写，黄金周去张家界。", ""):
        assert list(tokenize(text)) == [(w, a) for w, a, _ in jieba.tokenize(text)]


def test_english_and_german_names_and_addresses():
    assert _found("Yesterday Mr. John Smith met Dr. Anna Weber at 1600 Pennsylvania Ave NW, Washington, DC 20500.") == [
        ("person", "John Smith"), ("person", "Anna Weber"),
        ("address", "1600 Pennsylvania Ave NW, Washington, DC 20500")]
    assert _found("Frau Franca Meister wohnt in der Berliner Straße 5, 10115 Berlin.") == [
        ("person", "Franca Meister"), ("address", "Berliner Straße 5, 10115 Berlin")]
    assert _found("Ship to PSC 1241, Box 5868, APO AP 25384 or USS Davis, FPO AA 22663.") == [
        ("address", "PSC 1241, Box 5868, APO AP 25384"), ("address", "USS Davis, FPO AA 22663")]


@pytest.mark.parametrize("text", [
    "The Great Wall was great and the Golden Gate Bridge too.", "I have 2 Motorola phones and 3 chargers.",
    "We waited 45 Minutes for the food.", "Monday Night Football on ESPN.", "2 Thumbs Up!!",
    "Gordon's Steakhouse opened on Main Street.",
])
def test_english_prose_without_people_or_addresses_is_left_alone(text):
    assert _found(text, ("en",)) == []


def test_pseudonyms_are_consistent_across_a_file_and_across_runs_with_one_key(tmp_path):
    key, other = tamer.keygen(tmp_path / "k.key"), tamer.keygen(tmp_path / "o.key")
    src = tmp_path / "a.txt"
    src.write_text("联系人：王小明，住址上海市浦东新区世纪大道100号\n王小明先生明天到。\n"
                   "Dear Anna Weber, thanks.\nMy name is Anna Weber.\n", encoding="utf-8")
    runs = []
    for name, k in (("p1.txt", key), ("p2.txt", key), ("p3.txt", other)):
        tamer.scrub(src, out=tmp_path / name, mode="pseudonymize", key_file=str(k), progress=False)
        runs.append((tmp_path / name).read_text(encoding="utf-8").splitlines())
    one, two, three = runs
    zh = one[0].split("：")[1].split("，")[0]
    en = one[2].split()[1].rstrip(",")
    assert zh.startswith("PERSON_") and one[1].startswith(zh) and "ADDRESS_" in one[0]
    assert en.startswith("PERSON_") and one[3] == f"My name is {en}." and en != zh
    assert one == two and one != three  # same key, same tokens; another key, other tokens
    restored = tamer.scrub(tmp_path / "p1.txt", restore=Path(str(tmp_path / "p1.txt") + ".pseudonyms.enc"),
                           key_file=str(key), out=tmp_path / "back.txt")
    assert Path(restored).read_text(encoding="utf-8") == src.read_text(encoding="utf-8")
    tamer.scrub(src, out=tmp_path / "h.txt", mode="hash", key_file=str(key), progress=False)
    hashed = (tmp_path / "h.txt").read_text(encoding="utf-8").splitlines()
    digest = hashed[0].split("：")[1].split("，")[0]
    assert digest.startswith("[PERSON:") and hashed[1].startswith(digest)


_BLOCKED = """import sys
sys.modules["jieba"] = None
from tamer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_the_ner_extra_scrub_says_detection_is_off_and_refuses_to_be_asked(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("联系人：王小明，电话 021-62345678\nmail bob@example.com\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = subprocess.run([sys.executable, "-c", _BLOCKED, "scrub", str(src), "--out", str(tmp_path / "o.txt"),
                          "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report["off"]) == {"person", "address"} and "jieba" in report["off"]["person"]
    assert report["counts"] == {"phone": 1, "email": 1} and "person" not in report["entities"]
    assert run.stderr.count("person and address detection is off") == 1 and "tamer[ner]" in run.stderr
    assert "王小明" in (tmp_path / "o.txt").read_text(encoding="utf-8")
    asked = subprocess.run([sys.executable, "-c", _BLOCKED, "scrub", str(src), "--entities", "person", "--out",
                            str(tmp_path / "p.txt")], capture_output=True, text=True, env=env, timeout=120)
    assert asked.returncode == 2 and "--entities person cannot run here" in asked.stderr
    assert "Traceback" not in asked.stderr and not (tmp_path / "p.txt").exists()


def test_jieba_starts_silently_and_writes_only_into_tamers_cache(tmp_path):
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    code = ("from tamer.protection.detect import find_pii; "
            "print([f.text for f in find_pii('我叫李建国', ['person'])])")
    env = {**os.environ, "PYTHONPATH": str(SRC), "XDG_CACHE_HOME": str(cache), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=work, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "['李建国']" and run.stderr == ""
    assert list(work.iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []
    assert [p.name for p in (cache / "tamer" / "jieba").iterdir()] == ["jieba.cache"]
    assert (cache / "tamer" / "jieba").stat().st_mode & 0o077 == 0
