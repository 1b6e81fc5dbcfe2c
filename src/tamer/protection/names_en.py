"""English and German person names and postal addresses (the one module that imports probablepeople and usaddress).

Names: runs of capitalised words (with initials and particles: von, van, de, ...) are taken when a title (Mr., Dr.,
Prof., Herr, Frau, ...) or a cue ("my name is", "Dear", "Name:", "Kontakt:", "Ich heiße", ...) stands before them,
or, with no cue, when the first word is a given name and the last a surname in the US Census name lists that ship
inside probablepeople (its `ratios` table: how often each of 154,000 names is a first name, and its gender table),
and no word of the run is a common capitalised word (days, months, brands of prose: "Great", "Customer", ...).

Addresses: a house number and a capitalised word anchor a window that usaddress (a CRF trained on US addresses)
labels; the run of address labels from the number to the ZIP code is the address. German addresses are a street
word ending in a street suffix (-straße, -weg, -gasse, -allee, -platz, -ring, ...) and a house number, with the
postcode and town after it; US military addresses (PSC / Unit / USS ..., APO / FPO / DPO) are matched whole.
"""
from __future__ import annotations

import re
from functools import lru_cache

Span = tuple[int, int]

_LOWER = "a-zäöüßéèêëáàâãóòôõíìîïúùûçñøåæ'’"
_WORD = rf"[A-ZÄÖÜÉÅØ][{_LOWER}]{{1,24}}(?:-[A-ZÄÖÜ][{_LOWER}]{{1,24}}){{0,2}}"
_PARTICLE = r"(?:von der|von den|van der|van den|von|van|de|zu|di|da|del|la|le|ten|ter|du|dos)"  # not articles: "den Vertrag"
# up to four capitalised words or initials, not glued to a word before or after (bounded: constant work per start)
_RUN = re.compile(rf"(?<![\w.'’-])(?:{_WORD}|[A-Z]\.)(?:\s(?:{_PARTICLE}\s){{0,2}}(?:{_WORD}|[A-Z]\.)){{0,3}}"
                  rf"(?:\s(?:II|III|IV|Jr\.|Sr\.))?(?![\w'’-])")
_TOKEN = re.compile(rf"{_WORD}|[A-Z]\.|\b(?:II|III|IV|Jr\.|Sr\.)")
_TITLE_BEFORE = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Dame|Herr|Herrn|Frau|Hr|Fr|Fräulein|Dipl\.-Ing|"
                           r"Mag|Rev|Fr)\.?(?:\s(?:Dr|Prof)\.?)?\s)$")
_CUE_BEFORE = re.compile(r"(?:\b(?:[Mm]y name is|[Nn]ame is|[Nn]ame|NAME|[Cc]ontact(?: person)?|[Dd]ear|[Ss]igned|[Aa]ttn|"
                         r"[Aa]ttention|[Rr]egards|[Ss]incerely|[Cc]heers|c/o|[Kk]ontakt(?:person)?|[Aa]nsprechpartner(?:in)?|"
                         r"[Ii]ch heiße|[Mm]ein Name ist|[Ii]ch bin|[Ll]iebe|[Ll]ieber|[Hh]allo|[Gg]rüße|[Gg]ruß|[Ii]nhaber(?:in)?|"
                         r"[Ee]mpfänger(?:in)?|[Rr]ecipient|[Cc]ustomer|[Kk]und(?:e|in)|[Pp]atient(?:in)?|[Aa]uthor|[Aa]utor(?:in)?|"
                         r"[Vv]on|[Ff]rom|[Tt]o|[Aa]n|[Bb]y|[Ww]ith|[Mm]it|[Aa]sk|[Ff]rag(?:en Sie)?|[Cc]all|[Mm]eet|[Tt]hanks|"
                         r"[Tt]hank you|[Dd]anke|[Ii]'m|I am|[Tt]his is|[Hh]i|[Hh]ello)[,:]?\s|[,:;(]\s?)$")
_STRONG_CUES = re.compile(r"(?:[Nn]ame|NAME|[Cc]ontact(?: person)?:|[Dd]ear|[Ss]igned|[Aa]ttn|[Rr]egards|[Ss]incerely|c/o|[Kk]ontakt|"
                          r"[Aa]nsprechpartner|heiße|Name ist|[Ll]iebe|[Gg]rü|[Gg]ruß|[Ee]mpfänger|[Rr]ecipient)")
COMMON = set("""A An The This That These Those There Then Than They Them Their We Our You Your He His She Her It Its I My Me
And But Or If So As At In On Of For To From By With Without Not No Yes Very Just Only Also Even Still All Any Some
Every Each One Two Three First Last Next New Old Good Great Best Better Bad Worst Nice Fine Excellent Awesome Amazing
Terrible Horrible Poor Love Like Hate Thanks Thank Please Hi Hello Dear Sir Madam Well Oh Wow Ok Okay Overall Highly
Definitely Absolutely Really Pretty Quite Too Much More Most Less Least Never Always Again Here Where When What Why
How Who Which While After Before Because Since Until Phone Service Food Place Customer Product Price Quality Battery
Headset Case Staff Server Waiter Waitress Restaurant Hotel Company Bank University Hospital School Street Avenue
Road Lane Drive Court Boulevard Inc Ltd Corp LLC GmbH AG Co Group Team Store Shop Market Center Centre Park Hall
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August
September October November December Christmas Easter God Jesus Lord Mother Father Mom Dad Sister Brother Mr Mrs Ms
Dr Prof Herr Frau Bitte Danke Gestern Heute Morgen Der Die Das Ein Eine Und Oder Aber Mit Von Bei Nach Für Ich Wir
Sie Er Es Ihr Mein Meine Unser Kunde Kundin Firma Straße Stadt Herrn Liebe Lieber Hallo Grüße Gruß Name Kontakt
Telefon Adresse Rechnung Termin Frage Antwort Will Can Could Would Should Must Might Shall Do Does Did Is Are Was
Were Be Been Have Has Had Get Got Go Went Come Came See Saw Make Made Take Took Give Gave Buy Bought Try Tried Use
Used Work Works Worked Call Called Order Ordered Ask Asked Meet Send Sent""".split())
FUNCTION = set("""The This That These Those There Then They Their We Our You Your He His She Her It Its I My Me And But
Or If So As At In On Of For To From By With Not No Yes Thanks Thank Please Hi Hello Dear Well Oh Der Die Das Ein
Eine Und Oder Aber Mit Von Bei Nach Für Ich Wir Sie Er Es Ihr Bitte Danke Hallo Vielen Dank Liebe Lieber""".split())
_GERMAN_NOUN = re.compile(r"(?:ung|heit|keit|schaft|tion|tät|nis|ment|chen|lein|ismus|ik|sche|ische|lichen|ische[nr])$")
_DE_WORDS = re.compile(r"\b(?:der|die|das|und|ist|nicht|mit|ich|sie|hat|haben|bitte|wird|ein|eine|den|dem|zu|von|für|"
                       r"auf|bei|wir|auch|sich|Sie|Ihr|Ihre|Herr|Frau|vielen|Dank|nach|an|am|im)\b")
_EN_WORDS = re.compile(r"\b(?:the|and|is|not|with|to|of|was|for|it|this|that|have|has|my|you|a|an|in|on|at|but)\b")
TITLE_WORDS = {"Herr", "Herrn", "Frau", "Fräulein", "Sir", "Madam", "Dame", "Mister", "Miss", "Mrs", "Mr", "Ms", "Dr",
               "Prof", "Professor", "Doktor", "Doctor", "Lady", "Lord"}
PLACES = set("""Bridge Tower Building Museum Airport Station School College University Hospital Hotel Restaurant Cafe
Café Grill Steakhouse Pizza Pizzeria Kitchen Bakery Bay Beach Valley Canyon Island Mountain Stadium Arena Theater
Theatre Street Avenue Road Boulevard Square Plaza Mall Center Centre Gate Falls Coffee Burger Sushi Chicken Taco Tacos
Pho Casino Magazine Shop Store Market Bar Pub Inn Lodge Diner Deli Bistro Lounge Club Church Cathedral Temple Zoo
Gallery Library Institute Airlines Motors Systems Labs Foods""".split())
_LEGAL_END = re.compile(r"\s(?:Inc|Ltd|LLC|Corp|GmbH|AG|KG|Co|Company|Group|Bank|University|Hospital|Hotel)\b")


def _lists():
    from probablepeople.gender import gender_names
    from probablepeople.ratios import ratios

    return ratios, gender_names


_NAMES: list = []


def _name_lists():
    """(census name -> share of uses as a first name, first name -> share female), loaded once."""
    if not _NAMES:
        _NAMES.append(_lists())
    return _NAMES[0]


def _ratios():
    return _name_lists()[0]


def _given(word: str) -> bool:
    """A first name in the census lists (ratio of first-name uses >= 0.3, or a gendered first name not also a
    surname)."""
    ratios, gender = _name_lists()
    key = word.replace("’", "'").split("-")[0]
    r = ratios.get(key.upper())
    return (r is not None and r >= 0.3) or key.lower() in gender


def _surname(word: str) -> bool:
    ratios = _ratios()
    return all(p.upper() in ratios for p in word.replace("’", "'").split("-"))


def _looks_german(text: str) -> bool:
    return len(_DE_WORDS.findall(text)) > len(_EN_WORDS.findall(text))


def persons(text: str, de: bool = False) -> list[Span]:
    """Spans of person names in English (and, with `de`, German) text."""
    out: list[Span] = []
    german = None
    for m in _RUN.finditer(text):
        tokens = list(_TOKEN.finditer(m.group()))
        for k, t in enumerate(tokens):  # Gordon Ramsey's Steak -> Gordon Ramsey
            if t.group().endswith(("'s", "’s")):
                tokens = tokens[:k + 1]
                break
        while tokens and tokens[-1].group() in FUNCTION:
            tokens.pop()
        if tokens and len(tokens[-1].group()) <= 5 and tokens[-1].end() == len(m.group()) \
                and re.match(r"\.-?\s?[A-Z]", text[m.end():m.end() + 3]):
            tokens.pop()  # an abbreviated title (Mx., Prof., Dipl.-Ing., Univ.Prof.), not a name
        if not tokens:
            continue
        start = m.start()
        before = text[max(0, start - 40):start]
        titled = 0
        while titled < len(tokens) - 1 and tokens[titled].group() in TITLE_WORDS:
            titled += 1
        if titled or _TITLE_BEFORE.search(before):
            if tokens[-1].group() not in TITLE_WORDS:
                out.append(_name_span(start, tokens[titled], tokens[-1]))
            continue
        lead = 0  # words before the name: a capitalised cue (Hallo, Dear), or the first word of a sentence
        while lead < len(tokens) and tokens[lead].group() in COMMON:
            lead += 1
        sentence_start = re.search(r"(?:^|[.!?:]\s{1,3})$", before) is not None
        if lead == 0 and len(tokens) >= 3 and not _given(tokens[0].group()) and (
                sentence_start or m.group()[tokens[0].end():tokens[1].start()].strip()):
            lead = 1  # its capital says nothing: Yesterday / Could / Kann + a name; nor a noun before "von": Brief von
        names = tokens[lead:]
        cue = _CUE_BEFORE.search(text[max(0, start - 40):start + (names[0].start() if names else 0)])
        if names and cue is not None and _STRONG_CUES.search(cue.group()):
            out.append(_name_span(start, names[0], names[-1]))
            continue
        while names and names[-1].group() in COMMON:  # "Anna Weber Thanks", "Joe said Monday"
            names.pop()
        if len(names) < 2 or _LEGAL_END.match(text, m.end()) or names[-1].group() in PLACES \
                or len(names) > 2 and names[-1].group().upper() in _USPS:
            continue  # the Golden Gate Bridge, Heart Attack Grill: a place or a business, not a person
        first, last = names[0].group(), names[-1].group()
        if first.endswith(".") and len(first) == 2:  # J. Smith
            ok = _surname(last) and cue is not None
        elif _given(first):
            ok = not last.endswith(".") or len(names) > 2
        else:  # a first name the census lists lack (Birgid, Zeki): German text, inside a sentence, name-shaped
            if de and german is None:
                german = _looks_german(text)
            ok = (de and german and not (sentence_start and lead == 0) and len(names) <= 3 and not first.endswith(".")
                  and not any(_GERMAN_NOUN.search(t.group()) for t in names[:-1]))
        if ok:
            out.append(_name_span(start, names[0], names[-1]))
    return out


def _name_span(start: int, first, last) -> Span:
    end = last.end() - (2 if last.group().endswith(("'s", "’s")) else 0)
    return start + first.start(), start + end


# --- addresses ---
_US_ANCHOR = re.compile(r"(?<![\w.,/#-])\d{1,6}[A-Za-z]?\s(?:[NSEW]\.?\s)?(?:\d{1,3}(?:st|nd|rd|th)\s|[A-Z][A-Za-z'.-]{1,30}\s)")
_US_LABELS = {"AddressNumber", "AddressNumberPrefix", "AddressNumberSuffix", "StreetNamePreDirectional",
              "StreetNamePreModifier", "StreetNamePreType", "StreetName", "StreetNamePostType",
              "StreetNamePostDirectional", "StreetNamePostModifier", "OccupancyType", "OccupancyIdentifier",
              "SubaddressType", "SubaddressIdentifier", "BuildingName", "PlaceName", "StateName", "ZipCode",
              "LandmarkName", "CornerOf", "IntersectionSeparator"}
_STATES = set("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH "
              "OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI".split())
_MILITARY = re.compile(r"(?<![\w-])(?:(?:PSC|Unit|CMR)\s\d{1,5},?\s(?:Box\s\d{1,5})|(?:USNS|USS|USNV|USCGC)\s"
                       r"[A-Z][a-z]{1,20})(?:,\s?|\s)(?:APO|FPO|DPO)\s(?:AA|AE|AP)\s\d{5}(?:-\d{4})?(?!\d)")
_ADDRESS_TOKEN = re.compile(r"[^\s,;]+")
_ADDRESS_WORD = re.compile(r"[A-Z0-9#][\w'#/-]*\.?")  # capitalised or a number, no exclamation: "Curve!" is prose
_DE_SUFFIXES = ("straße", "strasse", "str.", "weg", "gasse", "allee", "platz", "ring", "damm", "ufer", "chaussee",
                "steig", "stieg", "pfad", "markt", "graben", "promenade", "kamp", "wall", "anger", "zeile", "gürtel",
                "kai", "tor", "brücke", "hof", "berg", "feld", "garten", "park", "au", "aue", "höhe", "winkel",
                "siedlung", "stiege", "lände", "plan", "bogen", "grund", "breite", "wiese", "heide", "busch")
_DE_GENERIC = {"Straße", "Strasse", "Str.", "Weg", "Gasse", "Allee", "Platz", "Ring", "Damm", "Ufer", "Chaussee",
               "Steig", "Pfad", "Markt", "Graben", "Promenade", "Kamp", "Wall", "Tor", "Brücke", "Hof", "Berg"}
_DE_STREET = re.compile(r"(?<![\w.-])(?:(?:Am|Im|An der|An den|Auf der|Auf dem|In der|Zum|Zur|Unter den|Hinter der|"
                        r"Alte|Alter|Neue|Neuer|Große|Kleine)\s)?([A-ZÄÖÜ][\w'’.-]{1,60})\s(\d{1,4}\s?[a-zA-Z]?"
                        r"(?:\s?[-/]\s?\d{1,4}[a-zA-Z]?)?)(?![\w-])")
_DE_ADJ = re.compile(r"(?<![\w-])[A-ZÄÖÜ][\w-]{1,40}(?:er|e|en)\s$")
_DE_TOWN = re.compile(r",?\s{1,3}(?:D-)?\d{5}\s[A-ZÄÖÜ][\w.-]{1,40}(?:\s(?:am|an der|an den|im|in der|in|bei|ob der|vor der|"
                      r"vorm|vor dem|auf|unter|ob)\s[A-ZÄÖÜ][\w.-]{1,40}|\s\([\w\s.]{1,30}\)|/\s?[A-ZÄÖÜ][\w.-]{1,40})?")
_TOWN_TWO = re.compile(r"\s[A-ZÄÖÜ][\w.-]{1,40}")


# USPS Publication 28, appendix C1: street suffixes, written out and abbreviated
_USPS = set("""ALLEY ALY ANNEX ANX ARCADE ARC AVENUE AVE AV BAYOU BYU BEACH BCH BEND BND BLUFF BLUFFS BLF BOTTOM BTM
BOULEVARD BLVD BRANCH BR BRIDGE BRG BROOK BROOKS BRK BURG BURGS BG BYPASS BYP CAMP CP CANYON CYN CAPE CPE CAUSEWAY CSWY
CENTER CENTERS CTR CIRCLE CIRCLES CIR CLIFF CLIFFS CLF CLUB CLB COMMON COMMONS CMN CORNER CORNERS COR COURSE CRSE COURT
COURTS CT CTS COVE COVES CV CREEK CRK CRESCENT CRES CREST CRST CROSSING XING CROSSROAD CROSSROADS XRD CURVE CURV DALE DL
DAM DM DIVIDE DV DRIVE DRIVES DR DRS ESTATE ESTATES EST ESTS EXPRESSWAY EXPY EXTENSION EXTENSIONS EXT FALL FALLS FLS
FERRY FRY FIELD FIELDS FLD FLDS FLAT FLATS FLT FORD FORDS FRD FOREST FRST FORGE FORGES FRG FORK FORKS FRK FORT FT
FREEWAY FWY GARDEN GARDENS GDN GDNS GATEWAY GTWY GLEN GLENS GLN GREEN GREENS GRN GROVE GROVES GRV HARBOR HARBORS HBR
HAVEN HVN HEIGHTS HTS HIGHWAY HWY HILL HILLS HL HLS HOLLOW HOLW INLET INLT ISLAND ISLANDS IS ISS ISLE JUNCTION JUNCTIONS
JCT JCTS KEY KEYS KY KNOLL KNOLLS KNL LAKE LAKES LK LKS LAND LANDING LNDG LANE LN LIGHT LIGHTS LGT LOAF LF LOCK LOCKS
LCK LCKS LODGE LDG LOOP MALL MANOR MANORS MNR MEADOW MEADOWS MDW MDWS MEWS MILL MILLS ML MLS MISSION MSN MOTORWAY MTWY
MOUNT MT MOUNTAIN MOUNTAINS MTN NECK NCK ORCHARD ORCH OVAL OVERPASS OPAS PARK PARKS PARKWAY PARKWAYS PKWY PASS PASSAGE
PSGE PATH PIKE PINE PINES PNE PLACE PL PLAIN PLAINS PLN PLAZA PLZ POINT POINTS PT PTS PORT PORTS PRT PRAIRIE PR RADIAL
RADL RAMP RANCH RNCH RAPID RAPIDS RPD REST RST RIDGE RIDGES RDG RIVER RIV ROAD ROADS RD RDS ROUTE RTE ROW RUE RUN SHOAL
SHOALS SHL SHORE SHORES SHR SKYWAY SKWY SPRING SPRINGS SPG SPUR SPURS SQUARE SQUARES SQ STATION STA STRAVENUE STRA
STREAM STRM STREET STREETS ST STS SUMMIT SMT TERRACE TER THROUGHWAY TRWY TRACE TRCE TRACK TRAK TRAFFICWAY TRFY TRAIL
TRAILS TRL TRAILER TRLR TUNNEL TUNL TURNPIKE TPKE UNDERPASS UPAS UNION UNIONS UN VALLEY VALLEYS VLY VIADUCT VIA VIEW
VIEWS VW VILLAGE VILLAGES VLG VILLE VL VISTA VIS WALK WALKS WALL WAY WAYS WY WELL WELLS WL APT SUITE STE UNIT""".split())
_STATE_ZIP = re.compile(r"\b[A-Z]{2},?\s\d{5}(?:-\d{4})?(?![\w-])")
_TOWN_STATE_ZIP = re.compile(r"(?:,?\s[A-Z][A-Za-z.'-]{1,30}){0,3},?\s[A-Z]{2},?\s\d{5}(?:-\d{4})?(?![\w-])")
# a US address written out in full, from the house number over a USPS street suffix (and an Apt / Suite) to the town,
# a state code and a ZIP code: it needs no CRF to say where it starts and ends (the CRF reads the rest)
_US_FULL = re.compile(r"\d{1,6}[A-Za-z]?\s(?:[NSEW]\.?\s)?(?:[A-Z][A-Za-z'.-]{1,30}\s){1,3}([A-Z][a-z]{1,15})\.?"
                      r"(?:\s(?:[NSEW]|NE|NW|SE|SW))?(?:,?\s(?:Apt\.?|Suite|Ste\.?|Unit|#)\s?[A-Za-z0-9-]{1,6})?"
                      r",?\s(?:[A-Z][A-Za-z'.-]{1,30}\s){0,2}[A-Z][A-Za-z'.-]{1,30},?\s([A-Z]{2}),?\s\d{5}(?:-\d{4})?(?![\w-])")
_CRF_EVERY = 128  # at most one usaddress call per this many characters of a line (and 8 more): bounded work


def _worth_parsing(text: str, start: int) -> int:
    """0 if nothing after the house number looks like a street (a USPS suffix within six words, or a state and ZIP
    code within 100 characters); else the end of the first suffix word found (the fallback span's end)."""
    for k, t in enumerate(_ADDRESS_TOKEN.finditer(text, start, min(len(text), start + 100))):
        if k > 6:
            break
        if k and t.group().rstrip(".,").upper() in _USPS and t.group()[0].isupper():
            return t.start() + len(t.group().rstrip(".,"))
    zip_code = _STATE_ZIP.search(text, start, min(len(text), start + 100))
    return zip_code.end() if zip_code else 0


def addresses(text: str, de: bool = False) -> list[Span]:
    """Spans of US (and, with `de`, German) postal addresses in `text`."""
    out: list[Span] = [m.span() for m in _MILITARY.finditer(text)]
    last, budget = 0, 8 + len(text) // _CRF_EVERY
    for m in _US_ANCHOR.finditer(text):
        if m.start() < last:
            continue
        full = _US_FULL.match(text, m.start())
        if full and full.group(1).upper() in _USPS and full.group(2) in _STATES:
            out.append(full.span())
            last = full.end()
            continue
        end = _worth_parsing(text, m.start())
        if not end:
            continue
        if budget > 0:  # the CRF decides; past the budget (a line made of addresses) the anchor's span is taken
            budget -= 1
            span = _us_address(text, m.start())
        else:
            tail = _TOWN_STATE_ZIP.match(text, end)
            span = (m.start(), tail.end() if tail else end)
        if span:
            out.append(span)
            last = span[1]
    if de:
        out += _de_addresses(text)
    return out


@lru_cache(maxsize=4096)
def _labels(window: str) -> tuple[str, ...]:
    import usaddress

    try:
        return tuple(label for _, label in usaddress.parse(window))
    except Exception:  # usaddress raises on some inputs it cannot tokenise; no address then
        return ()


def _us_address(text: str, start: int) -> Span | None:
    window = text[start:start + 120]
    tokens = [(t.start(), t.end()) for t in _ADDRESS_TOKEN.finditer(window)]
    labels = _labels(window)
    if len(labels) != len(tokens) or not labels or labels[0] != "AddressNumber":
        return None
    end, seen = 0, set()
    for (a, b), label in zip(tokens, labels):
        if label not in _US_LABELS or label == "AddressNumber" and end or not _ADDRESS_WORD.fullmatch(window[a:b]):
            break
        seen.add(label)
        end = b
        if label == "ZipCode":
            break
    if "StreetName" not in seen or not ({"StreetNamePostType", "OccupancyType"} & seen or
                                        "ZipCode" in seen and "StateName" in seen):
        return None
    value = window[:end].rstrip(",.;:")
    if "StateName" in seen and "ZipCode" not in seen:  # the ZIP code the CRF gave to the prose after it
        zip_code = re.match(r",?\s\d{5}(?:-\d{4})?(?![\w-])", window[len(value):])
        if zip_code:
            value += zip_code.group()
            seen.add("ZipCode")
    if "ZipCode" in seen and not re.search(r"\b\d{5}(?:-\d{4})?$", value):
        return None
    if "StateName" in seen and "ZipCode" not in seen and value.split()[-1].strip(".") not in _STATES:
        value = value.rsplit(",", 1)[0] if "," in value else value
    return start, start + len(value)


def _de_addresses(text: str) -> list[Span]:
    out: list[Span] = []
    for m in _DE_STREET.finditer(text):
        street = m.group(1)
        prefixed = m.start(1) > m.start()
        if not (prefixed or street.lower().endswith(_DE_SUFFIXES) and street.lower() not in _DE_SUFFIXES
                or street in _DE_GENERIC):
            continue
        start = m.start()
        if "-" in street and not prefixed:  # Hans Peter-Seidel-Platz: a street named for a person, first name before
            first = re.search(r"(?<![\w-])[A-ZÄÖÜ][a-zäöüß]{1,20}\s$", text[max(0, start - 22):start])
            if first and first.group().strip() not in COMMON:
                start -= len(first.group())
        if street in _DE_GENERIC and not prefixed:  # Berliner Straße 5: the name is the word before
            adj = _DE_ADJ.search(text, max(0, m.start() - 42), m.start())
            if not adj:
                continue
            start = adj.start()
        end = m.end()
        town = _DE_TOWN.match(text, end)
        if town:
            end = town.end()
            two = _TOWN_TWO.match(text, end)  # Königs Wusterhausen, Bad Kissingen; not "Berlin Bitte"
            if two and two.group().strip() not in COMMON and not re.search(r"\s[a-z]|\(|/", town.group()):
                end = two.end()
        while text[end - 1] in ".,":
            end -= 1
        out.append((start, end))
    return out
