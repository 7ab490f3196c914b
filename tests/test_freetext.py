"""Free-text search: a table of what investigators type, in Chinese and English, and the filters each must give.

The clock is fixed (Tuesday 3 November 2026, 14:00 in Shanghai) so "yesterday" and "last 2 hours" have one answer;
the cameras carry Chinese road names, so a road typed in pinyin or English must find them.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from models.records import PERSON_COLORS, VEHICLE_COLORS, VEHICLE_TYPES, Camera
from services.freetext import ParsedQuery, parse
from services.vocabulary import COLOR_WORDS, VEHICLE_TYPE_WORDS

NOW = datetime(2026, 11, 3, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CAMERAS = [Camera("c1", "Gate 1", 121.30, 31.20, road="宝安公路"),
           Camera("c2", "人民路口", 121.31, 31.21, road="人民路"),
           Camera("c3", "North gate", 121.32, 31.22, road="纪翟路"),
           Camera("c4", "East Square", 121.33, 31.23)]


def row(text: str, kind: str | None, plate: tuple[str, str] | None = None, time: tuple[str, str | None] | None = None,
        cameras: list[str] | None = None, ignored: tuple[str, ...] | list[str] = (), **attributes: object
        ) -> tuple[str, dict[str, object]]:
    return text, {"kind": kind, "attributes": attributes, "plate": plate, "time": time, "cameras": cameras,
                  "ignored": list(ignored)}


PHRASES = [
    row("白色SUV 皖A 昨天8点到10点 宝安公路", "vehicle", vehicle_type="car", vehicle_color="white",
        plate=("皖A*", "wildcard"), time=("11-02 08:00", "11-02 10:00"), cameras=["c1"]),
    row("red car with roof rack near Bao'an Rd last night", "vehicle", vehicle_type="car", vehicle_color="red",
        time=("11-02 18:00", "11-03 06:00"), cameras=["c1"], ignored=["roof", "rack"]),
    row("man in black with a backpack", "person", gender="male", upper_color="black", backpack=True),
    row("穿黑衣服的男子在人民路", "person", gender="male", upper_color="black", cameras=["c2"]),
    row("白衣黑裤背双肩包的女子", "person", gender="female", upper_color="white", lower_color="black", backpack=True),
    row("黑A12345", "vehicle", plate=("黑A12345", "exact")),
    row("沪B·88888", "vehicle", plate=("沪B88888", "exact")),
    row("没戴帽子的男人", "person", gender="male", hat=False),
    row("woman with a red top and blue jeans, no bag", "person", gender="female", upper_color="red",
        lower_color="blue", bag=False),
    row("blue truck between 8 and 10pm yesterday", "vehicle", vehicle_type="truck", vehicle_color="blue",
        time=("11-02 20:00", "11-02 22:00")),
    row("最近3小时 红色摩托车", "vehicle", vehicle_type="motorcycle", vehicle_color="red",
        time=("11-03 11:00", "11-03 14:00")),
    row("尾号345 白色轿车", "vehicle", vehicle_type="car", vehicle_color="white", plate=("345", "suffix")),
    row("plate ending in 88A", "vehicle", plate=("88A", "suffix")),
    row("银色面包车 11月2日下午3点", "vehicle", vehicle_type="van", vehicle_color="silver",
        time=("11-02 15:00", "11-02 16:00")),
    row("黑SUV", "vehicle", vehicle_type="car", vehicle_color="black"),
    row("出租车 今天上午", "vehicle", vehicle_type="car", time=("11-03 06:00", "11-03 12:00")),
    row("摩托车 昨晚10点到凌晨2点", "vehicle", vehicle_type="motorcycle", time=("11-02 22:00", "11-03 02:00")),
    row("white van on Jidi Road since 7am", "vehicle", vehicle_type="van", vehicle_color="white",
        time=("11-03 07:00", None), cameras=["c3"]),
    row("person in red near Gate 1 this morning", "person", upper_color="red", time=("11-03 06:00", "11-03 12:00"),
        cameras=["c1"]),
    row("grey sedan at 9pm", "vehicle", vehicle_type="car", vehicle_color="gray", time=("11-03 21:00", "11-03 22:00")),
    row("silver hatchback on 2026-11-01", "vehicle", vehicle_type="car", vehicle_color="silver",
        time=("11-01 00:00", "11-02 00:00")),
    row("yellow bus this afternoon", "vehicle", vehicle_type="bus", vehicle_color="yellow",
        time=("11-03 12:00", "11-03 18:00")),
    row("green pickup truck in the last 2 hours", "vehicle", vehicle_type="truck", vehicle_color="green",
        time=("11-03 12:00", "11-03 14:00")),
    row("black car near Main Street", "vehicle", vehicle_type="car", vehicle_color="black"),
    row("戴帽子的女人 昨天下午", "person", gender="female", hat=True, time=("11-02 12:00", "11-02 18:00")),
    row("穿红色上衣蓝色裤子的男子", "person", gender="male", upper_color="red", lower_color="blue"),
    row("背包 男 今天", "person", gender="male", backpack=True, time=("11-03 00:00", "11-04 00:00")),
    row("拿着手提包的女子", "person", gender="female", bag=True),
    row("粉色上衣的女孩", "person", gender="female", upper_color="pink"),
    row("white Toyota at North gate", "vehicle", vehicle_color="white", cameras=["c3"], ignored=["Toyota"]),
    row("红色货车 前天 纪翟路", "vehicle", vehicle_type="truck", vehicle_color="red",
        time=("11-01 00:00", "11-02 00:00"), cameras=["c3"]),
    row("蓝色轿车 皖AD1448*", "vehicle", vehicle_type="car", vehicle_color="blue", plate=("皖AD1448*", "wildcard")),
    row("皖A?76*", "vehicle", plate=("皖A?76*", "wildcard")),
    row("dark blue jacket", "person", upper_color="blue"),
    row("woman in a white coat with a handbag", "person", gender="female", upper_color="white", bag=True),
    row("people with backpacks on Nov 2", "person", backpack=True, time=("11-02 00:00", "11-03 00:00")),
    row("man wearing a cap and shorts", "person", gender="male", hat=True, long_pants=False),
    # no classifier tells tricycles yet: not understood, rather than searched in vain
    row("三轮车 今天早上", "vehicle", time=("11-03 06:00", "11-03 10:00"), ignored=["三轮车"]),
    row("e-bike rider in yellow", "vehicle", vehicle_type="motorcycle", vehicle_color="yellow", ignored=["rider"]),
    row("橙色卡车 最近2天", "vehicle", vehicle_type="truck", vehicle_color="orange",
        time=("11-01 14:00", "11-03 14:00")),
    row("white car 8am-9am", "vehicle", vehicle_type="car", vehicle_color="white",
        time=("11-03 08:00", "11-03 09:00")),
    row("公交车 下午2点到4点", "vehicle", vehicle_type="bus", time=("11-03 14:00", "11-03 16:00")),
]


def observed(q: ParsedQuery) -> dict[str, object]:
    def clock(t: datetime | None) -> str | None:
        return t.strftime("%m-%d %H:%M") if t else None

    return {"kind": q.kind, "attributes": dict(q.attributes.items()),
            "plate": (q.plate, q.plate_mode) if q.plate else None,
            "time": (clock(q.start), clock(q.end)) if q.start else None, "cameras": q.camera_ids, "ignored": q.ignored}


def test_the_table_is_large_enough() -> None:
    assert len(PHRASES) >= 40 and len({text for text, _ in PHRASES}) == len(PHRASES)


@pytest.mark.parametrize(("text", "expected"), PHRASES, ids=[text for text, _ in PHRASES])
def test_phrase_gives_its_filters(text: str, expected: dict[str, object]) -> None:
    assert observed(parse(text, NOW, CAMERAS)) == expected


@pytest.mark.parametrize(("text", "expected"), PHRASES[:12], ids=[text for text, _ in PHRASES[:12]])
def test_each_chip_shows_the_words_it_came_from(text: str, expected: dict[str, object]) -> None:
    chips = parse(text, NOW, CAMERAS).chips
    assert chips and all(c.text and all(piece in text for piece in c.text.split()) for c in chips)


def test_every_word_names_a_value_the_classifiers_write() -> None:
    """A query word that maps to a value no classifier writes would search in vain."""
    assert set(VEHICLE_TYPE_WORDS.values()) <= set(VEHICLE_TYPES)
    assert set(COLOR_WORDS.values()) <= set(VEHICLE_COLORS) | set(PERSON_COLORS)


def test_nonsense_is_bounded_and_never_an_error() -> None:
    assert parse("最近99999999天 after 25pm 2月30日 8点到99点", NOW).start == NOW.replace(year=2006, day=8)
    long = parse("red " * 500, NOW)
    assert len(long.text) == 300 and long.attributes.vehicle_color == "red"
