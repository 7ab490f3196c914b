"""Free-text search: what an investigator types, in Chinese or English, turned into the structured filters.

"白色SUV 皖A 昨天8点到10点 宝安公路", "red car near Bao'an Rd last night", "man in black with a backpack":
each recognised phrase becomes a chip (field, value, the words it came from) that the user sees and can edit
before the search runs; words it does not understand are listed, never silently dropped or guessed at.
Rule-based on purpose: every answer can be traced to a rule, and the vocabulary is the search form's
(services.vocabulary). Times are read in the caller's zone; places resolve to the cameras whose name or
road contains them (in Chinese, or in pinyin for a road typed in Latin letters).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from indexer.store import AttributeFilter
from models.records import Camera, InputError, SightingKind
from services.search import Filters
from services.vocabulary import COLOR_WORDS, VEHICLE_TYPE_WORDS

MAX_TEXT = 300  # characters: a query, not a document
MAX_LOOKBACK_S = 20 * 365 * 86400  # "the last 99999 days" reaches back 20 years, not past the year 1
COLOR_OF = {w.lower(): c for w, c in COLOR_WORDS.items()}
TYPE_OF = {w.lower(): t for w, t in VEHICLE_TYPE_WORDS.items()}

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE = re.compile(rf"(?<![A-Za-z0-9])([{PROVINCES}])[\s·.]?([A-Za-z])[\s·.]?((?:[A-Za-z0-9?*]){{0,6}})"
                    r"(?![A-Za-z0-9])")
_SUFFIX = re.compile(r"(?:尾号|末尾|plates? end(?:ing|s)? (?:in |with )?|ending (?:in |with )?)\s*([A-Za-z0-9]{2,6})\b",
                     re.IGNORECASE)

MALE_WORDS = ("gentleman", "men", "man", "male", "guy", "boy", "男子", "男人", "男性", "男的", "男士", "男孩", "男生",
              "男")
FEMALE_WORDS = ("women", "woman", "female", "girl", "lady", "女子", "女人", "女性", "女的", "女士", "女孩", "女生",
                "女")
PERSON_WORDS = ("pedestrians", "pedestrian", "person", "people", "someone", "行人", "路人", "人员", "人")
UPPER_WORDS = ("t-shirt", "tshirt", "shirt", "jacket", "coat", "hoodie", "sweater", "jumper", "blouse", "top",
               "vest", "上衣", "外套", "衣服", "衬衫", "t恤", "夹克", "卫衣", "毛衣", "羽绒服", "衣")
LOWER_WORDS = ("trousers", "pants", "jeans", "shorts", "skirt", "leggings", "牛仔裤", "短裤", "裤子", "裙子", "裤",
               "裙")
BACKPACK_WORDS = ("backpack", "rucksack", "knapsack", "双肩包", "背包", "书包")
BAG_WORDS = ("handbag", "shoulder bag", "plastic bag", "purse", "tote", "bag", "手提包", "挎包", "提包", "袋子", "包")
HAT_WORDS = ("baseball cap", "hat", "cap", "beanie", "帽子", "帽")
# Garments that answer the sleeves and trouser-legs flags: (field, value, words).
LENGTH_WORDS = (("long_pants", False, ("shorts", "skirt", "短裤", "裙子", "裙")),
                ("long_sleeves", False, ("short sleeves", "short-sleeved", "t-shirt", "tshirt", "短袖")),
                ("long_sleeves", True, ("long sleeves", "long-sleeved", "长袖")))
PLACE_NOUNS = ("gate", "road", "street", "square", "bridge", "station", "avenue", "junction", "crossing")
NEGATIONS = re.compile(r"(?:\bno|\bwithout|\bnot wearing|\bnot carrying|没有|没戴|没背|没拿|不戴|无)\s*(?:a |an )?$",
                       re.IGNORECASE)

# Parts of a day: [start hour, end hour) — an end past 24 runs into the next day.
PARTS_OF_DAY = {"this morning": (6, 12), "morning": (6, 12), "this afternoon": (12, 18), "afternoon": (12, 18),
                "this evening": (18, 24), "evening": (18, 24), "tonight": (18, 30), "last night": (18, 30),
                "overnight": (18, 30), "night": (18, 30), "凌晨": (0, 6), "早上": (6, 10), "上午": (6, 12),
                "中午": (11, 13), "下午": (12, 18), "傍晚": (17, 19), "晚上": (18, 24), "夜里": (18, 30),
                "夜间": (18, 30)}
DAY_WORDS = {"today": 0, "yesterday": -1, "day before yesterday": -2, "今天": 0, "今日": 0, "昨天": -1, "昨日": -1,
             "前天": -2}
# Words that name a day and a part of it at once.
DAY_PARTS = {"last night": (-1, (18, 30)), "tonight": (0, (18, 30)), "今晚": (0, (18, 24)), "今早": (0, (6, 10)),
             "昨晚": (-1, (18, 30)), "昨夜": (-1, (18, 30)), "昨天晚上": (-1, (18, 30)), "昨天夜里": (-1, (18, 30))}
MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                          "dec"))}
_UNITS = {"minute": 60, "minutes": 60, "min": 60, "mins": 60, "hour": 3600, "hours": 3600, "h": 3600,
          "day": 86400, "days": 86400, "week": 604800, "weeks": 604800,
          "分钟": 60, "小时": 3600, "个小时": 3600, "天": 86400, "日": 86400, "周": 604800}
_NUMBER_WORDS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
                 "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "twelve": 12,
                 "24": 24}
FILLER = {"a", "an", "the", "with", "in", "wearing", "carrying", "and", "of", "on", "at", "near", "around", "by",
          "plate", "plates", "car", "vehicle", "vehicles", "who", "was", "is", "seen", "from", "to", "between",
          "dark", "light", "bright", "的", "穿", "穿着", "戴", "戴着", "背", "背着", "拿", "拿着", "提着", "和",
          "跟", "在", "于", "附近", "经过", "车牌", "牌照", "车辆", "车", "色", "颜色", "一个", "一辆", "个", "辆",
          "，", ",", "、", ".", "。"}


VOCABULARY = {w.lower() for words in (MALE_WORDS, FEMALE_WORDS, PERSON_WORDS, UPPER_WORDS, LOWER_WORDS, BACKPACK_WORDS,
                                      BAG_WORDS, HAT_WORDS, COLOR_WORDS, VEHICLE_TYPE_WORDS) for w in words}


@dataclass
class Chip:
    """One understood phrase: the filter it sets, its value, and the words of the query it came from."""

    field: str
    value: object
    text: str
    applied: bool = True  # a place that matches no camera is shown, not applied


@dataclass
class ParsedQuery:
    """The structured search a free-text query asks for."""

    text: str
    kind: str | None = None
    attributes: AttributeFilter = field(default_factory=AttributeFilter)
    plate: str | None = None
    plate_mode: str | None = None  # exact | wildcard | suffix
    start: datetime | None = None
    end: datetime | None = None
    camera_ids: list[str] | None = None
    chips: list[Chip] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def filters(self) -> Filters:
        return Filters(self.start, self.end, self.camera_ids, None, self.attributes)

    def to_json(self) -> dict[str, object]:
        """What the user sees before the search runs: the chips, the filters they make, the words not understood."""
        conditions = {k: list(v) if isinstance(v, tuple) else v for k, v in self.attributes.items()}
        return {"text": self.text, "kind": self.kind,
                "plate": {"q": self.plate, "mode": self.plate_mode} if self.plate else None,
                "filters": {"start": self.start.isoformat() if self.start else None,
                            "end": self.end.isoformat() if self.end else None,
                            "camera_ids": self.camera_ids, **conditions},
                "chips": [{"field": c.field, "value": c.value, "text": c.text, "applied": c.applied}
                          for c in self.chips],
                "ignored": self.ignored}


@dataclass
class _Text:
    """The query with the spans already understood blanked out, so each phrase is read once."""

    raw: str
    rest: str = ""

    def __post_init__(self) -> None:
        self.rest = self.raw

    def take(self, start: int, end: int) -> str:
        """Blank out [start, end) and return its words; a pattern's leading or trailing whitespace may cover words
        taken before, which are not part of these."""
        span = self.rest[start:end]
        start, end = start + len(span) - len(span.lstrip()), end - (len(span) - len(span.rstrip()))
        words = self.raw[start:end]
        self.rest = self.rest[:start] + " " * (end - start) + self.rest[end:]
        return words.strip()

    def find_all(self, words: Iterable[str]) -> list[tuple[int, int, str]]:
        """Occurrences of the words in what is not yet taken, read longest-first over the whole vocabulary
        (whole words for Latin ones), so the 包 of 面包车 or 背包 is never a bag."""
        wanted = {w.lower() for w in words}
        found: list[tuple[int, int, str]] = []
        lower = self.rest.lower()
        for word in sorted(wanted | VOCABULARY, key=len, reverse=True):
            # Latin words whole, and in the plural too (backpacks, buses)
            pattern = rf"(?<![a-z]){re.escape(word)}(?:s|es)?(?![a-z])" if word.isascii() else re.escape(word)
            for m in re.finditer(pattern, lower):
                if not any(s < m.end() and m.start() < e for s, e, _ in found):
                    found.append((m.start(), m.end(), word))
        return sorted(hit for hit in found if hit[2] in wanted)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone a query's times are meant in; an unknown name is the caller's error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown time zone {name!r}: give an IANA name such as Asia/Shanghai") from exc


def parse(text: str, now: datetime, cameras: Iterable[Camera] = ()) -> ParsedQuery:
    """The filters `text` asks for; `now` (timezone-aware) anchors "yesterday" and "last 2 hours" in its zone."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    text = " ".join(text.split())[:MAX_TEXT]
    q = ParsedQuery(text)
    t = _Text(text)
    _plate(t, q)
    _times(t, q, now)
    _places(t, q, list(cameras))  # before people: 人民路 is a road, not a person
    _person(t, q)
    _vehicle(t, q)
    q.ignored = [w for w in re.split(r"[\s,，、.。;；]+", t.rest) if w and w.lower() not in FILLER]
    return q


# plates -------------------------------------------------------------------------------------------------------
def _plate(t: _Text, q: ParsedQuery) -> None:
    if m := _SUFFIX.search(t.rest):
        q.plate, q.plate_mode = m.group(1).upper(), "suffix"
    elif m := next((p for p in _PLATE.finditer(t.rest)  # 黑SUV is a black SUV, not a plate
                    if (p.group(2) + p.group(3)).lower() not in VEHICLE_TYPE_WORDS), None):
        plate = (m.group(1) + m.group(2) + m.group(3)).upper()
        complete = len(plate) >= 7 and not any(c in plate for c in "?*")
        q.plate, q.plate_mode = (plate, "exact") if complete else \
            (plate if any(c in plate for c in "?*") else plate + "*", "wildcard")
    else:
        return
    q.kind = SightingKind.VEHICLE
    q.chips.append(Chip("plate", {"q": q.plate, "mode": q.plate_mode}, t.take(m.start(), m.end())))


# times --------------------------------------------------------------------------------------------------------
_HOUR = r"(\d{1,2})(?:[:：](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?"
_RANGE_EN = re.compile(rf"(?:between|from)?\s*{_HOUR}\s*(?:-|–|to|and|until|till)\s*{_HOUR}(?![\d:])",
                       re.IGNORECASE)
_AT_EN = re.compile(rf"\b(after|before|since|around|at)\s+{_HOUR}(?![\d:])", re.IGNORECASE)
_CLOCK_EN = re.compile(r"\b(\d{1,2})(?:[:：](\d{2}))?\s*(am|pm)\b", re.IGNORECASE)
_PERIOD_ZH = "|".join(k for k in PARTS_OF_DAY if not k.isascii())
_HOUR_ZH = rf"({_PERIOD_ZH})?\s*(\d{{1,2}}|[一二两三四五六七八九十]{{1,3}})(?:[点时:：](?:(半)|(\d{{1,2}})分?)?)"
# the first hour of a range may leave out its 点 (8到10点)
_RANGE_ZH = re.compile(rf"{_HOUR_ZH.replace(')分?)?)', ')分?)?)?')}\s*(?:到|至|-|–|~)\s*{_HOUR_ZH}")
_AT_ZH = re.compile(rf"{_HOUR_ZH}(以后|之后|后|以前|之前|前|左右)?")
_LAST_N = re.compile(r"(?:(?:in the )?(?:last|past)\s+(\d{1,9}|an?|one|two|three|four|five|six|twelve|24)\s*"
                     r"(minutes?|mins?|hours?|h|days?|weeks?)\b)|(?:(?:最近|过去|近)\s*(\d{1,9}|[一二两三四五六七八九十]+)\s*"
                     r"(分钟|个小时|小时|天|日|周))", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_ZH_DATE = re.compile(r"(?:(\d{4})年)?(\d{1,2})月(\d{1,2})[日号]")
_EN_DATE = re.compile(r"\b(?:on\s+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2})"
                      r"(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?\b", re.IGNORECASE)


def _number(word: str) -> int:
    if word.isdigit():
        return int(word)
    if word.lower() in _NUMBER_WORDS:
        return _NUMBER_WORDS[word.lower()]
    if word.startswith("十"):  # 十二 = 12
        return 10 + (_NUMBER_WORDS.get(word[1:], 0) if len(word) > 1 else 0)
    if len(word) >= 2 and word[1] == "十":  # 二十, 二十三
        return _NUMBER_WORDS.get(word[0], 0) * 10 + (_NUMBER_WORDS.get(word[2:], 0) if len(word) > 2 else 0)
    return _NUMBER_WORDS.get(word, 0)


def _hour24(hour: int, meridiem: str | None, part: tuple[int, int] | None) -> int:
    """A clock hour made 24-hour by am/pm or by the part of the day it was said in (晚上8点 = 20:00)."""
    m = (meridiem or "").lower().replace(".", "")
    if m == "pm" and hour < 12:
        return hour + 12
    if m == "am" and hour == 12:
        return 0
    if not m and part is not None and part[0] >= 12 and hour < 12:
        return hour + 12
    return hour


def _times(t: _Text, q: ParsedQuery, now: datetime) -> None:
    zone = now.tzinfo
    assert zone is not None
    today = now.date()

    if m := _LAST_N.search(t.rest):
        n = _number(m.group(1) or m.group(3))
        unit = _UNITS[(m.group(2) or m.group(4)).lower()]
        q.start, q.end = now - timedelta(seconds=min(max(1, n) * unit, MAX_LOOKBACK_S)), now
        q.chips.append(Chip("time", _span(q), t.take(m.start(), m.end())))
        return

    day: date | None = None
    day_text: list[str] = []
    part: tuple[int, int] | None = None
    for pattern, read in ((_ISO_DATE, lambda g: (int(g[0]), int(g[1]), int(g[2]))),
                          (_ZH_DATE, lambda g: (int(g[0] or today.year), int(g[1]), int(g[2]))),
                          (_EN_DATE, lambda g: (int(g[2] or today.year), MONTHS[g[0][:3].lower()], int(g[1])))):
        if m := pattern.search(t.rest):
            try:
                day = date(*read(m.groups()))
            except ValueError:
                continue  # "2月30日": not a date, left for the user to see among the ignored words
            day_text.append(t.take(m.start(), m.end()))
            break
    for word, (offset, hours_of_day) in sorted(DAY_PARTS.items(), key=lambda kv: -len(kv[0])):
        if day is None and (found := t.find_all([word])):
            s, e, _ = found[0]
            day, part = today + timedelta(days=offset), hours_of_day
            day_text.append(t.take(s, e))
    for word, offset in sorted(DAY_WORDS.items(), key=lambda kv: -len(kv[0])):
        if day is None and (found := t.find_all([word])):
            s, e, _ = found[0]
            day = today + timedelta(days=offset)
            day_text.append(t.take(s, e))
    if part is None and (found := t.find_all(PARTS_OF_DAY)):
        s, e, word = found[0]
        part = PARTS_OF_DAY[word]
        day_text.append(t.take(s, e))

    hours, hour_text = _clock(t, part)
    if day is None and part is None and hours is None:
        return
    base = day or today
    begin: int
    finish: int | None
    if hours is not None:
        begin, finish = hours
    elif part is not None:
        begin, finish = part[0] * 60, part[1] * 60
    else:
        begin, finish = 0, 24 * 60
    q.start = _at(base, begin, zone)
    q.end = _at(base, finish, zone) if finish is not None else None
    if q.end is not None and q.end <= q.start:  # "22点到2点": the range runs past midnight
        q.end += timedelta(days=1)
    q.chips.append(Chip("time", _span(q), " ".join(day_text + hour_text)))


def _clock(t: _Text, part: tuple[int, int] | None) -> tuple[tuple[int, int | None] | None, list[str]]:
    """Minutes since midnight [begin, end) of a clock range or a single hour in the text, and its words.

    An impossible time (25点, 13pm, 8:75) is not read as one: its words stay among the ignored ones."""
    span: tuple[int, int | None] | None = None
    if m := _RANGE_ZH.search(t.rest):
        p1 = PARTS_OF_DAY.get(m.group(1) or "", part)
        p2 = PARTS_OF_DAY.get(m.group(5) or "", p1)
        a = _minutes(_number(m.group(2)), 30 if m.group(3) else int(m.group(4) or 0), None, p1)
        b = _minutes(_number(m.group(6)), 30 if m.group(7) else int(m.group(8) or 0), None, p2)
        span = (a, b) if a is not None and b is not None else None
    elif m := _RANGE_EN.search(t.rest):
        first, second = int(m.group(1)), int(m.group(4))
        # "8-10pm": the first hour takes the second's pm unless that would put it after the second
        a = _minutes(first, int(m.group(2) or 0), m.group(3) or (m.group(6) if first <= second else None), part)
        b = _minutes(second, int(m.group(5) or 0), m.group(6), part)
        span = (a, b) if a is not None and b is not None else None
    elif m := _AT_EN.search(t.rest):
        h = _minutes(int(m.group(2)), int(m.group(3) or 0), m.group(4), part)
        word = m.group(1).lower()
        span = None if h is None else {"after": (h, 24 * 60), "since": (h, None), "before": (0, h),
                                       "around": (h - 30, h + 30)}.get(word, (h, h + 60))
    elif m := _CLOCK_EN.search(t.rest):
        h = _minutes(int(m.group(1)), int(m.group(2) or 0), m.group(3), part)
        span = None if h is None else (h, h + 60)
    elif m := _AT_ZH.search(t.rest):
        h = _minutes(_number(m.group(2)), 30 if m.group(3) else int(m.group(4) or 0), None,
                     PARTS_OF_DAY.get(m.group(1) or "", part))
        after = m.group(5) or ""
        span = None if h is None else ((h, 24 * 60) if "后" in after else (0, h) if "前" in after
                                       else (h - 30, h + 30) if after else (h, h + 60))
    if m is None or span is None:
        return None, []
    return span, [t.take(m.start(), m.end())]


def _minutes(hour: int, minute: int, meridiem: str | None, part: tuple[int, int] | None) -> int | None:
    """Minutes since midnight of a clock time, or None when it is no time of day."""
    if minute > 59 or hour > 24 or (meridiem and not 1 <= hour <= 12):
        return None
    return _hour24(hour, meridiem, part) * 60 + minute


def _at(day: date, minutes: int, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), zone) + timedelta(minutes=minutes)


def _span(q: ParsedQuery) -> dict[str, str | None]:
    return {"start": q.start.isoformat() if q.start else None, "end": q.end.isoformat() if q.end else None}


# places -------------------------------------------------------------------------------------------------------
# A road's name holds no particle, verb or colour word: 穿黑衣服的男子在人民路 names 人民路, not 衣服的男子在人民路.
_PLACE_CHAR = r"(?:(?![的在于穿戴背拿着和跟色到至从经过附近])[\u4e00-\u9fff])"
_ROAD_ZH = re.compile(rf"({_PLACE_CHAR}{{1,8}}?(?:大道|公路|高速|路|街|道|桥|隧道|广场|路口|立交|出口))")
# A place typed in Latin letters: capitalised words (and numbers: Gate 3) after near/on/at.
_ROAD_EN = re.compile(r"\b(?:near|on|at|along|around|by|via)\s+"
                      rf"([A-Z][\w'’-]*\.?(?:\s(?:[A-Z][\w'’-]*\.?|\d{{1,4}}|(?:{'|'.join(PLACE_NOUNS)})s?\b)){{0,3}})")
_ROAD_SUFFIXES = ("road", "rd", "street", "st", "avenue", "ave", "boulevard", "blvd", "highway", "hwy", "expressway",
                  "lu", "gonglu", "dadao", "jie")


def _places(t: _Text, q: ParsedQuery, cameras: list[Camera]) -> None:
    spans = [(m.start(1), m.end(1), m.group(1)) for m in _ROAD_ZH.finditer(t.rest)]
    spans += [(m.start(1), m.end(1), m.group(1).strip()) for m in _ROAD_EN.finditer(t.rest)
              if m.group(1).strip().lower() not in COLOR_WORDS]
    chosen: set[str] = set()
    for start, end, place in sorted(spans):
        if place in COLOR_WORDS or place in VEHICLE_TYPE_WORDS:
            continue
        ids = cameras_named(place, cameras)
        q.chips.append(Chip("place", {"text": place, "camera_ids": ids}, t.take(start, end), applied=bool(ids)))
        chosen.update(ids)
    if chosen:
        q.camera_ids = sorted(chosen)


def _latin_key(text: str) -> str:
    """A place name reduced for matching: lower case, letters only, without the word for road."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", "").replace("’", ""))
    while len(words) > 1 and words[-1] in _ROAD_SUFFIXES:
        words.pop()
    return "".join(words)


def _pinyin(text: str) -> str:
    from pypinyin import lazy_pinyin  # only when a place is typed in Latin letters

    return "".join(lazy_pinyin(text)).lower()


def cameras_named(place: str, cameras: list[Camera]) -> list[str]:
    """Cameras whose name or road contains the place: as written, or for Latin text in pinyin (Bao'an → 宝安)."""
    if not place.isascii():
        return sorted(c.id for c in cameras if place in (c.road or "") or place in c.name)
    key = _latin_key(place)
    if len(key) < 3:
        return []
    found = []
    for c in cameras:
        names = [c.name, c.road or ""]
        if any(key in _latin_key(n) for n in names if n.isascii()) or any(
                key in _pinyin(n) for n in names if n and not n.isascii()):
            found.append(c.id)
    return sorted(found)


# people -------------------------------------------------------------------------------------------------------
def _person(t: _Text, q: ParsedQuery) -> None:
    gender = _first(t, (("male", MALE_WORDS), ("female", FEMALE_WORDS)))
    upper, lower = t.find_all(UPPER_WORDS), t.find_all(LOWER_WORDS)
    person_words = t.find_all(PERSON_WORDS)
    lengths = [word for _, _, words in LENGTH_WORDS for word in words]
    carries = t.find_all(BACKPACK_WORDS + BAG_WORDS + HAT_WORDS + tuple(lengths))
    if not (gender or upper or lower or person_words or carries):
        return
    if q.kind == SightingKind.VEHICLE and not (gender or upper or lower or person_words):
        return  # a bag on a vehicle query is not a person's bag
    q.kind = SightingKind.PERSON
    values: dict[str, object] = {}
    if gender:
        values["gender"] = gender[0]
        q.chips.append(Chip("gender", gender[0], t.take(gender[1], gender[2])))
    for s, e, _ in person_words:
        t.take(s, e)
    carried: tuple[tuple[str, tuple[str, ...]], ...] = (("backpack", BACKPACK_WORDS), ("bag", BAG_WORDS),
                                                         ("hat", HAT_WORDS))
    for name, words in carried:
        for s, e, _ in t.find_all(words)[:1]:  # in turn, so the 包 of 背包 is not a second, plain bag
            negation = NEGATIONS.search(t.raw[:s])
            values[name] = negation is None
            q.chips.append(Chip(name, negation is None, t.take(negation.start() if negation else s, e)))
    for name, value, words in LENGTH_WORDS:
        for s, e, _ in t.find_all(words)[:1]:
            values[name] = value
            q.chips.append(Chip(name, value, t.raw[s:e]))  # left in place: "red shorts" still names a colour
    colours = t.find_all(COLOR_WORDS)
    garments = sorted([(s, e, "upper_color") for s, e, _ in upper] + [(s, e, "lower_color") for s, e, _ in lower])
    for cs, ce, word in colours:
        # a colour names the garment that follows it closely ("black jacket", "白衣黑裤"); alone it is the top
        after = [g for g in garments if 0 <= g[0] - ce <= 12 and not any(ce <= c[0] < g[0] for c in colours)]
        target = after[0][2] if after else ("upper_color" if "upper_color" not in values else "lower_color")
        if target in values:
            continue
        values[target] = COLOR_OF[word]
        end = after[0][1] if after else ce
        q.chips.append(Chip(target, COLOR_OF[word], t.take(cs, end)))
        if after:
            garments.remove(after[0])
    for s, e, _ in t.find_all(lengths):
        t.take(s, e)
    q.attributes = AttributeFilter(**values)  # type: ignore[arg-type]


def _first(t: _Text, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, int, int] | None:
    hits = [(s, e, value) for value, words in groups for s, e, _ in t.find_all(words)]
    if not hits:
        return None
    s, e, value = min(hits)
    return value, s, e


# vehicles -----------------------------------------------------------------------------------------------------
def _vehicle(t: _Text, q: ParsedQuery) -> None:
    if q.kind == SightingKind.PERSON:
        return
    types = t.find_all(VEHICLE_TYPE_WORDS)
    colours = t.find_all(COLOR_WORDS)
    values: dict[str, object] = {}
    if types:
        values["vehicle_type"] = TYPE_OF[types[0][2]]
        same = [(s, e) for s, e, word in types if TYPE_OF[word] == values["vehicle_type"]]  # pickup truck
        q.chips.append(Chip("vehicle_type", values["vehicle_type"], " ".join(t.take(s, e) for s, e in same)))
    if colours:
        s, e, word = colours[0]
        values["vehicle_color"] = COLOR_OF[word]
        q.chips.append(Chip("vehicle_color", values["vehicle_color"], t.take(s, e)))
    if values or q.kind == SightingKind.VEHICLE or t.find_all(("car", "vehicle", "车辆", "车")):
        q.kind = SightingKind.VEHICLE
        q.attributes = AttributeFilter(**values)  # type: ignore[arg-type]

