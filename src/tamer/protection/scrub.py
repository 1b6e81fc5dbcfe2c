"""`scrub`: stream a TXT / TSV / CSV / JSONL file, replacing PII, and count what was found per entity and column.

Every cell is read, including the header and the cells of a ragged CSV row (such a row is scrubbed whole, whatever
--columns says, and counted); every JSON string, key and number (a number that is PII becomes a string).

Modes: mask ([EMAIL]), redact (removed), hash ([EMAIL:3f2a9c1b0d4e5f60]: HMAC-SHA256 under the key, 64 bits; an
unkeyed digest of a phone number is reversed by trying every number, so a key is required), pseudonymize
(EMAIL_3f2a9c1b0d4e5f60: keyed HMAC, 64 bits, so the same value always gets the same token across files and runs
under one key; the token -> value mapping is written beside the output, encrypted with the same key, and
`restore_pseudonyms` puts the values back). Two values that would share a token stop the run (DataError) rather
than merge two people. The mapping and restored files hold PII and are created readable by their owner only.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import secrets
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataError, UsageError, refuse_existing
from ..report import Report, table_html
from . import crypto, keys
from .config import ScrubConfig
from .detect import DETECTORS, Found, check_entities, entities_off, find_pii

_SAID: set[str] = set()  # reasons already printed by this process
FORMATS = {".txt": "txt", ".text": "txt", ".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAPPING_SUFFIX = ".pseudonyms.enc"


@dataclass
class ScrubReport(Report):
    input: str
    out: str
    format: str
    mode: str
    entities: list[str]
    lines: int
    seconds: float
    counts: dict[str, int]
    by_column: dict[str, dict[str, int]]
    mapping: str | None = None
    ragged_rows: int = 0  # CSV / TSV rows whose width is not the header's: scrubbed whole
    off: dict[str, str] = field(default_factory=dict)  # entity -> why its detector did not run (the ner extra)
    title = "scrub"

    @property
    def lines_per_second(self) -> float:
        return self.lines / max(self.seconds, 1e-9)

    def gate_metrics(self) -> dict[str, Any]:
        return {"lines": self.lines, "found": sum(self.counts.values()), "lines_per_second": self.lines_per_second,
                "ragged_rows": self.ragged_rows, **{f"found_{k}": v for k, v in self.counts.items()}}

    def summary(self) -> str:
        found = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])) or "nothing"
        return (f"scrubbed {self.lines:,} lines of {self.input} ({self.mode}) in {self.seconds:.2f} s "
                f"({self.lines_per_second:,.0f} lines/s): {found}"
                + (f"; {self.ragged_rows:,} ragged rows scrubbed whole" if self.ragged_rows else "") + f"\n{self.out}"
                + (f"\npseudonym mapping (encrypted): {self.mapping}" if self.mapping else ""))

    def html(self) -> str:
        cols = sorted(self.by_column)
        rows = [(e, self.counts.get(e, 0), *(self.by_column[c].get(e, 0) for c in cols)) for e in self.entities]
        facts = [("input", self.input), ("output", self.out), ("format", self.format), ("mode", self.mode),
                 ("lines", f"{self.lines:,}"), ("ragged rows (scrubbed whole)", f"{self.ragged_rows:,}"),
                 ("speed", f"{self.lines_per_second:,.0f} lines/s"),
                 *(("not detected", reason) for reason in sorted(set(self.off.values())))]
        return (f"<section><h2>Scrub · {self.input}</h2>{table_html(facts)}"
                f"{table_html(rows, ['entity', 'total', *cols])}</section>")


TOKEN_HEX = 16  # 64 bits: a birthday collision needs about 4e9 distinct values


class Replacer:
    """Turns a found value into its replacement for one mode, remembering pseudonyms for the mapping.

    hash and pseudonymize are keyed (HMAC-SHA256 under a subkey of the scrub key) and refuse to run without a key;
    a token that two different values would share raises instead of merging them."""

    def __init__(self, mode: str, key: bytes | None):
        if mode in ("hash", "pseudonymize") and not key:
            raise UsageError(f"--mode {mode} needs --key-file or --passphrase-env; an unkeyed digest is reversed by "
                             "trying every phone number.")
        self.mode = mode
        self.hash_key = keys.subkey(key, "scrub hash") if key else None
        self.pseudo_key = keys.subkey(key, "scrub pseudonym") if key else None
        self.mapping: dict[str, str] = {}
        self.digests: dict[str, bytes] = {}  # hash mode: token -> full digest, to tell a collision from a repeat

    def __call__(self, entity: str, value: str) -> str:
        label = DETECTORS[entity].label
        if self.mode == "mask":
            return f"[{label}]"
        if self.mode == "redact":
            return ""
        message = f"{entity}\x00{value}".encode()
        if self.mode == "hash":
            digest = hmac.new(self.hash_key, message, hashlib.sha256).digest()
            token = f"[{label}:{digest.hex()[:TOKEN_HEX]}]"
            if self.digests.setdefault(token, digest) != digest:
                raise _collision(token)
            return token
        token = f"{label}_{hmac.new(self.pseudo_key, message, hashlib.sha256).hexdigest()[:TOKEN_HEX]}"
        if self.mapping.setdefault(token, value) != value:
            raise _collision(token)
        return token


def _collision(token: str) -> DataError:
    return DataError(f"two different values share the token {token} (a 64-bit collision); scrub again with "
                     "another key rather than merge two people.")


def replace_found(text: str, found: list[Found], replace: Callable[[str, str], str]) -> str:
    """`text` with each found span replaced; everything outside the spans exactly as it was."""
    pieces, last = [], 0
    for f in found:
        pieces += [text[last:f.start], replace(f.entity, f.text)]
        last = f.end
    pieces.append(text[last:])
    return "".join(pieces)


def scrub_text(text: str, entities, lang, replace: Callable[[str, str], str], counts: Counter) -> str:
    found = find_pii(text, entities, lang)
    counts.update(f.entity for f in found)
    return replace_found(text, found, replace) if found else text


def _detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"input {str(path)!r} has extension {path.suffix or '(none)'!r}; scrub reads "
                         f"{', '.join(sorted(FORMATS))}.")
    return fmt


class JsonObject(list):
    """A JSON object as its (key, value) pairs, in order: keys are scrubbed, and two keys masked alike both stay."""


class JsonFloat(str):
    """A JSON number with a fraction or exponent, as written (so that scrubbing reads its digits as they are)."""


def _parse_json(line: str) -> Any:
    return json.loads(line, object_pairs_hook=JsonObject, parse_float=JsonFloat)


class _DuplicateKeys(Exception):
    pass


def _plain(value: Any) -> Any:
    """`value` as dicts, lists and floats for json.dumps; _DuplicateKeys if an object has a key twice."""
    if isinstance(value, JsonObject):
        out = {k: _plain(v) for k, v in value}
        if len(out) != len(value):
            raise _DuplicateKeys
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, JsonFloat) else value


def _dump_json(value: Any) -> str:
    try:
        return json.dumps(_plain(value), ensure_ascii=False)
    except _DuplicateKeys:
        return _dump_pairs(value)


def _dump_pairs(value: Any) -> str:
    if isinstance(value, JsonObject):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dump_pairs(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_dump_pairs, value)) + "]"
    if isinstance(value, JsonFloat):
        return json.dumps(float(value))
    return json.dumps(value, ensure_ascii=False)


def _scrub_json(value: Any, path: str, scrub: Callable[[str, str], str]) -> Any:
    """Every string, key and number below `value`; a number that holds PII comes back as a string."""
    if isinstance(value, str) and not isinstance(value, JsonFloat):
        return scrub(value, path)
    if isinstance(value, JsonObject):
        out = JsonObject()
        for k, v in value:
            k = scrub(k, f"{path}.(key)" if path else "(key)")
            out.append((k, _scrub_json(v, f"{path}.{k}" if path else k, scrub)))
        return out
    if isinstance(value, list):
        return [_scrub_json(v, path, scrub) for v in value]
    if isinstance(value, (int, JsonFloat)) and not isinstance(value, bool):
        written = str(value)
        scrubbed = scrub(written, path)
        return value if scrubbed == written else scrubbed
    return value


def _scrub_record(record: Any, columns: tuple[str, ...], scrub: Callable[[str, str], str]) -> Any:
    if not columns:
        return _scrub_json(record, "", scrub)
    if not isinstance(record, JsonObject):
        return record
    return JsonObject((k, _scrub_json(v, k, scrub) if k in columns else v) for k, v in record)


def _lines(src, dst, fmt: str, columns: tuple[str, ...], scrub: Callable[[str, str], str], name: str,
           notes: Counter | None = None) -> Iterator[int]:
    """Scrub `src` into `dst` one line or record at a time; yields after each. `notes` counts ragged rows."""
    notes = Counter() if notes is None else notes
    if fmt == "txt":
        for line in src:
            dst.write(scrub(line, "text"))
            yield 1
        return
    if fmt == "jsonl":
        for n, line in enumerate(src, 1):
            if not line.strip():
                dst.write(line)
                continue
            try:
                record = _parse_json(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {n} of {name} is not JSON ({exc.msg}); scrub reads one JSON value per line.") from None
            dst.write(_dump_json(_scrub_record(record, columns, scrub)) + "\n")
            yield 1
        return
    delimiter = "\t" if fmt == "tsv" else ","
    reader = csv.reader(src, delimiter=delimiter)
    writer = csv.writer(dst, delimiter=delimiter, lineterminator="\n")
    header = next(reader, None)
    if header is None:
        return
    missing = [c for c in columns if c not in header]
    if missing:
        raise UsageError(f"column {missing[0]!r} is not in {name}; its columns are: {', '.join(header)}.")
    chosen = {i for i, h in enumerate(header) if not columns or h in columns}
    names = [scrub(h, "(header)") for h in header]  # a header cell is a cell; the report names columns by these
    writer.writerow(names)
    for row in reader:
        ragged = bool(row) and len(row) != len(header)  # cells may have slid: every cell of the row is scrubbed
        notes["ragged_rows"] += ragged
        writer.writerow([scrub(v, names[i] if i < len(names) else "(beyond header)") if ragged or i in chosen else v
                         for i, v in enumerate(row)])
        yield 1


def _create_private(path: Path, mode: str):
    """A new file only its owner can read (0600 from the start, not chmod-ed later): for PII and its mapping."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))


def default_output(path: Path) -> Path:
    return path.with_name(f"{path.stem}.scrubbed{path.suffix}")


def scrub_file(path: str | os.PathLike, out: str | os.PathLike | None = None, config: ScrubConfig | None = None,
               show_progress: bool = False) -> ScrubReport:
    """Scrub a file into `out` (written to a temporary name and renamed; never overwriting)."""
    from ..progress import progress_bar

    config = config or ScrubConfig()
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input {str(path)!r} does not exist or is not a file.")
    fmt = _detect_format(path)
    if config.columns and fmt == "txt":
        raise UsageError("--columns applies to CSV, TSV and JSONL input; a TXT file has no columns.")
    out = Path(out) if out else default_output(path)
    mapping_path = out.with_name(out.name + MAPPING_SUFFIX) if config.mode == "pseudonymize" else None
    for target in filter(None, (out, mapping_path)):
        refuse_existing(target, "a file", folder=False)
    secret = (keys.secret_from_options(config.key_file, config.passphrase_env)
              if (config.key_file or config.passphrase_env) else None)
    # a fixed salt keeps pseudonyms consistent across files and runs under one passphrase (scrypt still stretches it)
    salt = hashlib.sha256(b"tamer scrub salt").digest()[:16]
    key = secret.derive(salt) if secret else None
    entities = check_entities(config.entities)
    off = {} if config.entities else entities_off()
    for reason in sorted(set(off.values()) - _SAID):  # once per process, on stderr (stdout may be --json)
        print(f"tamer scrub: {reason}.", file=sys.stderr)
        _SAID.add(reason)
    replace = Replacer(config.mode, key)
    counts: Counter = Counter()
    by_column: dict[str, Counter] = defaultdict(Counter)

    def scrub(text: str, column: str) -> str:
        found = find_pii(text, entities, config.lang)
        if not found:
            return text
        local = Counter(f.entity for f in found)
        counts.update(local)
        by_column[column].update(local)
        return replace_found(text, found, replace)

    t0, lines, notes = time.perf_counter(), 0, Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tamer-tmp-{secrets.token_hex(4)}")
    try:
        with open(path, encoding="utf-8", newline="") as src, open(tmp, "w", encoding="utf-8", newline="") as dst, \
                progress_bar(show_progress) as bar:
            job = bar.add_task(f"scrub {path.name}", total=None)
            for n in _lines(src, dst, fmt, config.columns, scrub, str(path), notes):
                lines += n
                if lines % 5000 == 0:
                    bar.update(job, completed=lines)
        if mapping_path is not None:
            body = json.dumps(replace.mapping, ensure_ascii=False, sort_keys=True).encode()
            crypto_tmp = mapping_path.with_name(f".{mapping_path.name}.tamer-tmp-{secrets.token_hex(4)}")
            try:
                with _create_private(crypto_tmp, "wb") as f:
                    crypto.encrypt_stream(io.BytesIO(body), f, secret, salt=salt)
                os.replace(crypto_tmp, mapping_path)
            finally:
                crypto_tmp.unlink(missing_ok=True)
        os.replace(tmp, out)
    except UnicodeDecodeError:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{str(path)!r} is not UTF-8 text; scrub reads UTF-8.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        if mapping_path is not None and out.exists() is False:
            mapping_path.unlink(missing_ok=True)
        raise
    return ScrubReport(input=str(path), out=str(out), format=fmt, mode=config.mode, entities=list(entities),
                       lines=lines, seconds=round(time.perf_counter() - t0, 4), counts=dict(counts),
                       by_column={c: dict(v) for c, v in by_column.items()},
                       mapping=str(mapping_path) if mapping_path else None, ragged_rows=notes["ragged_rows"],
                       off=off)


def read_pseudonyms(mapping_path: str | os.PathLike, secret: keys.Secret) -> dict[str, str]:
    """The token -> value mapping of a pseudonymized file; only the key that wrote it opens it."""
    path = Path(mapping_path)
    if not path.is_file():
        raise UsageError(f"pseudonym mapping {str(path)!r} does not exist; it is written beside the scrubbed output.")
    return json.loads(crypto.decrypt_bytes(path.read_bytes(), secret, path.name))


def restore_pseudonyms(text: str, mapping: dict[str, str]) -> str:
    """Put the original values back in place of their tokens."""
    import re

    if not mapping:
        return text
    rx = re.compile("|".join(re.escape(t) for t in sorted(mapping, key=len, reverse=True)))
    return rx.sub(lambda m: mapping[m.group()], text)


def restore_file(path: str | os.PathLike, mapping_path: str | os.PathLike, secret: keys.Secret,
                 out: str | os.PathLike | None = None) -> Path:
    """Undo `pseudonymize` on a scrubbed file, field by field (so CSV quoting and JSON escaping stay right)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input {str(path)!r} does not exist or is not a file.")
    fmt = _detect_format(path)
    out = Path(out) if out else path.with_name(f"{path.stem}.restored{path.suffix}")
    refuse_existing(out, "a file", folder=False)
    mapping = read_pseudonyms(mapping_path, secret)
    tmp = out.with_name(f".{out.name}.tamer-tmp-{secrets.token_hex(4)}")
    try:
        with open(path, encoding="utf-8", newline="") as src, _create_private(tmp, "w") as dst:
            for _ in _lines(src, dst, fmt, (), lambda text, column: restore_pseudonyms(text, mapping), str(path)):
                pass
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
