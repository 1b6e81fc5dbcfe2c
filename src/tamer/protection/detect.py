"""Finding PII in text: cheap candidate patterns, each confirmed by its standard's validator, in time linear in the
line's length.

Matching reads an NFKC copy of the line with invisible format characters removed (full-width １３８…, numbers split
by zero-width spaces), and every span is mapped back to exactly the original characters of the value. Candidate
patterns have bounded repetitions and anchor on the start of a run (a look-behind), so that no start position
costs more than a constant; validators (checksums.py: python-stdnum, ipaddress, IDNA; phones.py: libphonenumber)
decide, and a value that fails is left whole rather than cut to a part that passes. Overlaps are settled in
priority order (checksum-validated detectors first, then by start and length) with one sweep over a bitmap of
taken characters, and a candidate that overlaps a taken span is never validated. Person names and postal
addresses (ner.py: jieba for Chinese, probablepeople and usaddress for English and German) come last, so a number
already taken stays what it is; they are on by default when the `ner` extra is installed and off, said so, without.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from ..errors import UsageError
from .checksums import card_valid, cn_resident_id_valid, domain_valid, iban_length, iban_valid, ip_valid, us_ssn_valid
from . import ner
from .normalize import NormalizedText
from .phones import home_regions, phone_valid

Span = tuple[int, int]


@dataclass(frozen=True)
class Detector:
    entity: str
    label: str
    find: Callable[[str, tuple[str, ...], bytearray], Iterable[Span]]  # candidates in the normalised text (and taken)
    valid: Callable[[str, tuple[str, ...]], bool] | None = None  # confirms a candidate not overlapping a taken span
    default: bool = True
    needs: re.Pattern | None = None  # the detector runs only on text where this is found (a quick gate)
    min_len: int = 1  # nor on text shorter than its shortest value


def _regex(pattern: str, flags: int = re.ASCII):
    rx = re.compile(pattern, flags)
    return lambda text, lang, taken: (m.span() for m in rx.finditer(text))


# --- e-mail (RFC 5322 dot-atoms, RFC 6531 internationalised local parts and domains, IDNA / punycode) ---
_LETTERS = ("\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u052f\u0590-\u05ff\u0600-\u06ff"
            "\u0900-\u0dff\u0e00-\u0e7f\u1e00-\u1fff")  # non-CJK scripts, whose words are set off by spaces
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"  # written without spaces: no \w here
_L = f"A-Za-z0-9._%+\\-!#$^~/{_LETTERS}"  # local part: RFC 5322 atext less the ones that delimit in prose ('"*=?&|{}`)
_D = f"A-Za-z0-9\\-{_LETTERS}"  # domain label
_DOMAIN = (rf"(?:(?:[{_D}]{{1,63}}|[{_CJK}]{{1,63}})\.){{1,8}}"
           rf"(?:[A-Za-z{_LETTERS}]{{2,63}}|[Xx][Nn]--[A-Za-z0-9-]{{1,59}}|[{_CJK}]{{1,63}})(?![{_D}@])")
_EMAIL = re.compile(rf"(?:(?<![{_L}@])[{_L}]{{1,64}}|(?<![{_L}{_CJK}@])[{_CJK}]{{1,64}})@{_DOMAIN}")


def _emails(text, lang, taken):
    for m in _EMAIL.finditer(text):
        start = m.start()
        while text[start] in ".-/":  # "...bob@example.com", "--bob@...": not the address's
            start += 1
        yield start, m.end()


def _email_valid(value, lang):
    local, _, domain = value.rpartition("@")
    return 0 < len(local) <= 64 and not local.endswith(".") and ".." not in local and domain_valid(domain)


# --- URLs: with a scheme or www., or host.tld/path without one ---
_URL_CHARS = r"[^\s<>\"'`、。「」『』【】\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
_URL = re.compile(rf"(?<![\w@.])(?:(?:https?|ftp)://|www\.){_URL_CHARS}+"
                  rf"|(?<![\w@.:/\-])(?:[A-Za-z0-9-]{{1,63}}\.){{1,8}}(?:[A-Za-z]{{2,24}}|xn--[A-Za-z0-9-]{{1,59}})"
                  rf"(?::\d{{1,5}})?/{_URL_CHARS}*", re.IGNORECASE)


def _urls(text, lang, taken):
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1
        yield m.start(), end


def _url_valid(value, lang):
    if "://" in value or value[:4].lower() == "www.":
        return True
    host = value.split("/", 1)[0].split(":", 1)[0]
    return domain_valid(host) and not host.replace(".", "").isdigit()


# --- numbers: IBAN, cards, IDs, SSN, IP addresses, phones ---
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})[ -]?\d{2}", re.ASCII)
_IBAN_REST: dict[int, re.Pattern] = {}


def _ibans(text, lang, taken):
    for m in _IBAN_START.finditer(text):
        length = iban_length(m.group(1))
        if length is None:
            continue
        rest = _IBAN_REST.get(length)
        if rest is None:  # exactly the country's length (ISO 13616), one space or dash allowed between characters
            rest = _IBAN_REST[length] = re.compile(rf"(?:[ -]?[A-Za-z0-9]){{{length - 4}}}(?![A-Za-z0-9])", re.ASCII)
        r = rest.match(text, m.end())
        if r:
            yield m.start(), r.end()


# 12-19 digits in one block, or 4-4-4(-4)(-1..4) / 4-6-4(5) groups with one separator kind, not part of a longer run
_CARD = (r"(?<![\w-])(?:\d{12,19}(?!\w)"
         r"|(?<!\d )\d{4}(?P<s>[ -])\d{4}(?:(?P=s)\d{4}){1,2}(?:(?P=s)\d{1,4})?(?!\w|(?P=s)\d)"
         r"|(?<!\d )\d{4}(?P<t>[ -])\d{6}(?P=t)\d{4,5}(?!\w|(?P=t)\d))")
_CN_ID = r"(?<![0-9A-Za-z])\d{6}(?P<s>[ -]?)\d{8}(?P=s)\d{3}[\dXx](?![0-9A-Za-z])"
_SSN = r"(?<![\w.+-])(?<![\d+] )\d{3}(?P<s>[- .])\d{2}(?P=s)\d{4}(?![\w]|[.-]\d)"
_IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?!\d|\.\d)"
_IPV6 = (r"(?<![\w.%])(?<![0-9A-Fa-f]:)(?:[0-9A-Fa-f]{1,4}|::)[0-9A-Fa-f:]{0,38}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?"
         r"(?:%[\w-]{1,32}(?:\.[\w-]{1,32}){0,3})?(?:/\d{1,3})?(?![\w%]|:[\w:]|\.\d)")
# a run of digits and separators (capped, so that no start costs more than a constant), with an extension
_PHONE_RUN = re.compile(r"(?<![\w+@/.,-])(?:\+|\(\+)?(?:\(\d[\d -]{0,6}\)|\d)[\d()./ -]{0,254}\d"
                        r"(?:\s?(?:x|ext\.?|extension|Durchwahl|转|分机)\s?\d{1,6})?(?![\w@])", re.ASCII)
_TOKEN = re.compile(r"\S+")


_IP = [re.compile(p, re.ASCII) for p in (_IPV4, _IPV6)]


def _ips(text, lang, taken):
    for rx in _IP if ":" in text else _IP[:1]:
        for m in rx.finditer(text):
            yield m.span()
            if m.group().startswith(":::"):  # 地址：::1 reads 地址:::1
                yield m.start() + 1, m.end()
            if "/" in m.group():  # a prefix length out of range leaves the address itself
                yield m.start(), m.start() + m.group().index("/")


def _ip_valid(value, lang):
    return (value.count(":") >= 2 or value.count(".") == 3) and any(c not in ":." for c in value) and ip_valid(value)


_DOB_WORDS = {
    "en": r"\b(?:born|birth|birthday|DOB|D\.O\.B\.?|date of birth)\b",
    "de": r"\b(?:geboren|Geburtsdatum|Geburtstag|geb\.)",
    "zh": r"(?:出生|生日|生于|出生日期)",
}
_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
           r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|Januar|Februar|März|Mai|Juni|Juli|Oktober|Dezember)")
_DATE = re.compile(
    r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}\.\s?\d{1,2}\.\s?\d{2,4}|\d{4}/\d{1,2}/\d{1,2}"
    r"|\d{4}\s?年\s?\d{1,2}\s?月\s?\d{1,2}\s?日|" + _MONTHS + r"\.?\s\d{1,2}(?:st|nd|rd|th)?,?\s\d{4}"
    r"|\d{1,2}(?:st|nd|rd|th|\.)?\s" + _MONTHS + r"\.?,?\s\d{4})", re.IGNORECASE | re.ASCII)
_DOB_RX: dict[tuple[str, ...], re.Pattern] = {}


def _dates_of_birth(text, lang, taken):
    words = _DOB_RX.get(lang)
    if words is None:
        words = _DOB_RX[lang] = re.compile("|".join(_DOB_WORDS[x] for x in lang if x in _DOB_WORDS) or "(?!)",
                                           re.IGNORECASE)
    for w in words.finditer(text):
        m = _DATE.search(text, w.end(), min(len(text), w.end() + 40))
        if m:
            yield m.span()
        for m in _DATE.finditer(text, max(0, w.start() - 40), w.start()):  # 1990年1月2日出生, am ... geboren
            if len(text[m.end():w.start()]) <= 20:
                yield m.span()


def _phones(text, lang, taken):
    """The whole run if it is one number. Otherwise the numbers in it, left to right, longest first (a run can list
    several, separated by spaces: 138 1234 5678 139 8765 4321); groups left between or around them join their
    neighbour, so that no digit of a run that holds a phone number stays visible (011 15-2345-6789)."""
    regions = home_regions(lang)
    for m in _PHONE_RUN.finditer(text):
        start, end = m.span()
        if taken.find(1, start, end) < 0 and phone_valid(m.group(), regions):
            yield start, end
            continue
        tokens = [t.span() for t in _TOKEN.finditer(text, start, end)]
        if len(tokens) < 2:
            continue
        segment: list[Span] = []  # free tokens between taken ones
        for token in tokens + [(-1, -1)]:
            if token[0] >= 0 and taken.find(1, *token) < 0:
                segment.append(token)
                continue
            yield from _phones_in(text, segment, regions, whole=len(segment) == len(tokens))
            segment = []


def _phones_in(text, tokens: list[Span], regions, whole: bool) -> Iterator[Span]:
    found: list[tuple[int, int]] = []  # token index ranges
    i = 0
    while i < len(tokens):
        for j in range(min(len(tokens), i + 8), i, -1):
            if whole and j - i == len(tokens):
                continue  # the whole run was tried already
            if phone_valid(text[tokens[i][0]:tokens[j - 1][1]], regions):
                found.append((i, j))
                i = j
                break
        else:
            if i == 0 and text.startswith(("+", "(+", "00"), tokens[0][0]):
                return  # +62 21 835012 is not a phone number, and neither is its national-looking tail
            i += 1
    for k, (i, j) in enumerate(found):
        first = 0 if k == 0 else i
        last = len(tokens) if k == len(found) - 1 else found[k + 1][0]
        yield tokens[first][0], tokens[last - 1][1]


def _digits_valid(check: Callable[[str], bool]):
    return lambda value, lang: check(value)


_DIGIT = re.compile(r"[0-9]")
_ADDRESS_GATE = re.compile(r"[0-9]|[\u4e00-\u9fff]")  # a house number, or Chinese text
_PERSON_GATE = re.compile(r"[\u4e00-\u9fff]|(?-i:[A-Z\u00c0-\u00de][a-z\u00df-\u00ff])")  # Chinese, or a capitalised word
DETECTORS: dict[str, Detector] = {d.entity: d for d in (
    # in priority order: a checksum-validated match wins an overlap
    Detector("cn_resident_id", "CN_ID", _regex(_CN_ID), _digits_valid(cn_resident_id_valid), needs=_DIGIT, min_len=18),
    Detector("iban", "IBAN", _ibans, _digits_valid(iban_valid), needs=_DIGIT, min_len=15),
    Detector("credit_card", "CARD", _regex(_CARD), _digits_valid(card_valid), needs=_DIGIT, min_len=12),
    Detector("url", "URL", _urls, _url_valid, needs=re.compile(r"/|www\.", re.IGNORECASE), min_len=5),
    Detector("email", "EMAIL", _emails, _email_valid, needs=re.compile("@"), min_len=5),
    Detector("us_ssn", "SSN", _regex(_SSN), _digits_valid(us_ssn_valid), needs=_DIGIT, min_len=11),
    Detector("ip_address", "IP", _ips, _ip_valid, needs=re.compile(r"[0-9]\.|:"), min_len=3),
    Detector("date_of_birth", "DOB", _dates_of_birth, needs=_DIGIT, min_len=6),
    Detector("address", "ADDRESS", ner.addresses, default=not ner.missing(), needs=_ADDRESS_GATE, min_len=6),
    Detector("phone", "PHONE", _phones, needs=_DIGIT, min_len=7),
    Detector("person", "PERSON", ner.persons, default=not ner.missing(), needs=_PERSON_GATE, min_len=2),
)}
ENTITIES = tuple(DETECTORS)
DEFAULT_ENTITIES = tuple(e for e, d in DETECTORS.items() if d.default)


def entities_off() -> dict[str, str]:
    """Entities whose detector cannot run here, with the reason (person and address without the `ner` extra)."""
    reason = ner.off_reason()
    return {e: reason for e in ner.ENTITIES} if reason else {}


def check_entities(entities: Iterable[str]) -> tuple[str, ...]:
    """Unknown entity names are an error, never silently ignored; so is one whose detector is not installed."""
    entities = tuple(entities)
    unknown = [e for e in entities if e not in DETECTORS]
    if unknown:
        raise UsageError(f"unknown entity {unknown[0]!r}; known entities: {', '.join(ENTITIES)}.")
    off = entities_off()
    asked = [e for e in entities if e in off]
    if asked:
        raise UsageError(f"--entities {asked[0]} cannot run here: {off[asked[0]]}.")
    return entities or DEFAULT_ENTITIES


@dataclass(frozen=True)
class Found:
    start: int
    end: int
    entity: str
    text: str


@dataclass(frozen=True)
class _Plan:
    detectors: tuple[tuple[str, Detector], ...]  # the wanted ones, in priority order
    gate: re.Pattern | None  # text where none of this is found holds nothing any of them finds


@lru_cache(maxsize=256)
def _plan(entities: tuple[str, ...]) -> _Plan:
    wanted = set(check_entities(entities))
    detectors = tuple((e, d) for e, d in DETECTORS.items() if e in wanted)
    gates = {d.needs.pattern: d.needs.flags for _, d in detectors if d.needs is not None}
    ungated = any(d.needs is None for _, d in detectors)
    gate = None if ungated else re.compile("|".join(f"(?:{p})" for p in gates), re.IGNORECASE)
    return _Plan(detectors, gate)


def _spans(norm: str, plan: _Plan, lang: tuple[str, ...]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    if plan.gate is not None and not plan.gate.search(norm):
        return out
    taken: bytearray | None = None
    gates: dict[re.Pattern, bool] = {}
    for entity, detector in plan.detectors:
        if len(norm) < detector.min_len:
            continue
        if detector.needs is not None:
            ok = gates.get(detector.needs)
            if ok is None:
                ok = gates[detector.needs] = detector.needs.search(norm) is not None
            if not ok:
                continue
        if taken is None:
            taken = bytearray(len(norm))
        candidates = list(detector.find(norm, lang, taken))
        if len(candidates) > 1:
            candidates = sorted(set(candidates), key=lambda s: (s[0], s[0] - s[1]))
        for start, end in candidates:
            if end > start and taken.find(1, start, end) < 0 and \
                    (detector.valid is None or detector.valid(norm[start:end], lang)):
                taken[start:end] = b"\x01" * (end - start)
                out.append((start, end, entity))
    return out


def find_pii(text: str, entities: Iterable[str] = DEFAULT_ENTITIES, lang: tuple[str, ...] = ("en", "zh", "de")) -> list[Found]:
    """Non-overlapping PII spans in `text` (original offsets), left to right."""
    plan = _plan(tuple(entities))
    if not text:
        return []
    norm = NormalizedText(text)
    spans = _spans(norm.text, plan, tuple(lang))
    if not spans:
        return []
    out: list[Found] = []
    last = 0
    for start, end, entity in sorted(spans):
        start, end = norm.original_span(start, end)
        start = max(start, last)  # two values inside one expanded character (⑫): the first keeps it
        if end > start:
            out.append(Found(start, end, entity, text[start:end]))
            last = end
    return out
