"""Checksum validators that turn digit patterns into confident detections (and let random numbers through)."""
from __future__ import annotations

import datetime as _dt
import ipaddress

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"  # GB 11643-1999: check character for sum mod 11 = 0..10


def luhn_valid(number: str) -> bool:
    """Payment card numbers (ISO/IEC 7812): doubling every second digit from the right, the sum is 0 mod 10."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, the number is 1 mod 97."""
    s = "".join(iban.split()).upper()
    if not (15 <= len(s) <= 34 and s[:2].isalpha() and s[2:4].isdigit() and s.isalnum() and s.isascii()):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def cn_resident_id_valid(number: str) -> bool:
    """Chinese resident identity number (GB 11643-1999): 17 digits, a real birth date, ISO 7064 MOD 11-2 check."""
    s = number.upper()
    if len(s) != 18 or not s[:17].isdigit() or s[17] not in "0123456789X":
        return False
    try:
        born = _dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if not (1880 <= born.year <= _dt.date.today().year) or s[:2] in ("00", "10", "20", "30", "40", "60", "70", "80", "90"):
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _CN_WEIGHTS))
    return _CN_CHECK[total % 11] == s[17]


def us_ssn_valid(ssn: str) -> bool:
    """US Social Security numbers as issued: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    digits = "".join(c for c in ssn if c.isdigit())
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ip_valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
