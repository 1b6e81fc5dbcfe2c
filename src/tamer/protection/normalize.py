"""The copy of a line that PII is matched on: NFKC (full-width digits, ideographic spaces and the like become ASCII)
with invisible format characters (zero-width spaces and joiners, soft hyphens, bidi marks) removed, and the way
back from a span of that copy to the original characters (UAX #15; format characters are category Cf).
"""
from __future__ import annotations

import re
import unicodedata

# every character of category Cf (Unicode 14 / 15), as one class
_FORMAT = re.compile("[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
                     "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
                     "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
# a starter and the combining marks after it are normalised as one unit, so that composition (e + U+0301 -> é) happens
_UNIT = re.compile("(?s:.)[\u0300-\u036f\u0483-\u0487\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u093c\u094d"
                   "\u0951-\u0954\u09bc\u09cd\u0e38-\u0e3a\u0e48-\u0e4b\u1ab0-\u1ace\u1dc0-\u1dff\u20d0-\u20f0"
                   "\u3099\u309a\ufe20-\ufe2f]*")
_CACHE: dict[str, str] = {}


def _nfkc(unit: str) -> str:
    out = _CACHE.get(unit)
    if out is None:
        out = _FORMAT.sub("", unicodedata.normalize("NFKC", _FORMAT.sub("", unit)))
        if len(_CACHE) < 65536:
            _CACHE[unit] = out
    return out


class NormalizedText:
    """`text` is what detectors read; `original_span` maps a span of it back to the original string."""

    __slots__ = ("original", "text", "_units", "_starts", "_ends")

    def __init__(self, original: str):
        self.original = original
        self._units: list[str] | None = None
        self._starts: list[int] | None = None
        self._ends: list[int] | None = None
        if original.isascii() or (unicodedata.is_normalized("NFKC", original) and not _FORMAT.search(original)):
            self.text = original  # the common case: nothing to map
            return
        units = _UNIT.findall(original)
        self.text = "".join(map(_nfkc, units))
        # NFKC maps no character to nothing, so equal counts and no format character mean one for one (，→ ,)
        if not (len(self.text) == len(units) == len(original) and not _FORMAT.search(original)):
            self._units = units

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters that produced text[start:end]: the first one's start to the last one's end."""
        if self._units is None:
            return start, end
        if self._starts is None:
            self._starts, self._ends = [], []
            pos = 0
            for unit in self._units:
                n = len(_nfkc(unit))
                self._starts += [pos] * n
                pos += len(unit)
                self._ends += [pos] * n
        return self._starts[start], self._ends[end - 1]
