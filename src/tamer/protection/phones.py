"""Phone numbers by libphonenumber's metadata (its Python port `phonenumbers`; the only module that imports it).

A candidate (a run of digits and separators found by a cheap pattern) is a phone number when:
- written internationally (+CC or 00CC): the number is valid for its country, or, for the country of a home
  region of the text's languages, of a possible length with 10 digits or more;
- written nationally: the digits are the national number as a home region of the text's languages writes it (a
  German number keeps its trunk 0), grouped as that region groups it (or merging its groups), and valid there;
  or of a possible length there with 10 digits or more, grouped so or as (area code) subscriber;
- or, for any other country: valid there and grouped exactly as that country groups it (a bare run of digits is
  a number in half the world's plans, so it counts only in the home regions).
Verdicts are cached; the home regions are tried first, the rest of the world only through a prefilter on its
number patterns.
"""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers as pn
from phonenumbers import PhoneMetadata, PhoneNumberFormat, ValidationResult

HOME_REGIONS = {"en": ("US", "GB"), "zh": ("CN",), "de": ("DE", "AT", "CH")}
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension|Durchwahl|转|分机)\s?\d{1,6}$", re.IGNORECASE)
_DATE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")


@lru_cache(maxsize=64)
def home_regions(lang: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r for x in lang for r in HOME_REGIONS.get(x, ()))


@lru_cache(maxsize=65536)
def phone_valid(candidate: str, regions: tuple[str, ...]) -> bool:
    """Whether `candidate` (digits, separators, an optional extension) is a phone number; see the module doc."""
    body = _EXTENSION.sub("", candidate)
    digits = re.sub(r"\D", "", body)
    if not 7 <= len(digits) <= 15 or "  " in body or body.count("(") != body.count(")") \
            or re.search(r"[./-]{2}", body) or _DATE.fullmatch(body):
        return False
    return _verdict(body, digits, regions)


def _home_code(country_code: int, regions: tuple[str, ...]) -> bool:
    return any(pn.country_code_for_region(r) == country_code for r in regions)


def _parse(text: str, region: str | None):
    try:
        return pn.parse(text, region)
    except pn.NumberParseException:
        return None


def _national_groups(number, digits: str, region: str) -> list[str] | None:
    """The digit groups of `number` as `region` writes it nationally, if `digits` are that national form (with or
    without the national prefix that a NANP number may carry: 1-510-...)."""
    groups = re.findall(r"\d+", pn.format_number(number, PhoneNumberFormat.NATIONAL))
    if "".join(groups) == digits:
        return groups
    prefix = PhoneMetadata.metadata_for_region(region).national_prefix
    if prefix and prefix + "".join(groups) == digits:
        return [prefix, *groups]
    return None


def _grouped(groups: list[str], reference: list[str], exact: bool) -> bool:
    """Exact: the same groups. Otherwise also one block, or each written group one or more consecutive reference
    groups (libphonenumber's EXACT_GROUPING and STRICT_GROUPING leniencies)."""
    if groups == reference or (not exact and len(groups) == 1):
        return True
    if exact:
        return False
    bounds, pos = set(), 0
    for g in reference:
        pos += len(g)
        bounds.add(pos)
    pos = 0
    for g in groups:
        pos += len(g)
        if pos not in bounds:
            return False
    return True


def _verdict(body: str, digits: str, regions: tuple[str, ...]) -> bool:
    if body.startswith(("+", "(+", "00")):
        number = _parse("+" + body[2:] if body.startswith("00") else body, None)
        if number is None:
            return False
        return pn.is_valid_number(number) or (len(digits) >= 10 and _home_code(number.country_code, regions) and
                                              pn.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE)
    groups = re.findall(r"\d+", body)
    for region in regions:
        number = _parse(body, region)
        reference = _national_groups(number, digits, region) if number is not None else None
        if reference is None:
            continue
        grouped = _grouped(groups, reference, exact=False)
        if grouped and pn.is_valid_number(number):
            return True
        trunk = PhoneMetadata.metadata_for_region(region).national_prefix
        if len(digits) >= 10 and (grouped or len(groups) == 2 and bool(trunk) and groups[0].startswith(trunk)) \
                and pn.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE:
            return True  # an unassigned number of the right length, written whole or as (area code) subscriber
    if len(groups) < 2:
        return False
    for region in _plausible_regions(digits):
        if region in regions:
            continue
        number = _parse(body, region)
        if number is None or not pn.is_valid_number_for_region(number, region):
            continue
        reference = _national_groups(number, digits, region)
        if reference is not None and _grouped(groups, reference, exact=True):
            return True
    return False


@lru_cache(maxsize=1)
def _region_patterns() -> list[tuple[str, tuple[str, ...], re.Pattern | None, tuple[int, ...], re.Pattern]]:
    out = []
    for region in sorted(pn.SUPPORTED_REGIONS):
        md = PhoneMetadata.metadata_for_region(region)
        if md is None or md.general_desc is None or not md.general_desc.national_number_pattern:
            continue
        out.append((region, tuple(filter(None, (md.national_prefix,))),
                    re.compile(md.national_prefix_for_parsing) if md.national_prefix_for_parsing else None,
                    tuple(md.general_desc.possible_length or ()), re.compile(md.general_desc.national_number_pattern)))
    return out


def _plausible_regions(digits: str) -> list[str]:
    """Regions whose general number pattern fits `digits` less a national prefix: a cheap filter before parsing."""
    out = []
    for region, trunks, for_parsing, lengths, pattern in _region_patterns():
        cut = {0, *(len(t) for t in trunks if digits.startswith(t))}
        m = for_parsing.match(digits) if for_parsing is not None else None
        if m:
            cut.add(m.end())
        if any((not lengths or len(digits) - c in lengths) and pattern.fullmatch(digits, c) for c in cut):
            out.append(region)
    return out
