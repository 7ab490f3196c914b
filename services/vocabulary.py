"""The words of attribute search: the values a search may ask for, their names in English and Chinese, and
which colours a witness confuses — one table for the search form, the free-text parser and the API.

The values are those the attribute classifiers write on sightings (models.attributes); a witness's word
("silver", "银色", "grey") maps onto them here and nowhere else.
"""
from __future__ import annotations

from dataclasses import replace

from indexer.store import AttributeFilter
from models.records import PERSON_COLORS, VEHICLE_COLORS, VEHICLE_TYPES

GENDERS = ("male", "female")

# Colours a witness, a camera's white balance or a classifier easily swaps: a query with near colours
# asks for these too. Symmetric by construction (see near_colors).
_NEAR = {("white", "silver"), ("silver", "gray"), ("gray", "black"), ("red", "orange"), ("orange", "yellow"),
         ("orange", "brown"), ("red", "pink"), ("pink", "purple"), ("blue", "purple")}
# Silver is a white or a light gray to most eyes and cameras (the labelled sets split on it more than on any other
# pair): a colour search widens these unless the investigator asks for exactly one colour.
SILVER_NEAR = {("white", "silver"), ("silver", "gray")}

COLOR_WORDS: dict[str, str] = {
    # English
    "white": "white", "silver": "silver", "grey": "gray", "gray": "gray", "black": "black",
    "red": "red", "maroon": "red", "blue": "blue", "navy": "blue", "green": "green", "yellow": "yellow",
    "gold": "yellow", "golden": "yellow", "brown": "brown", "beige": "brown", "tan": "brown", "khaki": "brown",
    "orange": "orange", "purple": "purple", "violet": "purple", "pink": "pink",
    # Chinese (longest first wins in the parser, so 银灰 is gray before 银 is silver)
    "白色": "white", "白": "white", "银色": "silver", "银灰": "gray", "银": "silver", "灰色": "gray", "灰": "gray",
    "黑色": "black", "黑": "black", "红色": "red", "红": "red", "蓝色": "blue", "蓝": "blue", "绿色": "green",
    "绿": "green", "黄色": "yellow", "黄": "yellow", "金色": "yellow", "棕色": "brown", "棕": "brown",
    "咖啡色": "brown", "褐色": "brown", "橙色": "orange", "橙": "orange", "橘色": "orange", "紫色": "purple",
    "紫": "purple", "粉色": "pink", "粉红": "pink", "粉": "pink",
}

# Every word names a value the classifiers write, or a search for it could never match: no classifier tells
# tricycles yet, so 三轮车 is shown as not understood rather than searched in vain (tests/test_freetext.py).
VEHICLE_TYPE_WORDS: dict[str, str] = {
    "car": "car", "cars": "car", "sedan": "car", "saloon": "car", "suv": "car", "hatchback": "car",
    "coupe": "car", "taxi": "car", "van": "van", "minivan": "van", "mpv": "van", "truck": "truck",
    "lorry": "truck", "pickup": "truck", "bus": "bus", "coach": "bus", "minibus": "bus", "motorcycle": "motorcycle",
    "motorbike": "motorcycle", "scooter": "motorcycle", "moped": "motorcycle", "e-bike": "motorcycle",
    "ebike": "motorcycle", "bicycle": "bicycle", "bike": "bicycle",
    "轿车": "car", "小车": "car", "小汽车": "car", "汽车": "car", "出租车": "car", "越野车": "car", "SUV": "car",
    "面包车": "van", "商务车": "van", "MPV": "van", "货车": "truck", "卡车": "truck", "皮卡": "truck",
    "大货车": "truck", "渣土车": "truck", "公交车": "bus", "公交": "bus", "大巴": "bus", "客车": "bus",
    "巴士": "bus", "摩托车": "motorcycle", "摩托": "motorcycle", "电动车": "motorcycle", "电瓶车": "motorcycle",
    "自行车": "bicycle", "单车": "bicycle",
}


def near_colors(color: str, pairs: set[tuple[str, str]] = _NEAR) -> tuple[str, ...]:
    """The colour and those a witness or a classifier would confuse with it, the colour first."""
    near = sorted({b for a, b in pairs if a == color} | {a for a, b in pairs if b == color})
    return (color, *near)


def widen(attributes: AttributeFilter, pairs: set[tuple[str, str]] = _NEAR) -> AttributeFilter:
    """The same conditions with each colour asked for also matching its near colours (of `pairs`)."""
    def wide(colors: str | tuple[str, ...] | None) -> tuple[str, ...] | None:
        if colors is None:
            return None
        return tuple(dict.fromkeys(c for one in ([colors] if isinstance(colors, str) else colors)
                                   for c in near_colors(one, pairs)))

    return replace(attributes, vehicle_color=wide(attributes.vehicle_color), upper_color=wide(attributes.upper_color),
                   lower_color=wide(attributes.lower_color))


def color_scope(attributes: AttributeFilter, near: bool, exact: bool) -> AttributeFilter:
    """A search's colours as asked: every near colour (`near`), exactly the one named (`exact`), or by default
    the silver family (white ≈ silver ≈ gray)."""
    return widen(attributes) if near else attributes if exact else widen(attributes, SILVER_NEAR)


def vocabulary() -> dict[str, object]:
    """What the search form offers (served to the web app, so both speak the same words)."""
    return {"vehicle_colors": list(VEHICLE_COLORS), "person_colors": list(PERSON_COLORS),
            "vehicle_types": list(VEHICLE_TYPES), "genders": list(GENDERS),
            "near_colors": {c: list(near_colors(c)[1:]) for c in sorted(set(VEHICLE_COLORS) | set(PERSON_COLORS))},
            "default_near": {c: list(near_colors(c, SILVER_NEAR)[1:]) for c in ("white", "silver", "gray")}}
