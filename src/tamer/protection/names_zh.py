"""Chinese person names and postal addresses, found on jieba's segmentation (the one module that imports jieba).

jieba's part-of-speech tagger (posseg) runs at a few hundred lines per second, so it is not run: the line is cut
with jieba's dictionary and HMM (several times faster), each word's tag is looked up in posseg's dictionary table,
and a word the dictionary does not hold (an HMM new word, which is how most given names appear) counts as unknown.
Names are then a surname from the list below plus a given name, taken where jieba marks a name, where a cue
(联系人, 收件人, 姓名, 我叫, ...) or a title (先生, 女士, 老师, 经理, ...) says so, or where an unknown word starts with a
surname; addresses are runs of administrative-division words (省 / 市 / 区 / 县 / 镇 / 街道 / 路 / 街 / 号 / 栋 / 单元 /
室), extended from the province to the house number and a postcode. Only clauses holding a surname, a cue or an
address character are cut, and cut clauses are cached.

jieba is initialised once, quietly (its logger is turned down), and writes its dictionary cache only into tamer's
own cache folder (XDG_CACHE_HOME/tamer/jieba, created owner-only), never into the working directory.
"""
from __future__ import annotations

import math
import os
import re
import threading
from functools import lru_cache
from pathlib import Path

Span = tuple[int, int]

# the common surnames (about 99% of people in China by the 2020 census), single and compound
SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    "钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊"
    "葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆"
    "蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂"
    "全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩佘池查麻苑迟邝封谈匡鞠惠荆乐冀郁胥班储栗燕楚鄢劳谌"
    "奚皮粟冼蔺楼闻厉伊仝郜阚权帅屠朴练廉禹井祖漆巴丰支卿狄计索宣晋初扈晁芮普阙浦戈伏鹿薄邸雍辜羊乌母裘亓修邰赫"
    "阎赖邝巫杭况宿鲜印逯隆茹诸慕危亢嵇湛宾戎勾茅揭尉冶斯束檀阴昝智奉植衡富尧萧洪战居盖敬")
# characters that are surnames but far more often ordinary words: taken as a surname only beside a cue or a title
CUED_SURNAMES = set("官明和时平国海花云相位门强原来信利都文万成向安")
COMPOUND_SURNAMES = {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
                     "令狐", "夏侯", "轩辕", "端木", "独孤", "南宫", "西门", "呼延", "澹台", "申屠", "钟离", "闻人"}
TITLES = ("先生", "女士", "小姐", "老师", "经理", "同学", "医生", "大夫", "教授", "律师", "主任", "总监", "师傅",
          "阿姨", "老板", "校长", "院长", "处长", "科长", "局长", "董事长", "总经理", "博士")
CUES = {"联系人", "收件人", "收货人", "寄件人", "发件人", "姓名", "名字", "我叫", "叫", "客户", "负责人", "经办人",
        "申请人", "患者", "病人", "签名", "签字", "户主", "持卡人", "户名", "联络人", "收款人", "付款人", "法人", "代表",
        "委托人", "租客", "房东", "业主", "员工", "乘客", "旅客", "用户", "作者", "记者", "编辑"}
WEAK_CUES = {"我是", "是", "和", "与", "跟", "给", "找", "问", "请", "由", "向", "同", "及", "、"}
ADDRESS_CUES = {"地址", "住址", "住在", "寄到", "寄往", "送到", "送往", "位于", "地点", "收货地址", "家住", "居住", "户籍"}
PROVINCES = ("北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
             "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾",
             "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门")
_PROVINCE = re.compile(f"(?:{'|'.join(PROVINCES)})(?:省|市|(?:壮族|回族|维吾尔)?自治区|特别行政区)?")
_ADMIN = ("省", "自治区", "特别行政区", "自治州", "市", "区", "县", "州", "旗", "盟", "镇", "乡", "村", "街道", "新区",
          "开发区", "地区")
_STREET = ("路", "街", "大道", "大街", "巷", "弄", "胡同", "道", "里", "环", "公路")
_BUILDING = ("大厦", "大楼", "中心", "广场", "花园", "小区", "公寓", "苑", "城", "园", "村", "庄", "院", "楼", "座",
             "栋", "幢", "里")
_UNIT = ("号", "号楼", "号院", "栋", "幢", "座", "单元", "室", "楼", "层", "户", "号房", "房")
_FUNCTION_TAGS = {"v", "vd", "vn", "p", "c", "u", "uj", "ul", "uz", "ug", "uv", "ud", "r", "d", "m", "q", "f", "x",
                  "y", "e", "o", "zg", "vg", "dg", "rr", "rz", "mq", "l", "i", "t", "tg", "s", "ad", "an", "ag", "b"}
_PUNCT = re.compile(r"[\s,，。.;；:：!！?？、()（）\"“”'‘’\[\]【】<>《》/|]")
_CLAUSE = re.compile(r"[^。！？!?；;\n]+")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_ALNUM = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,6})?")
# a clause is cut only if it holds one of these (a surname, an address character, a cue's first character)
_GATE = re.compile("[" + "".join(sorted(SURNAMES | {s[0] for s in COMPOUND_SURNAMES} | set("省市区县镇乡路街巷号栋室")
                                        | {c[0] for c in CUES | ADDRESS_CUES})) + "]")
_NAME_START = frozenset(SURNAMES | CUED_SURNAMES | {s[0] for s in COMPOUND_SURNAMES})
_POSTCODE = re.compile(r"\s?\d{6}(?!\d)")
_lock = threading.Lock()
_state: dict = {}


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "tamer" / "jieba"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _jieba():
    """(tokenize, word -> tag, word -> frequency), jieba initialised once and silently."""
    if "tokenize" not in _state:
        with _lock:
            if "tokenize" not in _state:
                import logging

                import jieba
                import jieba.posseg

                jieba.setLogLevel(logging.ERROR)
                logging.getLogger("jieba").setLevel(logging.ERROR)
                jieba.dt.tmp_dir = str(_cache_dir())
                jieba.dt.initialize()
                import jieba.finalseg

                _state.update(tags=jieba.posseg.dt.word_tag_tab, freq=jieba.dt.FREQ, tokenize=jieba.dt.tokenize,
                              hmm=jieba.finalseg.cut, logtotal=math.log(jieba.dt.total))
    return _state["tokenize"], _state["tags"], _state["freq"]


_BLOCK = re.compile(r"([\u4E00-\u9FD5a-zA-Z0-9+#&._%\-]+)")  # the blocks jieba cuts (its re_han_default)
_SKIP = re.compile(r"(\r\n|\s)")
_LOGP: dict[str, float] = {}  # word -> log probability in jieba's dictionary, computed once per word


def _route(block: str, freq: dict, logtotal: float) -> list[int]:
    """For each start, the end of the word on the most probable path through jieba's dictionary (the maximum of
    jieba's own get_DAG + calc, in one backward pass with the logarithms cached: the same cut, in less time)."""
    n = len(block)
    best, end = [0.0] * (n + 1), [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        top, arg, i, frag = None, k, k, block[k]
        while i < n and frag in freq:
            if freq[frag]:
                lp = _LOGP.get(frag)
                if lp is None:
                    lp = _LOGP[frag] = math.log(freq[frag]) - logtotal
                v = lp + best[i + 1]
                if top is None or v >= top:  # ties go to the longer word, as in jieba
                    top, arg = v, i
            i += 1
            frag = block[k:i + 1]
        if top is None:  # no dictionary word starts here: the character alone, at jieba's count of 1
            top = -logtotal + best[k + 1]
        best[k], end[k] = top, arg + 1
    return end


def tokenize(clause: str):
    """(word, start) exactly as jieba.dt.tokenize(clause, HMM=True) gives them: jieba's blocks, the most probable
    dictionary path, and jieba's HMM (finalseg) on each run of single characters the dictionary does not hold."""
    _jieba()
    freq, hmm, logtotal = _state["freq"], _state["hmm"], _state["logtotal"]
    pos = 0
    for block in _BLOCK.split(clause):
        if block and not _BLOCK.fullmatch(block):
            for w in (w for part in _SKIP.split(block) for w in ([part] if _SKIP.fullmatch(part) else part)):
                yield w, pos
                pos += len(w)
        if not block or not _BLOCK.fullmatch(block):
            continue
        end, x, n, buf = _route(block, freq, logtotal), 0, len(block), ""
        while x <= n:
            y = end[x] if x < n else n + 1
            if y - x == 1 and x < n:
                buf += block[x]
                x = y
                continue
            for w in (buf if len(buf) == 1 or buf and freq.get(buf) else hmm(buf) if buf else ()):
                yield w, pos
                pos += len(w)
            buf = ""
            if x < n:
                yield block[x:y], pos
                pos += y - x
            x = y


def segment(clause: str) -> tuple[tuple[str, str, int], ...]:
    """(word, tag, start) for each word of `clause`; tag '?' for a word jieba's dictionary does not hold.
    Clauses of a usual length are cached (the person and the address finder read the same cut); a clause longer
    than any sentence (a line with no full stop) is cut without the HMM, which halves jieba's time there."""
    if len(clause) <= _LONG:
        return _segment_cached(clause)
    if _state.get("long", (None,))[0] != clause:
        _state["long"] = (clause, _segment(clause, hmm=False))
    return _state["long"][1]


def _segment(clause: str, hmm: bool = True) -> tuple[tuple[str, str, int], ...]:
    jieba_tokenize, tags, freq = _jieba()
    words = tokenize(clause) if hmm else ((w, a) for w, a, _ in jieba_tokenize(clause, HMM=False))
    return tuple((w, tags.get(w, "?") if freq.get(w) else "?", a) for w, a in words)


_LONG = 512
_segment_cached = lru_cache(maxsize=16384)(_segment)


def _surname_len(word: str, cued: bool = False) -> int:
    if word[:2] in COMPOUND_SURNAMES:
        return 2
    return 1 if word[:1] in SURNAMES or cued and word[:1] in CUED_SURNAMES else 0


def _rare(word: str) -> bool:
    """A dictionary word jieba has seen seldom: its nr tag names someone (王小明) rather than a word it also tags nr
    (黄金周, 张家界, 李子 are nr in jieba's dictionary too, and far more frequent)."""
    return _jieba()[2].get(word, 0) <= _RARE


_RARE = 50


def _is_han(word: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in word)


def _given_like(word: str, tag: str) -> bool:
    """Could `word` be a given name (one or two characters that are not a function word)?"""
    return 1 <= len(word) <= 2 and _is_han(word) and tag not in _FUNCTION_TAGS and word not in TITLES


def _title_prefix(word: str) -> int:
    """Length of the name in a word written as name + title (王先生, 李小红女士), or 0."""
    if len(word) < 3 or not word.endswith(TITLES):
        return 0
    for title in TITLES:
        if word.endswith(title) and len(word) > len(title):
            name = word[: -len(title)]
            if len(name) <= 3 and _surname_len(name) and _is_han(name):
                return len(name)
    return 0


def persons(text: str) -> list[Span]:
    """Spans of Chinese person names in `text`."""
    out: list[Span] = []
    for clause in _CLAUSE.finditer(text):
        if _HAN.search(clause.group()) and _GATE.search(clause.group()):
            base = clause.start()
            out += [(base + a, base + b) for a, b in _persons_in(segment(clause.group()))]
    return out


_GLUED = set("由请让被把给向跟和与叫对替帮找问将据")  # a one-character word jieba's HMM may glue to a name after it
# a one-character word the HMM may glue to a name before it (据张伟说, 由石晶应要求, 王芳等人); the short set may also
# end a two-character new word (向萍说), the long one only a word longer than any name (邓秀兰应)
_TAIL_SHORT = set("说把被的将")
_TAIL = _TAIL_SHORT | set("应等在和与是为也都就已又还从向跟给对讲称")
# words that take a person after them, for a two-character name jieba's dictionary holds (由金平签字, 感谢王平的)
_TAKERS = {"由", "感谢", "谢谢", "转告", "通知", "联系", "找", "问", "跟", "和", "与", "同", "叫", "让", "据", "交给",
           "转交", "嘱咐", "委托", "邀请", "拜访", "采访"}


def _unglued(words):
    """由莫冬梅 -> 由 / 莫冬梅, 请周 -> 请 / 周: a preposition or verb the HMM joined to the surname that follows it;
    邓秀兰应 -> 邓秀兰 / 应, 王磊应 / 要求 -> 王磊 / 应 (a verb follows), 张兰 / 英应 -> 张兰英 / 应, 徐海 / 燕说 -> 徐海燕 / 说: a function word or verb joined to the
    name before it."""
    out = []
    for k, (word, tag, start) in enumerate(words):
        if len(word) >= 2 and word[0] in _GLUED and tag in ("?", "nr") and _surname_len(word[1:]) and _is_han(word):
            out.append((word[0], "p", start))
            word, tag, start = word[1:], "?" if len(word) > 2 else "nr", start + 1
        prev = out[-1] if out else None
        sl = _surname_len(word)
        if sl and tag == "?" and _is_han(word) and (len(word) > sl + 2 and len(word) <= sl + 3 and word[-1] in _TAIL
                                                    or len(word) == sl + 2 and (word[-1] in _TAIL_SHORT or word[-1] in _TAIL
                                                        and k + 1 < len(words) and words[k + 1][1] in ("v", "vn", "p", "d"))):
            out += [(word[:-1], "?", start), (word[-1], "v", start + len(word) - 1)]
        elif prev and tag == "?" and len(word) == 2 and word[1] in _TAIL and _is_han(word) and prev[1] in ("?", "ns", "nr") \
                and len(prev[0]) == _surname_len(prev[0]) + 1 and _is_han(prev[0]):
            out[-1] = (prev[0] + word[0], "?", prev[2])
            out.append((word[1], "v", start + 1))
        else:
            out.append((word, tag, start))
    return out


def _persons_in(words) -> list[Span]:
    words = _unglued(words)
    out: list[Span] = []
    n, i = len(words), 0
    while i < n:
        word, tag, start = words[i]
        if word[0] not in _NAME_START:  # every name below starts with a surname: most words are skipped here
            i += 1
            continue
        prev = words[i - 1][0] if i else ""
        prev2 = words[i - 2][0] if i > 1 and _PUNCT.fullmatch(prev or " ") else ""
        cued = prev in CUES or prev2 in CUES or prev.endswith(("叫", "是")) and prev in ("我叫", "叫", "名叫")
        weak = prev in WEAK_CUES or not prev or _PUNCT.fullmatch(prev) is not None
        nxt, ntag = (words[i + 1][0], words[i + 1][1]) if i + 1 < n else ("", "")
        titled = nxt in TITLES or nxt[:2] in TITLES and len(nxt) <= 3
        span = None
        k = _title_prefix(word)
        sl = _surname_len(word, cued or titled)
        if k:
            span = (start, start + k)
            if k == 1 and prev in SURNAMES and words[i - 1][2] + 1 == start and words[i - 1][1] in ("nr", "?"):
                span = (start - 1, start + 1)  # 李 / 林先生: a two-character name cut before its given name
        elif sl and _is_han(word) and sl < len(word) <= sl + 2 and not word.endswith(_ADMIN + _STREET + _BUILDING):
            # a whole word that starts with a surname: a name if jieba does not know it (an HMM new word) or tags
            # it as one of three characters, or if a cue or a title is beside it (李子 and 张开 are nr in jieba's
            # dictionary too, so a two-character nr word needs context)
            took = prev in _TAKERS and tag.startswith("nr") and len(word) == sl + 1 and (
                not nxt or ntag in ("v", "uj", "p", "vn", "d", "m", "c", "t") or _PUNCT.fullmatch(nxt) is not None)
            # 丁冬 / 梅, 徐海 / 燕: a three-character name cut after its second character
            split3 = len(word) == sl + 1 and tag in ("nr", "ns", "?") and len(nxt) == 1 and ntag in ("nr", "?") \
                and _given_like(nxt, ntag)
            if tag == "?" or tag.startswith("nr") and len(word) >= 3 and _rare(word) or cued or titled or took \
                    or split3:
                span = (start, start + len(word))
                if len(word) == sl + 1 and _given_like(nxt, ntag) and len(nxt) == 1 and ntag in ("?", "nr"):
                    span = (start, start + len(word) + 1)  # 张 / 晓 / 明 cut too finely
                    i += 1
            elif tag.startswith("nr") and weak and _given_like(nxt, ntag) is False and nxt in TITLES:
                span = (start, start + len(word))
        elif sl == len(word) and _given_like(nxt, ntag) and (not prev or prev[-1] not in "一二三四五六七八九十两几每这那第"):
            # a surname word followed by a given name cut off from it (唐 / 建华, 林 / 海燕)
            after = words[i + 2][0] if i + 2 < n else ""
            if tag in ("nr", "ng", "j", "?", "nrfg", "nrt") or cued or titled or ntag in ("nr", "nz", "?", "nrt", "nrfg") \
                    or after in TITLES:
                if ntag in ("nr", "nz", "?", "n", "ng", "a", "nrfg", "nrt", "j") or cued or after in TITLES \
                        or tag == "nr":
                    span = (start, start + len(word) + len(nxt))
                    i += 1
            elif len(nxt) == 2 and len(word) == 1 and ntag in ("nr", "ns", "z", "nz", "nrfg", "nrt") \
                    and (i + 2 >= n or words[i + 2][1] in ("v", "p", "c", "uj", "d", "ul", "?") and len(words[i + 2][0]) <= 2
                         or words[i + 2][0] in TITLES or _PUNCT.fullmatch(words[i + 2][0]) is not None):
                span = (start, start + 3)  # 黄 / 建国 / 签字, 顾 / 婷婷 / 把: a surname jieba read as a word of its own
                i += 1
            if span is None and (i + 1 < n and words[i + 1][0] in TITLES):
                span = (start, start + len(word))  # 王 / 先生
        elif sl == len(word) and titled:
            span = (start, start + len(word))
        if span:
            out.append(span)
        i += 1
    return out


def _role(word: str, tag: str) -> str:
    """P province, A administrative division, S street, B building, U unit word, D number, '' none."""
    if _PROVINCE.fullmatch(word) or len(word) >= 3 and word.endswith(("省", "自治区", "特别行政区")):
        return "P"
    if word in _UNIT:
        return "U"
    if _ALNUM.fullmatch(word):
        return "D"
    if len(word) >= 2 and word.endswith(_UNIT) and _ALNUM.fullmatch(word.rstrip("号楼院栋幢座单元室层房户")):
        return "U"
    if len(word) >= 2 and word.endswith(_ADMIN) and _is_han(word):
        return "A"
    if word.endswith(_STREET) and _is_han(word) and len(word) >= 2:
        return "S"
    if tag == "ns" and _is_han(word):
        return "A"
    if word.endswith(_BUILDING) and _is_han(word):
        return "B"
    return ""


_role_of = lru_cache(maxsize=65536)(_role)  # words repeat far more than lines do


def addresses(text: str) -> list[Span]:
    """Spans of Chinese postal addresses in `text`: from the province (or the first division named) to the room."""
    out: list[Span] = []
    for clause in _CLAUSE.finditer(text):
        if _HAN.search(clause.group()) and _GATE.search(clause.group()):
            base = clause.start()
            out += [(base + a, base + b) for a, b in _addresses_in(clause.group(), segment(clause.group()))]
    return out


_SUFFIX_CHARS = set("省市区县镇乡村路街巷弄道")


def _merged(words):
    """A one-character division word joined to the word before it (玉兰 / 市 -> 玉兰市, 熊 / 路 -> 熊路)."""
    out: list = []
    for word, tag, start in words:
        if word in _SUFFIX_CHARS and out and _is_han(out[-1][0]) and out[-1][2] + len(out[-1][0]) == start \
                and out[-1][0] not in ADDRESS_CUES and len(out[-1][0]) <= 4:
            prev = out.pop()
            out.append((prev[0] + word, "?", prev[2]))
        else:
            out.append((word, tag, start))
    return out


_MAX_WORDS = 30  # no address is longer; it bounds the work from any one start


def _addresses_in(clause: str, words) -> list[Span]:
    words = _merged(words)
    out: list[Span] = []
    n, i = len(words), 0
    roles = [_role_of(w, t) for w, t, _ in words]
    while i < n:
        if roles[i] not in ("P", "A", "S"):
            i += 1
            continue
        first, last, kinds, glue, j = i, i, [roles[i]], 0, i + 1
        while j < n and j - first < _MAX_WORDS:
            word, r = words[j][0], roles[j]
            if r in ("P", "A") and any(k in "SDU" for k in kinds) or r == "S" and any(k in "DU" for k in kinds):
                break  # a larger division after a street or a number starts the next address
            if r == "D" and j + 1 < n and roles[j + 1] == "U" or r == "U" \
                    or r in ("P", "A", "S", "B") or r == "D" and word.isdigit() is False and kinds[-1] in "SBU":
                kinds.append(r)
                last, glue = j, 0
            elif word in ("-", "—") and kinds[-1] in "DU" and j + 1 < n and roles[j + 1] == "D":
                pass
            elif r == "" and _is_han(word) and glue + len(word) <= 8 and word not in ADDRESS_CUES \
                    and word not in TITLES and not (len(word) == 1 and words[j][1] in _FUNCTION_TAGS):
                glue += len(word)  # a name within the address (黄浦, 华星, 现代) held only if a division word follows
            else:
                break
            j += 1
        if kinds[-1] == "S" and last + 1 < n and words[last + 1][0].isdigit() and len(words[last + 1][0]) <= 5:
            last += 1  # 世纪大道 100
            kinds.append("D")
        parts = [k for k in kinds if k in "PASBU"]
        cued = first > 0 and (words[first - 1][0] in ADDRESS_CUES or words[first - 1][0].endswith(("地址", "住址")))
        numbered = "U" in kinds or "D" in kinds  # a house number: a place to send a letter, not a street's name
        divided = any(k in "PA" for k in kinds) and "S" in kinds and len(parts) >= 3
        if len(parts) >= 2 and (numbered or divided or cued):
            start, end = words[first][2], words[last][2] + len(words[last][0])
            post = _POSTCODE.match(clause, end)
            out.append((start, post.end() if post else end))
            i = last + 1
        else:
            i += 1
    return out
