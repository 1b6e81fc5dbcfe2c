"""Faker-made sentences with known PII spans (en_US, zh_CN, de_DE), for the scrub tests and bench/protect.py.

Values come from Faker; sentence templates are written here and are not known to the detectors. Three kinds of
Faker value that no standard allows are drawn again (by rules of the standards, not by the detectors): JCB cards
from the whole 35 block (JCB issues 3528-3589) or the 0604 prefix (first digit 0 is no card network's), German
area codes beginning 00 (Germany's international call prefix), and zh_CN IBANs, which Faker writes as GB with 21
characters (a GB IBAN has 22; China has no IBAN, so its sentences quote IBANs of other countries).
"""
from __future__ import annotations

import random

TEMPLATES = {
    "en_US": {
        "email": ["Please write to {} if anything changes.", "Her address is {}; reply there.", "cc: {}"],
        "phone": ["Call me at {} after six.", "Phone {} (mobile).", "You can reach the office on {} tomorrow."],
        "credit_card": ["Charge it to card {} please.", "My card number is {}, expiring soon.", "Paid with {}."],
        "iban": ["Wire the money to IBAN {} today.", "Account {} belongs to the landlord.", "IBAN: {}"],
        "ip_address": ["The request came from {} at noon.", "Blocked host {} after the attack.", "Server: {}"],
        "us_ssn": ["His SSN is {} according to the form.", "SSN {} was on file.", "Social security number: {}."],
        "url": ["See {} for details.", "The link {} is broken.", "More at {}"],
        "date_of_birth": ["She was born on {} in Ohio.", "Date of birth: {}", "DOB {} (verified)."],
    },
    "de_DE": {
        "email": ["Bitte schreiben Sie an {} wenn sich etwas ändert.", "Meine Adresse ist {}.", "Kontakt: {}"],
        "phone": ["Rufen Sie mich unter {} an.", "Telefon: {} (abends).", "Erreichbar unter {} ab Montag."],
        "credit_card": ["Bitte mit der Karte {} bezahlen.", "Kreditkartennummer {} ist gesperrt.", "Karte: {}"],
        "iban": ["Überweisen Sie an die IBAN {} bis Freitag.", "Kontonummer {} gehört dem Vermieter.", "IBAN {}"],
        "ip_address": ["Die Anfrage kam von {} um zwölf.", "Host {} wurde gesperrt.", "Adresse {} im Log."],
        "url": ["Siehe {} für Einzelheiten.", "Der Link {} funktioniert nicht.", "Mehr unter {}"],
        "date_of_birth": ["Er ist am {} in Köln geboren worden, geboren am {}.", "Geburtsdatum: {}", "geb. {} in Bonn"],
    },
    "zh_CN": {
        "email": ["请发邮件到{}联系我。", "我的邮箱是 {} ，谢谢。", "邮箱：{}"],
        "phone": ["请拨打{}联系客服。", "我的手机号是{}，请回电。", "电话：{}"],
        "credit_card": ["请用信用卡{}付款。", "卡号：{}，有效期三年。", "银行卡 {} 已挂失。"],
        "iban": ["请汇款到IBAN {}。", "账户 {} 属于房东。", "IBAN：{}"],
        "ip_address": ["请求来自{}。", "已封禁主机 {} 。", "服务器地址：{}"],
        "cn_resident_id": ["身份证号码：{}", "他的身份证号是{}，请核对。", "证件号 {} 已登记。"],
        "url": ["详情请见 {} 。", "链接 {} 打不开。", "官网：{} "],
        "date_of_birth": ["出生日期：{}", "他{}出生于北京。", "生日是{}。"],
    },
}


_IBAN_LOCALES = ("de_DE", "en_GB", "fr_FR", "es_ES", "nl_NL", "it_IT", "pl_PL", "de_CH")


def _card_number(fake) -> str:
    while True:
        number = fake.credit_card_number()
        if not (number.startswith("0") or number.startswith("35") and not 3528 <= int(number[:4]) <= 3589):
            return number


_FAKERS: dict = {}


def _iban(fake, locale: str, rng: random.Random) -> str:
    if locale != "zh_CN":
        return fake.iban()
    from faker import Faker

    other_locale = rng.choice(_IBAN_LOCALES)
    other = _FAKERS.get(other_locale) or _FAKERS.setdefault(other_locale, Faker(other_locale))
    other.seed_instance(rng.randrange(2 ** 32))
    return other.iban()


def _value(fake, entity: str, locale: str, rng: random.Random) -> str:
    if entity == "email":
        return fake.email()
    if entity == "phone":
        number = fake.phone_number()
        while locale == "de_DE" and number.lstrip("(").startswith("00"):
            number = fake.phone_number()
        return number
    if entity == "credit_card":
        number = _card_number(fake)
        style = rng.random()
        if style < 0.25 and len(number) == 16:
            return " ".join(number[i:i + 4] for i in range(0, 16, 4))
        if style < 0.4 and len(number) == 16:
            return "-".join(number[i:i + 4] for i in range(0, 16, 4))
        return number
    if entity == "iban":
        iban = _iban(fake, locale, rng)
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.4 else iban
    if entity == "ip_address":
        return fake.ipv4() if rng.random() < 0.6 else fake.ipv6()
    if entity in ("us_ssn", "cn_resident_id"):
        return fake.ssn()
    if entity == "url":
        return fake.url() + (fake.uri_path() if rng.random() < 0.5 else "")
    if entity == "date_of_birth":
        d = fake.date_of_birth()
        if locale == "zh_CN":
            return rng.choice([f"{d.year}年{d.month}月{d.day}日", d.isoformat()])
        if locale == "de_DE":
            return rng.choice([d.strftime("%d.%m.%Y"), d.isoformat(), f"{d.day}. {d.strftime('%B')} {d.year}"])
        return rng.choice([d.isoformat(), d.strftime("%m/%d/%Y"), d.strftime("%B %d, %Y")])
    raise KeyError(entity)


def pii_corpus(locale: str, per_entity: int = 100, seed: int = 0) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """[(sentence, [(start, end, entity), ...])] with `per_entity` sentences per entity."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = []
    for entity, templates in TEMPLATES[locale].items():
        for i in range(per_entity):
            template = templates[i % len(templates)]
            text, spans = "", []
            parts = template.split("{}")
            for j, part in enumerate(parts):
                text += part
                if j < len(parts) - 1:
                    value = _value(fake, entity, locale, rng)
                    spans.append((len(text), len(text) + len(value), entity))
                    text += value
            out.append((text, spans))
    return out


def score(found_by_sentence, corpus) -> dict[str, dict[str, float]]:
    """Per-entity precision and recall; a detection counts when it has the right entity and exact span."""
    tp, fp, fn = {}, {}, {}
    for found, (_, truth) in zip(found_by_sentence, corpus):
        got = {(f.start, f.end, f.entity) for f in found}
        want = set(truth)
        for s in got & want:
            tp[s[2]] = tp.get(s[2], 0) + 1
        for s in got - want:
            fp[s[2]] = fp.get(s[2], 0) + 1
        for s in want - got:
            fn[s[2]] = fn.get(s[2], 0) + 1
    out = {}
    for e in sorted(set(tp) | set(fp) | set(fn)):
        t = tp.get(e, 0)
        out[e] = {"precision": t / max(1, t + fp.get(e, 0)), "recall": t / max(1, t + fn.get(e, 0)),
                  "support": t + fn.get(e, 0)}
    return out


# lines built to make a scrubber crawl: each unit repeated to the line's length (tests and bench/protect.py)
ADVERSARIAL = {
    "ipv4": "1.2.3.4 ",
    "iban_letters": "DE12",          # then letters only
    "iban_starts": "DE12 ",
    "digit_run": "1234567890",
    "digit_groups": "12 ",
    "emails": "a@b.co ",
    "at_signs": "@",
    "phones": "+1 (202) 555-0143 ",
    "fullwidth_digits": "１3８1２3４5６7８ ",
    "ipv6_colons": "1:2:",
    "cards": "4111 1111 1111 1111 ",
    "urls": "a.bc/",
    "person_words": "Mr. John ",
}


def adversarial_line(kind: str, size: int = 1_000_000) -> str:
    unit = ADVERSARIAL[kind]
    if kind == "iban_letters":
        return (unit + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * (size // 26 + 1))[:size]
    return (unit * (size // len(unit) + 1))[:size]
