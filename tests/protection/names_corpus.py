"""Faker-made sentences with known person names and postal addresses (zh_CN, en_US, de_DE), for the name tests and
bench/protect.py.

Sets of sentence templates per locale and entity: TUNE, which the detectors were developed against; SEEN, a first
held-out set whose misses were read after measuring it (so it counts as tuned on now); HELD_OUT, written after that
and used only to measure (bench/protect.py and the recall test). For Chinese, HELD_OUT's misses were read too, so
its templates moved into SEEN and HELD_OUT_2 (news, forms, chats, addresses beside a name), written before the
detector was ever run on it, is Chinese's held-out set now. A template may hold `{p}`, a second Faker person beside
the address (a true person too).
Values come from Faker. A person's truth is its name proper (given and family name, no title or degree: "Dr." and
"MBA" may stay visible); an address's truth is the whole address. Scoring is by coverage, the question a scrubber
must answer: a value counts as found when every letter and digit of it lies inside detections of its entity.
"""
from __future__ import annotations

import random

TUNE = {
    "en_US": {
        "person": ["Please ask {} about the invoice.", "My name is {} and I need help.", "Dear {}, thanks for your order.",
                   "Mr. {} called twice yesterday.", "Contact: {}", "I spoke with {} on the phone."],
        "address": ["Please ship it to {} by Friday.", "Our office moved to {}.", "Address: {}",
                    "She lives at {} with her sister."],
    },
    "de_DE": {
        "person": ["Bitte fragen Sie {} nach der Rechnung.", "Mein Name ist {} und ich brauche Hilfe.",
                   "Sehr geehrte Frau {}, vielen Dank.", "Gestern hat {} zweimal angerufen.", "Kontakt: {}",
                   "Ich habe mit {} telefoniert."],
        "address": ["Bitte liefern Sie an {} bis Freitag.", "Unser Büro ist jetzt in der {}.", "Adresse: {}",
                    "Sie wohnt {} bei ihrer Schwester."],
    },
    "zh_CN": {
        "person": ["联系人：{}，请尽快回复。", "我叫{}，想咨询一下。", "请转告{}明天开会。", "{}先生昨天来过电话。",
                   "收件人{}，电话稍后补充。", "我和{}一起去了公司。"],
        "address": ["请寄到{}，谢谢。", "住址：{}", "我们公司搬到了{}。", "收货地址是{}，请核对。"],
    },
}

SEEN = {  # the first held-out set: measured once, its misses read and fixed in general ways, so now tuned on
    "en_US": {
        "person": ["Yesterday {} sent the contract back.", "Thanks to {} for the quick reply!", "Name: {}",
                   "The form was signed by {} last week.", "Could {} please call the front desk?",
                   "Hi {}, your package is ready."],
        "address": ["The parcel went to {} instead.", "Send the documents to {} please.", "Mailing address: {}",
                    "He moved to {} last spring."],
    },
    "de_DE": {
        "person": ["Heute Morgen hat {} den Vertrag geschickt.", "Vielen Dank an {} für die schnelle Antwort!",
                   "Name: {}", "Unterschrieben von {} am Montag.", "Kann {} bitte die Zentrale anrufen?",
                   "Hallo {}, Ihr Paket ist da."],
        "address": ["Das Paket ging an {} statt an uns.", "Schicken Sie die Unterlagen an {}.", "Postanschrift: {}",
                    "Er ist nach {} umgezogen."],
    },
    "zh_CN": {
        "person": ["今天上午{}把合同寄回来了。", "感谢{}的及时回复！", "姓名：{}", "这份表格由{}签字。",
                   "请{}给前台回个电话。", "{}女士，您的包裹到了。"],
        "address": ["包裹寄到了{}。", "请把材料寄往{}。", "通讯地址：{}", "他去年搬到了{}。"],
    },
}
SEEN["zh_CN"]["person"] += ["昨晚{}赢得了象棋比赛。", "据{}说，货物要晚到。", "参会人员：{}（市场部）。",  # HELD_OUT's, read
                            "很抱歉，{}，该商品已售罄。", "请把这个转交给财务部的{}。", "本报告由{}应要求编写。"]
SEEN["zh_CN"]["address"] += ["请在十天内把表格寄回{}。", "账单地址：{}", "位于{}的仓库五点关门。", "我们的新店在{}，周一开业。"]


# written after SEEN was spent; the detectors were never run on these before the measurement in bench/protect.py
HELD_OUT = {
    "en_US": {
        "person": ["Last night {} won the chess tournament.", "According to {}, the shipment is late.",
                   "Attendees: {} (marketing).", "We are sorry, {}, but the item is out of stock.",
                   "Please forward this to {} in accounting.", "Report prepared by {} on request."],
        "address": ["Return the form to {} within ten days.", "Billing address: {}",
                    "The warehouse at {} closes at five.", "Our new store opens at {} on Monday."],
    },
    "de_DE": {
        "person": ["Letzte Woche hat {} das Turnier gewonnen.", "Laut {} kommt die Lieferung später.",
                   "Teilnehmer: {} (Vertrieb).", "Es tut uns leid, {}, der Artikel ist ausverkauft.",
                   "Bitte leiten Sie das an {} in der Buchhaltung weiter.", "Der Bericht wurde von {} erstellt."],
        "address": ["Senden Sie das Formular an {} zurück.", "Rechnungsadresse: {}",
                    "Das Lager in der {} schließt um fünf.", "Unsere neue Filiale in {} öffnet am Montag."],
    },
}

# Chinese's held-out set since HELD_OUT was read: written before any detector ran on it, measured once at the end
HELD_OUT_2 = {
    "zh_CN": {
        "person": ["记者从市公安局获悉，{}因见义勇为受到表彰。", "据{}介绍，该项目已进入第二阶段。",
                   "申请人姓名：{}  性别：男  年龄：35", "@{} 你明天几点到？", "{}：好的，我马上发给你。",
                   "刚才{}在群里说会议改到三点。", "本次活动由{}主持。", "{}同志任市发展改革委主任。",
                   "经办人：{}，审核人：财务科", "昨天下午，{}和同事一起完成了检修。", "老师好，我是{}的家长。",
                   "快递员打电话找{}，说放在门卫了。", "获奖名单：一等奖{}，二等奖空缺。", "{}教授在会上作了主题报告。",
                   "你帮我问问{}，那份合同签了没有。", "这是{}昨天发来的邮件。", "来访登记：{}，事由：送货。",
                   "{}表示，公司将继续加大研发投入。", "请{}同学到教务处领取证书。", "谢谢{}！辛苦了。",
                   "患者{}，女，42岁，因头痛就诊。", "转账给{}五百元。", "{}在朋友圈发了一张照片。",
                   "会议纪要由{}整理。", "本人{}承诺以上信息真实有效。", "嗯嗯，{}已经到楼下了"],
        "address": ["请寄到{}，{p}收，谢谢。", "收货人：{p}，收货地址：{}", "公司注册地址为{}。",
                    "我家在{}，你到了打我电话。", "发票邮寄地址：{}（请勿寄到前台）", "{p}现居住于{}。",
                    "事发地点位于{}附近。", "新办公室地址是{}，下周一起搬过去。", "请于周五前将样品送至{}。",
                    "原告住所地：{}。", "亲，地址填的是{}，对吗？", "门店地址：{}，营业时间9:00-21:00。"],
    },
}


def _person(fake, locale: str, rng: random.Random) -> tuple[str, int, int]:
    """(value, start, end of the name proper inside it)."""
    if locale == "zh_CN":
        name = fake.last_name() + fake.first_name()
        return name, 0, len(name)
    name = f"{fake.first_name()} {fake.last_name()}"
    roll = rng.random()
    if roll < 0.15:  # with a title (Mr., Dr., Frau, Prof. Dr., ...): the title may stay visible
        prefix = fake.prefix().strip()
        return f"{prefix} {name}", len(prefix) + 1, len(prefix) + 1 + len(name)
    if roll < 0.25:  # with a degree or generation (MD, PhD, Jr., B.Sc., MBA.)
        return f"{name} {fake.suffix().strip()}", 0, len(name)
    return name, 0, len(name)


def _address(fake, locale: str, rng: random.Random) -> str:
    address = fake.address()
    if locale == "zh_CN":
        return address
    return address.replace("\n", rng.choice([", ", ", ", " "]))


def names_corpus(locale: str, per_entity: int = 100, seed: int = 0, templates: str = "held_out"
                 ) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """[(sentence, [(start, end, entity), ...])]: `per_entity` sentences per entity from one template set
    ("tune", "seen" or "held_out": the newest held-out set of the locale, HELD_OUT_2 for zh_CN)."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = []
    chosen = {"tune": TUNE, "seen": SEEN, "held_out": {**HELD_OUT, **HELD_OUT_2}}[templates][locale]
    for entity, options in chosen.items():
        for i in range(per_entity):
            template = options[i % len(options)]
            if entity == "person":
                value, a, b = _person(fake, locale, rng)
            else:
                value = _address(fake, locale, rng)
                a, b = 0, len(value)
            text, truth = "", []
            for k, piece in enumerate(template.replace("{p}", "\0p\0").replace("{}", "\0v\0").split("\0")):
                if k % 2 == 0:
                    text += piece
                elif piece == "v":
                    truth.append((len(text) + a, len(text) + b, entity))
                    text += value
                else:  # a person beside the address
                    other, pa, pb = _person(fake, locale, rng)
                    truth.append((len(text) + pa, len(text) + pb, "person"))
                    text += other
            out.append((text, sorted(truth)))
    return out


def coverage_score(found_by_sentence, corpus) -> dict[str, dict[str, float]]:
    """Per entity: recall (values whose every letter and digit lies in detections of that entity) and precision
    (detections of that entity that lie inside a true value of it, give or take surrounding spaces and punctuation)."""
    hit, total, inside, detections = {}, {}, {}, {}
    for found, (text, truth) in zip(found_by_sentence, corpus):
        for start, end, entity in truth:
            covered = set()
            for f in found:
                if f.entity == entity:
                    covered.update(range(f.start, f.end))
            total[entity] = total.get(entity, 0) + 1
            need = [i for i in range(start, end) if text[i].isalnum()]
            hit[entity] = hit.get(entity, 0) + all(i in covered for i in need)
        for f in found:
            detections[f.entity] = detections.get(f.entity, 0) + 1
            core = [i for i in range(f.start, f.end) if text[i].isalnum()]
            ok = any(e == f.entity and all(s <= i < t for i in core) for s, t, e in truth)
            inside[f.entity] = inside.get(f.entity, 0) + ok
    return {e: {"recall": hit.get(e, 0) / max(1, total.get(e, 0)),
                "precision": inside.get(e, 0) / max(1, detections.get(e, 0)),
                "support": total.get(e, 0), "found": detections.get(e, 0)}
            for e in sorted(set(total) | set(detections))}
