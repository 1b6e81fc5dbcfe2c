"""Detection against the standards' own published examples (valid and invalid), and on Unicode forms of them:
each value is found whole, exactly its own characters, or not at all."""
import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from tamer.protection.detect import find_pii
from tamer.protection.scrub import scrub_text


def spans(text, entities=None, lang=("en", "zh", "de")):
    found = find_pii(text, entities or (), lang) if entities else find_pii(text, lang=lang)
    return [(f.text, f.entity) for f in found]


# --- hole 6: Chinese and Unicode forms --------------------------------------------------------------------

@pytest.mark.parametrize("text,value,entity", [
    ("电话：１３８１２３４５６７８，谢谢", "１３８１２３４５６７８", "phone"),                     # full-width digits
    ("手机 １３８－１２３４－５６７８。", "１３８－１２３４－５６７８", "phone"),                 # full-width hyphens
    ("call 138\u200b1234\u200b5678 now", "138\u200b1234\u200b5678", "phone"),           # zero-width spaces
    ("卡号 6205 5000 0000 0000 004 已挂失", "6205 5000 0000 0000 004", "credit_card"),   # UnionPay 19 digits, 4-4-4-4-3
    ("卡号：６２０５　５０００　００００　００００　００４。", "６２０５　５０００　００００　００００　００４", "credit_card"),
    ("card 4111\u200c1111\u200d1111\ufeff1111.", "4111\u200c1111\u200d1111\ufeff1111", "credit_card"),
    ("iban de89 3704 0044 0532 0130 00 please", "de89 3704 0044 0532 0130 00", "iban"),  # lower case
    ("ＩＢＡＮ：ＤＥ８９３７０４００４４０５３２０１３０００。", "ＤＥ８９３７０４００４４０５３２０１３０００", "iban"),
    ("身份证号码：１１０１０５１９４９１２３１００２Ｘ。", "１１０１０５１９４９１２３１００２Ｘ", "cn_resident_id"),
    ("mail bob\u00ad@example.com today", "bob\u00ad@example.com", "email"),             # soft hyphen inside
    ("write to ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ，thanks", "ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email"),
    ("server １９２．１６８．０．１ down", "１９２．１６８．０．１", "ip_address"),
])
def test_unicode_forms_are_found_and_map_back_to_exactly_their_characters(text, value, entity):
    assert spans(text) == [(value, entity)]


@pytest.mark.parametrize("address", [  # Wikipedia, "Email address", internationalization examples (RFC 6530)
    "Pelé@example.com", "Pele\u0301@example.com", "δοκιμή@παράδειγμα.δοκιμή", "我買@屋企.香港", "二ノ宮@黒川.日本",
    "медведь@с-балалайкой.рф", "संपर्क@डाटामेल.भारत",
])
def test_internationalised_email_addresses(address):
    assert spans(f"Contact: {address} (any time)") == [(address, "email")]
    assert spans(f"邮箱：{address}") == [(address, "email")]


def test_normalisation_changes_nothing_outside_the_replaced_spans():
    text = "ｅｘｔ．：電話１３８１２３４５６７８、ﬁle №５，ｍａｉｌ：ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ\u200b！"
    out = scrub_text(text, ("phone", "email"), ("zh",), lambda entity, value: f"<{entity}>", __import__("collections").Counter())
    assert out == "ｅｘｔ．：電話<phone>、ﬁle №５，ｍａｉｌ：<email>\u200b！"


# --- hole 7: as precise as the standards ----------------------------------------------------------------

@pytest.mark.parametrize("iban", [  # SWIFT IBAN registry examples, print and electronic format, and with dashes
    "GB29 NWBK 6016 1331 9268 19", "DE89 3704 0044 0532 0130 00", "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00", "BE68 5390 0754 7034", "CH93 0076 2011 6238 5295 7", "NO93 8601 1117 947",
    "MT84 MALT 0110 0001 2345 MTLC AST0 01S", "LC55 HEMM 0001 0001 0012 0012 0002 3015", "GB29NWBK60161331926819",
    "DE89-3704-0044-0532-0130-00", "gb29 nwbk 6016 1331 9268 19",
])
def test_iban_registry_examples(iban):
    assert spans(f"Wire it to {iban} today.") == [(iban, "iban")]


@pytest.mark.parametrize("text", [
    "ref GB82 WEST 1234 5698 7654 33",        # check digits wrong
    "ref GB82 WEST 1234 5698 7654 3299",      # a valid IBAN then more of the same group: not cut to the valid prefix
    "ref DE89370400440532013000123",          # too long for DE, no separator where DE's length ends
    "ref DE89 3704 0044 0532 0130 0",         # too short for DE
    "ref XX89 3704 0044 0532 0130 00",        # no such country
    "ref US64SVBKUS6S3300958879",             # a country without IBANs
])
def test_invalid_ibans_are_left_whole(text):
    assert spans(text, ["iban"]) == []
    assert "iban" not in {e for _, e in spans(text)}


@pytest.mark.parametrize("address", [  # RFC 4291 section 2.2 and 2.3, RFC 4007 section 11 (zone ids)
    "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789", "2001:DB8:0:0:8:800:200C:417A", "2001:DB8::8:800:200C:417A",
    "FF01::101", "::1", "0:0:0:0:0:0:13.1.68.3", "::13.1.68.3", "0:0:0:0:0:FFFF:129.144.52.38",
    "::FFFF:129.144.52.38", "2001:0DB8:0000:CD30:0000:0000:0000:0000/60", "2001:0DB8::CD30:0:0:0:0/60",
    "2001:0DB8:0:CD30::/60", "fe80::1234%1", "ff02::5678%5", "fe80::1%eth0", "192.0.2.1", "198.51.100.0/24",
])
def test_ip_address_rfc_examples_masked_whole(address):
    for text in (f"host {address} blocked", f"IP:{address}.", f"服务器地址：{address}"):
        assert spans(text) == [(address, "ip_address")], text


@pytest.mark.parametrize("text", [  # RFC 4291 2.3's illegal form, and addresses no RFC allows
    "prefix 2001:0DB8:0:CD3/60 here", "host 2001:db8:::1", "host 1:2:3:4:5:6:7:8:9", "host ::ffff:1.2.3.256",
    "host 1::2::3", "host 256.1.1.1", "time 10:30:00", "host 01.02.03.004",
])
def test_invalid_ip_addresses_are_left_whole(text):
    assert spans(text, ["ip_address"]) == []


@pytest.mark.parametrize("number", [  # test numbers the networks publish (Stripe / PayPal): issuer range and Luhn
    "4111111111111111", "4222222222222", "5555555555554444", "2223003122003222", "378282246310005",
    "6011000990139424", "30569309025904", "3056930009020004", "3566002020360505", "6200000000000005",
    "6205500000000000004", "5018000000000009", "4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005",
    "6205 5000 0000 0000 004",
])
def test_published_card_numbers(number):
    assert spans(f"Paid with {number}, thanks.") == [(number, "credit_card")]


@pytest.mark.parametrize("text", [
    "order 7000000000000005",     # Luhn-valid, but 7 is the petroleum industry's, no card network's
    "order 9500000000000006",     # Luhn-valid, national use (9)
    "order 1234567812345670",     # Luhn-valid, 1 with 16 digits (UATP issues 15)
    "card 4111111111111112",      # Luhn fails
    "card 4111 1111 1111 1111 1", # a valid number and one more digit in its grouping: not cut
    "card 4111111111111111111",   # Visa 19 digits, Luhn fails: not cut to 16
])
def test_numbers_outside_the_issuer_ranges_are_left_whole(text):
    assert spans(text, ["credit_card"]) == []


@pytest.mark.parametrize("ssn", ["123-45-6789", "123 45 6789", "123.45.6789", "219-09-9998"])
def test_us_ssn_with_dashes_spaces_or_dots(ssn):
    assert spans(f"SSN {ssn} on file", ["us_ssn"]) == [(ssn, "us_ssn")]


@pytest.mark.parametrize("ssn", ["000-12-3456", "666 12 3456", "912.34.5678", "123.00.4567", "123 45 0000",
                                 "078-05-1120", "123-45.6789"])
def test_invalid_us_ssns(ssn):
    assert spans(f"SSN {ssn} on file", ["us_ssn"]) == []


@pytest.mark.parametrize("address", [  # Wikipedia, "Email address", valid examples; punycode (RFC 3492) domains
    "simple@example.com", "very.common@example.com", "x@example.com",
    "long.email-address-with-hyphens@and.subdomains.example.com", "user.name+tag+sorting@example.com",
    "name/surname@example.com", "mailhost!username@example.org", "user%example.com@example.org",
    "user-@example.org", "info@xn--mnchen-3ya.de", "user@xn--bcher-kva.example", "ops@mail.xn--fiqs8s",
])
def test_email_examples(address):
    assert spans(f"Write to {address} today.") == [(address, "email")]


@pytest.mark.parametrize("text", [  # Wikipedia's invalid examples and a broken punycode label: nothing, not a part
    "Abc.example.com", "A@b@c@example.com",
    "1234567890123456789012345678901234567890123456789012345678901234+x@example.com",
    "i.like.underscores@but_they_are_not_allowed_in_this_part", "bob@xn--zz.com", "bob@example.c0m",
])
def test_invalid_email_addresses_are_left_whole(text):
    assert spans(f"Write to {text} today.", ["email"]) == []


@pytest.mark.parametrize("url", ["example.com/login?user=bob", "docs.python.org/3/library/re.html",
                                 "sub.example.co.uk:8080/a/b", "xn--bcher-kva.example/path", "https://example.com/a?b=c",
                                 "www.example.org", "https://www.example.com/users/bob@example.com"])
def test_urls_with_and_without_a_scheme(url):
    assert spans(f"see {url} for more") == [(url, "url")]


@pytest.mark.parametrize("text", ["e.g./i.e.", "3.5/5 stars", "and/or", "U.S./Canada", "file.txt", "10.5/2"])
def test_prose_is_not_a_url(text):
    assert spans(f"it was {text} ok", ["url"]) == []


def _example_numbers():
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                yield region, number


def test_libphonenumber_example_numbers_of_every_country():
    """Every region's example fixed-line and mobile number (libphonenumber's metadata) is found whole in
    international form, and in national form when it has 7 or more digits written in groups (a bare run of
    digits counts only in the text's own regions, where it is found too)."""
    missed, national = [], 0
    for region, number in _example_numbers():
        international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        if spans(f"Please call {international} tomorrow.", lang=("en",)) != [(international, "phone")]:
            missed.append(international)
        written = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        digits = sum(c.isdigit() for c in written)
        if digits >= 7 and len(written.split()) + written.count("-") > 1 and region != "TJ":  # TJ's is an SSN too
            national += 1
            if spans(f"Please call {written} tomorrow.", lang=("en",)) != [(written, "phone")]:
                missed.append(f"{region}: {written}")
    assert national > 350 and missed == []
    for region, lang in (("US", ("en",)), ("GB", ("en",)), ("CN", ("zh",)), ("DE", ("de",))):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            bare = phonenumbers.format_number(phonenumbers.example_number_for_type(region, kind), PhoneNumberFormat.NATIONAL)
            bare = "".join(c for c in bare if c.isdigit())
            assert spans(f"Tel {bare}.", lang=lang) == [(bare, "phone")]


def test_libphonenumber_invalid_example_numbers():
    """Every region's invalid example number (libphonenumber's metadata), written with its country code, is not
    a phone number; nor, in national form, in its own region."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        number = phonenumbers.invalid_example_number(region)
        if number is None or region == "CN":  # CN is a home region below: its possible lengths are let through
            continue
        for fmt in (PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164):
            written = phonenumbers.format_number(number, fmt)
            found += spans(f"Please call {written} tomorrow.", lang=("zh",))
    for region, lang in (("US", ("en",)), ("DE", ("de",))):
        written = phonenumbers.format_number(phonenumbers.invalid_example_number(region), PhoneNumberFormat.NATIONAL)
        found += spans(f"Please call {written} tomorrow.", lang=lang)
    assert found == []


def test_phone_numbers_listed_in_a_row_and_no_digit_of_a_number_left_visible():
    assert spans("Call 138 1234 5678 or 139 8765 4321") == [("138 1234 5678", "phone"), ("139 8765 4321", "phone")]
    assert spans("Phones: 13812345678 13912345678") == [("13812345678", "phone"), ("13912345678", "phone")]
    assert spans("Llame al 011 15-2345-6789 hoy", lang=("en",)) == [("011 15-2345-6789", "phone")]
    assert spans("Tel. +49 30 1234567 oder 030 7654321") == [("+49 30 1234567", "phone"), ("030 7654321", "phone")]
