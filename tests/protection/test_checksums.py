"""Checksum validators against published valid and invalid examples."""
import pytest

from tamer.protection.checksums import cn_resident_id_valid, iban_valid, ip_valid, luhn_valid, us_ssn_valid


@pytest.mark.parametrize("number,valid", [
    ("79927398713", True),            # Wikipedia, "Luhn algorithm"
    ("79927398710", False),
    ("4111111111111111", True),       # Visa test card (PayPal / Stripe test numbers)
    ("4111111111111112", False),
    ("5555555555554444", True),       # Mastercard test card
    ("378282246310005", True),        # American Express test card
    ("6011111111111117", True),       # Discover test card
    ("4242 4242 4242 4242", True),    # Stripe, with spaces
    ("1234567812345678", False),
])
def test_luhn(number, valid):
    assert luhn_valid(number) is valid


@pytest.mark.parametrize("iban,valid", [
    ("GB82 WEST 1234 5698 7654 32", True),   # ISO 13616 / Wikipedia example
    ("GB82WEST12345698765432", True),
    ("DE89 3704 0044 0532 0130 00", True),   # Bundesbank example
    ("FR14 2004 1010 0505 0001 3M02 606", True),
    ("GB82 WEST 1234 5698 7654 33", False),  # last digit changed
    ("GB28 WEST 1234 5698 7654 32", False),  # check digits swapped
    ("DE89370400440532013001", False),
    ("XX00", False),
])
def test_iban(iban, valid):
    assert iban_valid(iban) is valid


@pytest.mark.parametrize("number,valid", [
    ("11010519491231002X", True),   # the example in GB 11643-1999
    ("110105194912310021", False),  # same with a wrong check character
    ("440524188001010014", True),   # widely cited example (Shantou, 1880-01-01)
    ("440524188001010015", False),
    ("11010519491331002X", False),  # month 13
    ("1101051949123100", False),    # too short
])
def test_cn_resident_id(number, valid):
    assert cn_resident_id_valid(number) is valid


@pytest.mark.parametrize("ssn,valid", [
    ("078-05-1120", False),   # the Woolworth wallet number: voided by the SSA (python-stdnum's list), it identifies no one
    ("123-45-6789", True),
    ("000-12-3456", False),   # area 000 never issued
    ("666-12-3456", False),   # area 666 never issued
    ("912-34-5678", False),   # 9xx are ITINs, not SSNs
    ("123-00-4567", False),
    ("123-45-0000", False),
])
def test_us_ssn(ssn, valid):
    assert us_ssn_valid(ssn) is valid


@pytest.mark.parametrize("text,valid", [
    ("192.168.0.1", True), ("256.1.1.1", False), ("2001:db8::1", True), ("fe80::1ff:fe23:4567:890a", True),
    ("2001:db8:::1", False), ("10:30:00", False),
])
def test_ip(text, valid):
    assert ip_valid(text) is valid
