"""Person and address detection for `scrub`: whether the `ner` extra is installed, and the two detectors over the
Chinese (names_zh: jieba) and English / German (names_en: probablepeople, usaddress) finders.

They are on by default when the extra is installed (`pip install 'tamer[ner]'`); without it they are off, the
scrub report says so and why, and asking for them by name is refused in one sentence.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.util import find_spec

LIBRARIES = ("jieba", "probablepeople", "usaddress")
ENTITIES = ("person", "address")


@lru_cache(maxsize=1)
def missing() -> tuple[str, ...]:
    """The libraries of the `ner` extra that cannot be imported here."""
    out = []
    for name in LIBRARIES:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules (blocked) reads as missing
            found = False
        if not found:
            out.append(name)
    return tuple(out)


def off_reason() -> str | None:
    """Why person and address detection is off, or None when it is on."""
    gone = missing()
    if not gone:
        return None
    return (f"person and address detection is off: {', '.join(gone)} {'is' if len(gone) == 1 else 'are'} not "
            "installed (pip install 'tamer[ner]')")


def _found(kind: str, text: str, lang: tuple[str, ...]) -> list[tuple[int, int]]:
    """The spans of `kind` (persons or addresses) the Chinese and the English / German detectors find."""
    out = []
    if "zh" in lang:
        from . import names_zh

        out += getattr(names_zh, kind)(text)
    if "en" in lang or "de" in lang:
        from . import names_en

        out += getattr(names_en, kind)(text, de="de" in lang)
    return out


def persons(text: str, lang: tuple[str, ...], taken) -> list[tuple[int, int]]:
    return _found("persons", text, lang)


def addresses(text: str, lang: tuple[str, ...], taken) -> list[tuple[int, int]]:
    return _found("addresses", text, lang)
