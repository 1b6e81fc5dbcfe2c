"""Finding PII in text: patterns narrowed by checksums (Luhn, mod-97, GB 11643) and by context words.

Each detector yields (start, end) spans; overlaps are settled by priority (checksum-validated detectors first),
then by length. Person names are found only in context (an honorific, "my name is", 我叫, 姓名, ...), because no
offline method finds bare names reliably; they are opt-in (`--entities person`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..errors import UsageError
from .checksums import cn_resident_id_valid, iban_valid, ip_valid, luhn_valid, us_ssn_valid

Span = tuple[int, int]


@dataclass(frozen=True)
class Detector:
    entity: str
    label: str
    find: Callable[[str, tuple[str, ...]], Iterator[Span]]
    default: bool = True


def _regex(pattern: str, valid: Callable[[str], bool] | None = None, flags: int = re.ASCII, group: int = 0):
    rx = re.compile(pattern, flags)

    def find(text: str, lang: tuple[str, ...]) -> Iterator[Span]:
        for m in rx.finditer(text):
            if valid is None or valid(m.group(group)):
                yield m.span(group)

    return find


_EMAIL = r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
_URL = re.compile(r"(?<![\w@.])(?:https?://|www\.)[^\s<>\"'，。、；：！？）】\u4e00-\u9fff]+", re.IGNORECASE | re.ASCII)
_IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)"
_IPV6 = r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*[0-9A-Fa-f]{2})(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"
_CARD = r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w])"
_CARD_GROUPS = re.compile(r"\d{12,19}|\d{4}(?:([ -])\d{4}){2}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5}", re.ASCII)
_CN_ID = r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"
_SSN = r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])", re.ASCII)
_CN_MOBILE = r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"
_PHONE = re.compile(r"(?<![\w+@/.,-])(?:\+|00)?\(?\d[\d()./ -]{5,22}\d(?:\s?(?:x|ext\.?|Durchwahl)\s?\d{1,6})?(?![\w@])", re.ASCII)
_EXT = re.compile(r"\s?(?:x|ext\.?|Durchwahl)\s?\d{1,6}$")


def _cards(text, lang):
    for m in re.finditer(_CARD, text, re.ASCII):
        if not _CARD_GROUPS.fullmatch(m.group()):  # 4-4-4-4 (Amex 4-6-5) or no separators; not 3-3-4 phones
            continue
        digits = re.sub(r"\D", "", m.group())
        if 12 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            yield m.span()


def _ibans(text, lang):
    for m in _IBAN.finditer(text):
        candidate = m.group()
        while len(candidate) >= 15:  # the pattern may run into a following capitalised word; back off
            if iban_valid(candidate):
                yield m.start(), m.start() + len(candidate)
                break
            candidate = candidate[:-1].rstrip()


def _urls(text, lang):
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1
        yield m.start(), end


def _phones(text, lang):
    for m in _PHONE.finditer(text):
        s = m.group()
        body = _EXT.sub("", s)
        digits = re.sub(r"\D", "", body)
        if "  " in s or s.count("(") != s.count(")") or re.search(r"[./-]{2}", s):
            continue
        if re.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", body):  # a date
            continue
        international = body.startswith(("+", "00", "("))
        if 10 <= len(digits) <= 15 or (international and 7 <= len(digits) <= 15):
            yield m.span()


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


def _dates_of_birth(text, lang):
    words = re.compile("|".join(_DOB_WORDS[x] for x in lang if x in _DOB_WORDS) or "(?!)", re.IGNORECASE)
    for w in words.finditer(text):
        m = _DATE.search(text, w.end(), min(len(text), w.end() + 40))
        if m:
            yield m.span()
        for m in _DATE.finditer(text, max(0, w.start() - 40), w.start()):  # 1990年1月2日出生, am ... geboren
            if len(text[m.end():w.start()]) <= 20:
                yield m.span()


_HONORIFIC = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Hr|Fr)\.?"
_CAP = r"[A-ZÄÖÜ][a-zäöüß'’-]+(?:-[A-ZÄÖÜ][a-zäöüß]+)?"
_NAME_EN = re.compile(rf"(?:\b{_HONORIFIC}\s+|\b(?:[Mm]y name is|[Nn]ame:|[Ii]ch heiße|[Ii]ch bin|[Mm]ein Name ist|[Ss]igned,?)\s+)"
                      rf"({_CAP}(?:\s+(?:von |van |de )?{_CAP}){{0,2}})")
_NAME_ZH = re.compile(r"(?:我叫|我是|姓名[:：]\s?|名字是|联系人[:：]?\s?)([\u4e00-\u9fff]{2,3})(?=[\s,，。;；、)）]|$|[^\u4e00-\u9fff])")
_NAME_ZH_TITLE = re.compile(r"([\u4e00-\u9fff]{2,3})(?=先生|女士|小姐|老师|同学)")


def _persons(text, lang):
    if "en" in lang or "de" in lang:
        for m in _NAME_EN.finditer(text):
            yield m.span(1)
    if "zh" in lang:
        for rx in (_NAME_ZH, _NAME_ZH_TITLE):
            for m in rx.finditer(text):
                yield m.span(1)


DETECTORS: dict[str, Detector] = {d.entity: d for d in (
    # in priority order: a checksum-validated match wins an overlap
    Detector("cn_resident_id", "CN_ID", _regex(_CN_ID, cn_resident_id_valid)),
    Detector("iban", "IBAN", _ibans),
    Detector("credit_card", "CARD", _cards),
    Detector("email", "EMAIL", _regex(_EMAIL)),
    Detector("url", "URL", _urls),
    Detector("us_ssn", "SSN", _regex(_SSN, us_ssn_valid)),
    Detector("ip_address", "IP", lambda t, l: (s for rx in (_IPV4, _IPV6) for s in _regex(rx, ip_valid)(t, l))),
    Detector("date_of_birth", "DOB", _dates_of_birth),
    Detector("phone", "PHONE", lambda t, l: (s for f in (_regex(_CN_MOBILE), _phones) for s in f(t, l))),
    Detector("person", "PERSON", _persons, default=False),
)}
ENTITIES = tuple(DETECTORS)
DEFAULT_ENTITIES = tuple(e for e, d in DETECTORS.items() if d.default)


def check_entities(entities: Iterable[str]) -> tuple[str, ...]:
    """Unknown entity names are an error, never silently ignored."""
    entities = tuple(entities)
    unknown = [e for e in entities if e not in DETECTORS]
    if unknown:
        raise UsageError(f"unknown entity {unknown[0]!r}; known entities: {', '.join(ENTITIES)}.")
    return entities or DEFAULT_ENTITIES


@dataclass(frozen=True)
class Found:
    start: int
    end: int
    entity: str
    text: str


def find_pii(text: str, entities: Iterable[str] = DEFAULT_ENTITIES, lang: tuple[str, ...] = ("en", "zh", "de")) -> list[Found]:
    """Non-overlapping PII spans in `text`, left to right."""
    wanted = set(check_entities(entities))
    if not text or not any(c.isdigit() or c in "@:" for c in text) and "person" not in wanted and "url" not in wanted:
        return []
    taken: list[Found] = []
    for rank, (entity, detector) in enumerate(DETECTORS.items()):
        if entity not in wanted:
            continue
        spans = sorted(set(detector.find(text, lang)), key=lambda s: (s[0], -(s[1] - s[0])))
        for start, end in spans:
            if end > start and all(end <= f.start or start >= f.end for f in taken):
                taken.append(Found(start, end, entity, text[start:end]))
    return sorted(taken, key=lambda f: f.start)
