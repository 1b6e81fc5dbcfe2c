"""Validators by the standards, so that a pattern match becomes a confident detection and a random number does not.

Identifiers and checksums come from python-stdnum (the only module here that imports it): Luhn (ISO/IEC 7812),
IBAN (ISO 13616, with SWIFT's per-country registry), the Chinese resident identity number (GB 11643-1999) and the
US Social Security number. Card issuers are told by their IIN ranges, IP addresses by `ipaddress` (RFC 4291,
RFC 4007 zone ids, CIDR), e-mail domains by IDNA (RFC 3490, punycode labels decoded).
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from functools import lru_cache

from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum import exceptions as _stdnum_errors
from stdnum import numdb as _numdb
from stdnum.cn import ric as _ric
from stdnum.us import ssn as _ssn

# (IIN ranges, each as (low, high) over the same number of leading digits; card lengths), as the networks publish
# them (Visa, Mastercard incl. 2-series, Amex, Discover, UnionPay, JCB incl. its older 15-digit ranges, Diners,
# Maestro, Mir, RuPay, Verve, Troy, UATP, InterPayment, InstaPayment, Dankort)
_ISSUERS: tuple[tuple[tuple[tuple[int, int], ...], tuple[int, ...]], ...] = (
    (((4, 4),), (13, 16, 19)),
    (((51, 55), (2221, 2720)), (16,)),
    (((34, 34), (37, 37)), (15,)),
    (((6011, 6011), (644, 649), (65, 65)), (16, 17, 18, 19)),
    (((62, 62), (81, 81)), (16, 17, 18, 19)),
    (((3528, 3589),), (16, 17, 18, 19)),
    (((2131, 2131), (1800, 1800)), (15,)),
    (((300, 305), (3095, 3095), (36, 36), (38, 39)), (14, 15, 16, 17, 18, 19)),
    (((50, 50), (56, 69)), (12, 13, 14, 15, 16, 17, 18, 19)),
    (((2200, 2204),), (16, 17, 18, 19)),
    (((60, 60), (81, 82), (353, 353), (356, 356), (508, 508)), (16,)),
    (((506099, 506198), (650002, 650027)), (16, 18, 19)),
    (((9792, 9792),), (16,)),
    (((1, 1),), (15,)),
    (((636, 636),), (16, 17, 18, 19)),
    (((637, 639),), (16,)),
    (((5019, 5019),), (16,)),
)


def luhn_valid(number: str) -> bool:
    """ISO/IEC 7812 check digit: doubling every second digit from the right, the sum is 0 mod 10."""
    digits = "".join(c for c in number if c.isdigit())
    return len(digits) >= 2 and _luhn.is_valid(digits)


def card_issued(digits: str) -> bool:
    """A number in a card network's IIN range, with a length that network issues."""
    for ranges, lengths in _ISSUERS:
        if len(digits) in lengths and any(low <= int(digits[:len(str(low))]) <= high for low, high in ranges):
            return True
    return False


def card_valid(number: str) -> bool:
    """A payment card number: an issuer's IIN range and length, and the Luhn check digit."""
    digits = "".join(c for c in number if c.isdigit())
    return 12 <= len(digits) <= 19 and len(set(digits)) > 1 and card_issued(digits) and _luhn.is_valid(digits)


@lru_cache(maxsize=None)
def iban_length(country: str) -> int | None:
    """Length of the IBANs of a country in SWIFT's IBAN registry (None when it has no IBAN)."""
    info = _numdb.get("iban").info(country.upper())
    structure = info[0][1].get("bban") if info and len(info[0][0]) == 2 else None
    if not structure:
        return None
    return 4 + sum(int(n) for n in re.findall(r"(\d+)!", structure))


def iban_valid(iban: str) -> bool:
    """ISO 13616: the country's length and BBAN format, the mod-97 check digits, and the national check digits
    where stdnum knows them (BE, ES, ME, NO); spaces or dashes allowed. A bank code missing from stdnum's list of
    a country's banks does not refuse the number (banks are added; the registry's own BE example is missing)."""
    try:
        return bool(_iban.validate(iban))
    except _stdnum_errors.InvalidComponent:
        return _iban.is_valid(iban, check_country=False)
    except _stdnum_errors.ValidationError:
        return False


def cn_resident_id_valid(number: str) -> bool:
    """Chinese resident identity number (GB 11643-1999): an address code in stdnum's GB/T 2260 table, a real birth
    date not in the future, the ISO 7064 MOD 11-2 check character. stdnum's own `validate` also wants the county
    code to have existed in the birth year, which refuses real numbers (codes are given at registration: people
    born in 1950 hold codes created in 1983), so the parts are checked here one by one."""
    number = re.sub(r"[ -]", "", number).upper()
    if len(number) != 18 or not number[:17].isdigit() or number[17] != _ric.calc_check_digit(number):
        return False
    try:
        if _ric.get_birth_date(number) > _dt.date.today():
            return False
    except _stdnum_errors.ValidationError:
        return False
    return _cn_address_known(number[:6])


@lru_cache(maxsize=8192)
def _cn_address_known(code: str) -> bool:
    return any("county" in props for _, props in _numdb.get("cn/loc").info(code))


def us_ssn_valid(ssn: str) -> bool:
    """US Social Security number as the SSA issues them (never area 000, 666 or 9xx, group 00, serial 0000, nor
    the numbers it voided), written with dashes, spaces, dots or none."""
    return _ssn.is_valid(re.sub(r"[ .-]", "", ssn))


@lru_cache(maxsize=65536)
def ip_valid(text: str) -> bool:
    """An IPv4 or IPv6 address (RFC 4291 text forms, IPv4-mapped, a zone id), optionally with a CIDR prefix length."""
    try:
        (ipaddress.ip_interface if "/" in text else ipaddress.ip_address)(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def domain_valid(domain: str) -> bool:
    """A DNS name as IDNA writes it: labels of 1-63 characters, no leading or trailing hyphen, a letter TLD,
    Unicode labels that IDNA accepts and punycode (xn--) labels that decode."""
    labels = domain.rstrip(".").split(".")
    if len(labels) < 2 or len(domain) > 253 or labels[-1].isdigit():
        return False
    for label in labels:
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        try:
            if label[:4].lower() == "xn--":
                label.encode("ascii").decode("idna")
            elif not label.isascii():
                label.encode("idna")
        except UnicodeError:
            return False
    return True
