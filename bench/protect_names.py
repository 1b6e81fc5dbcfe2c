"""Person and address detection in `scrub`, measured for bench/protect.py (`--only names`).

  recall / precision per locale (zh_CN, en_US, de_DE) on Faker names and addresses inside the newest held-out sentence
  templates of tests/protection/names_corpus.py (HELD_OUT_2 for zh_CN, HELD_OUT for the others), scored by coverage: a value is found when every
  letter and digit of it is masked as that entity; false masks on the 2,000 sentiment sentences (yelp + amazon),
  with the scrub default languages (en, zh) and with German rules on as well; lines/s with person and address on
  against the structured entities alone, one pass over lines no finder has seen (so no cache is flattered); and
  Presidio's AnalyzerEngine over a blank spaCy pipeline (no NER model can be installed offline) on the same
  sentences, run in /work/venv-presidio (presidio cannot go in the project's venv); its row is skipped, with the
  reason, when that venv is missing.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESIDIO_PYTHON = Path("/work/venv-presidio/bin/python")
LOCALES = ("zh_CN", "en_US", "de_DE")

# runs in the presidio venv: sentences (JSON lines on stdin) -> [[entity, start, end], ...] per sentence, and seconds
_PRESIDIO = """import json, sys, tempfile, time, logging
logging.disable(logging.WARNING)
import spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import SpacyNlpEngine
folder = tempfile.mkdtemp()
spacy.blank("en").to_disk(folder)  # a blank pipeline: tokenizer only, no NER (no model can be downloaded here)
engine = AnalyzerEngine(nlp_engine=SpacyNlpEngine(models=[{"lang_code": "en", "model_name": folder}]),
                        supported_languages=["en"])
lines = [json.loads(l) for l in sys.stdin]
t0 = time.perf_counter()
out = [[[r.entity_type, r.start, r.end] for r in engine.analyze(text=t, language="en")] for t in lines]
print(json.dumps({"found": out, "seconds": time.perf_counter() - t0}))
"""
_PRESIDIO_ENTITY = {"PERSON": "person", "LOCATION": "address", "ADDRESS": "address", "NRP": "person"}


def _sentiment() -> list[str]:
    folder = ROOT.parent / "shared" / "data" / "sentiment"
    return [l.rsplit("\t", 1)[0] for f in sorted(folder.glob("*_labelled.txt"))
            for l in f.read_text(encoding="utf-8", errors="replace").splitlines()] if folder.is_dir() else []


def _presidio(lines: list[str]) -> dict | str:
    """Presidio's findings on `lines`, or why it could not run."""
    if not PRESIDIO_PYTHON.exists():
        return f"skipped: {PRESIDIO_PYTHON} is missing (python -m venv /work/venv-presidio; pip install presidio-analyzer spacy)"
    done = subprocess.run([str(PRESIDIO_PYTHON), "-c", _PRESIDIO], input="".join(json.dumps(l) + "\n" for l in lines),
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        return f"skipped: presidio failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    return json.loads(done.stdout.splitlines()[-1])


def bench_names(per_entity: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "protection"))
    from names_corpus import coverage_score, names_corpus

    from tamer.protection.detect import DEFAULT_ENTITIES, Found, find_pii

    names = ("person", "address")
    structured = tuple(e for e in DEFAULT_ENTITIES if e not in names)
    find_pii("warm up 我叫李建国 at 1 Main St, Springfield, IL 62704", names)  # loads jieba, the census lists, usaddress
    out: dict = {"per_entity": per_entity, "locales": {}}
    clean = _sentiment()
    # throughput first, on lines no finder has seen (no cache flattered): a warm-up pass with the structured entities
    # (libphonenumber's metadata, the normaliser's cache), then person + address on, then structured alone again
    fresh = {loc: [t for t, _ in names_corpus(loc, per_entity, seed=13, templates="held_out")] for loc in LOCALES}
    parts = {**fresh, "sentiment": clean}
    for lines in parts.values():
        for line in lines:
            find_pii(line, structured, ("en", "zh", "de"))
    for key, entities in (("with_names", DEFAULT_ENTITIES), ("structured", structured)):
        seconds = {}
        for part, lines in parts.items():
            t0 = time.perf_counter()
            for line in lines:
                find_pii(line, entities, ("en", "zh", "de"))
            seconds[part] = time.perf_counter() - t0
        faker = sum(len(fresh[loc]) for loc in LOCALES)
        out[f"lines_per_second_{key}"] = round((faker + len(clean)) / sum(seconds.values()))
        out[f"lines_per_second_{key}_faker"] = round(faker / sum(seconds[loc] for loc in LOCALES))
        for part in parts:
            out[f"lines_per_second_{key}_{part}"] = round(len(parts[part]) / max(seconds[part], 1e-9))
    corpora = {loc: names_corpus(loc, per_entity, seed=11, templates="held_out") for loc in LOCALES}
    for loc, corpus in corpora.items():
        found = [find_pii(t, names, ("en", "zh", "de")) for t, _ in corpus]
        out["locales"][loc] = {"tamer": coverage_score(found, corpus)}
    if clean:
        out["sentiment_lines"] = len(clean)
        out["sentiment_flagged_names"] = sum(bool(find_pii(l, names, ("en", "zh"))) for l in clean) / len(clean)
        out["sentiment_flagged_names_de"] = sum(bool(find_pii(l, names, ("en", "zh", "de"))) for l in clean) / len(clean)
        out["sentiment_flagged_all"] = sum(bool(find_pii(l, DEFAULT_ENTITIES, ("en", "zh"))) for l in clean) / len(clean)
    lines = [t for c in corpora.values() for t, _ in c] + clean
    out["lines_measured"] = len(lines)
    peer = _presidio(lines)
    if isinstance(peer, str):
        out["presidio"] = peer
        return out
    start = 0
    out["presidio"] = {"lines_per_second": round(len(lines) / max(peer["seconds"], 1e-9)), "locales": {}}
    for loc, corpus in corpora.items():
        chunk = peer["found"][start:start + len(corpus)]
        start += len(corpus)
        found = [[Found(a, b, _PRESIDIO_ENTITY.get(e, e.lower()), "") for e, a, b in f] for f in chunk]
        out["presidio"]["locales"][loc] = coverage_score(found, corpus)
        out["presidio"]["locales"][loc]["entity_types"] = sorted({e for f in chunk for e, _, _ in f})
    sentiment = peer["found"][start:]
    if sentiment:
        out["presidio"]["sentiment_flagged_names"] = sum(
            any(e in _PRESIDIO_ENTITY for e, _, _ in f) for f in sentiment) / len(sentiment)
        out["presidio"]["sentiment_flagged_all"] = sum(bool(f) for f in sentiment) / len(sentiment)
    return out


def rows(n: dict) -> list[str]:
    """Rows of bench/protect.py's table."""
    out = []
    peer = n.get("presidio")
    for loc, v in n["locales"].items():
        for entity in ("person", "address"):
            m = v["tamer"].get(entity, {"recall": 0.0, "precision": 0.0, "support": 0})
            if isinstance(peer, dict):
                p = peer["locales"][loc].get(entity, {"recall": 0.0, "precision": 0.0})
                other = f"presidio + blank spaCy {p['recall']:.3f} / {p['precision']:.3f}"
            else:
                other = "presidio: see note"
            out.append(f"| scrub {loc} {entity} recall / precision, held-out templates (n={m['support']}) | "
                       f"{m['recall']:.3f} / {m['precision']:.3f} | {other} | goal recall >= 0.90 |")
    if "sentiment_lines" in n:
        p = f"presidio {peer['sentiment_flagged_names']:.2%} (any entity {peer['sentiment_flagged_all']:.2%})" \
            if isinstance(peer, dict) and "sentiment_flagged_names" in peer else ""
        out.append(f"| sentiment lines with a person / address mask ({n['sentiment_lines']}), lang en,zh | "
                   f"{n['sentiment_flagged_names']:.2%} | {p} | goal <= 2%; with de rules too "
                   f"{n['sentiment_flagged_names_de']:.2%}; any entity {n['sentiment_flagged_all']:.2%} |")
    s, w = n["lines_per_second_structured"], n["lines_per_second_with_names"]
    p = f"presidio + blank spaCy {peer['lines_per_second']:,}" if isinstance(peer, dict) else ""
    out.append(f"| scrub lines/s with person + address on, unseen lines: Faker zh/en/de + sentiment | {w:,} | {p} | "
               f"structured entities alone {s:,} ({w / s:.2f}x); goal >= 2,000 |")
    for part, name in (("_faker", "Faker name / address sentences, zh + en + de"), ("_zh_CN", "Chinese ones"),
                       ("_en_US", "English ones"), ("_de_DE", "German ones"), ("_sentiment", "sentiment sentences")):
        a, b = n[f"lines_per_second_with_names{part}"], n[f"lines_per_second_structured{part}"]
        out.append(f"| scrub lines/s with person + address on, {name} | {a:,} | | structured alone {b:,} |")
    if isinstance(peer, str):
        out.append(f"| presidio peer | | {peer} | |")
    elif peer:
        kinds = sorted({e for v in peer["locales"].values() for e in v["entity_types"]})
        out.append(f"| presidio entity types found on the name / address sentences | | {', '.join(kinds) or 'none'} | "
                   "no PERSON or LOCATION without a spaCy NER model |")
    return out
