"""Readers for text data: labelled TSV / CSV / JSONL, and plain text for language models."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import DataError

FORMATS = ("tsv", "csv", "jsonl")


def _format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("tsv", "txt", "tab"):
        return "tsv"
    if suffix in ("csv",):
        return "csv"
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    raise DataError(f"cannot tell the format of {str(path)!r} from its extension; name it .tsv/.txt, .csv or .jsonl, or pass --format tsv|csv|jsonl.")


def _exists(path: str | None, what: str) -> Path:
    if not path:
        raise DataError(f"{what} needs --data FILE; none was given.")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {path!r} does not exist or is not a file.")
    return p


def read_labelled(path: str | None, text_column: str = "text", label_column: str = "label",
                  fmt: str | None = None) -> tuple[list[str], list[str]]:
    """Texts and their labels (as strings). TSV is `text<TAB>label`, with or without a header row."""
    p = _exists(path, "a text-classification task")
    kind = _format(p, fmt)
    texts: list[str] = []
    labels: list[str] = []
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if kind == "tsv":
                for n, line in enumerate(f, 1):
                    line = line.rstrip("\r\n")
                    if not line.strip():
                        continue
                    text, sep, label = line.rpartition("\t")
                    if not sep:
                        raise DataError(f"line {n} of {path!r} has no TAB; TSV data is `text<TAB>label` per line.")
                    if n == 1 and (text.strip(), label.strip()) == (text_column, label_column):
                        continue  # header row
                    texts.append(text)
                    labels.append(label.strip())
            elif kind == "csv":
                reader = csv.DictReader(f)
                missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
                if missing:
                    raise DataError(f"{path!r} has no column {missing[0]!r}; its columns are {reader.fieldnames}; pass --text-column / --label-column.")
                for row in reader:
                    texts.append(row[text_column] or "")
                    labels.append((row[label_column] or "").strip())
            else:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        raise DataError(f"line {n} of {path!r} is not valid JSON; JSONL data is one object per line.") from None
                    if not isinstance(row, dict) or text_column not in row or label_column not in row:
                        raise DataError(f"line {n} of {path!r} lacks key {text_column!r} or {label_column!r}; pass --text-column / --label-column.")
                    texts.append(str(row[text_column]))
                    labels.append(str(row[label_column]).strip())
    except UnicodeDecodeError:
        raise DataError(f"data file {path!r} is not UTF-8 text.") from None
    if not texts:
        raise DataError(f"data file {path!r} holds no examples; give at least one labelled line.")
    return texts, labels


def read_plain(path: str | None) -> list[str]:
    """Non-empty lines of a plain text file."""
    p = _exists(path, "a causal-lm task")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise DataError(f"data file {path!r} is not UTF-8 text.") from None
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"data file {path!r} holds no text; give a file with at least one non-empty line.")
    return lines
