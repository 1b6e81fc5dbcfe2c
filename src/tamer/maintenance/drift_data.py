"""What `tamer drift` compares, read from a file by its extension: a table (.csv / .tsv with a header row), text
(.txt, one sentence per line, or `sentence<TAB>label` lines as in the UCI sentiment files, whose labels are
dropped), or an array (.npy: one row per example, e.g. N x 8 x 8 images, flattened to N x D)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..tasks.textfiles import read_labelled, read_plain

KINDS = {".csv": "tabular", ".tsv": "tabular", ".txt": "text", ".npy": "array"}


@dataclass
class DriftData:
    path: str
    kind: str  # tabular | text | array
    table: dict[str, list[str]] | None = None
    texts: list[str] | None = None
    array: np.ndarray | None = None

    @property
    def rows(self) -> int:
        if self.table is not None:
            return len(next(iter(self.table.values()), []))
        return len(self.texts) if self.texts is not None else int(self.array.shape[0])


def _table(path: Path, flag: str) -> dict[str, list[str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{flag} {str(path)!r} is empty; a table needs a header row and at least one data row.")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise DataError(f"{flag} {str(path)!r} names a column twice in its header; give each column one name.")
        columns: dict[str, list[str]] = {h: [] for h in header}
        for n, row in enumerate(reader, 2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"row {n} of {flag} {str(path)!r} has {len(row)} cells but the header has "
                                f"{len(header)}; give every row one cell per column.")
            for h, cell in zip(header, row):
                columns[h].append(cell)
    if not columns[header[0]]:
        raise DataError(f"{flag} {str(path)!r} has a header but no data rows; give at least two rows.")
    return columns


def _texts(path: Path) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and all("\t" in line for line in lines):  # sentence<TAB>label, as the task's TSV reader reads it
        return read_labelled(str(path), fmt="tsv")[0]
    return read_plain(str(path))


def _array(path: Path, flag: str) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{flag} {str(path)!r} is not a plain .npy array ({exc}).") from None
    if not isinstance(a, np.ndarray) or a.ndim == 0 or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{flag} {str(path)!r} does not hold a numeric array with one row per example.")
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:]))).astype(np.float32)


def load_drift_data(path: str, flag: str) -> DriftData:
    """Read `path` (given as `flag`, for the error) as a table, texts or an array; one sentence on bad input."""
    p = Path(path)
    kind = KINDS.get(p.suffix.lower())
    if kind is None:
        raise DataError(f"{flag} {path!r} is not accepted; give a .csv or .tsv table, a .txt file of sentences or "
                        f"a .npy array.")
    if not p.is_file():
        raise DataError(f"{flag} {path!r} does not exist or is not a file.")
    try:
        if kind == "tabular":
            data = DriftData(path, kind, table=_table(p, flag))
        elif kind == "text":
            data = DriftData(path, kind, texts=_texts(p))
        else:
            data = DriftData(path, kind, array=_array(p, flag))
    except UnicodeDecodeError:
        raise DataError(f"{flag} {path!r} is not UTF-8 text.") from None
    except DataError as exc:
        if "holds no" in str(exc) or "no text" in str(exc):
            raise DataError(f"{flag} {path!r} is empty; give at least two rows.") from None
        raise
    if data.rows < 2:
        raise DataError(f"{flag} {path!r} has {data.rows} row(s); a two-sample test needs at least two on each side.")
    return data


def check_comparable(reference: DriftData, current: DriftData) -> None:
    """Both sides must be the same kind of data with the same columns (or the same row width)."""
    if reference.kind != current.kind:
        raise DataError(f"--reference {reference.path!r} is {reference.kind} data but --current {current.path!r} is "
                        f"{current.kind}; compare a table with a table, text with text, an array with an array.")
    if reference.kind == "tabular" and set(reference.table) != set(current.table):
        only_r = sorted(set(reference.table) - set(current.table))
        only_c = sorted(set(current.table) - set(reference.table))
        raise DataError(f"the columns differ: only in --reference {only_r}, only in --current {only_c}; give both "
                        f"tables the same columns.")
    if reference.kind == "array" and reference.array.shape[1:] != current.array.shape[1:]:
        raise DataError(f"--reference rows have {reference.array.shape[1]} values but --current rows have "
                        f"{current.array.shape[1]}; give arrays of the same row shape.")
