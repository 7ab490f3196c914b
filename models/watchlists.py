"""Watchlist, rule and alert records, and the plate patterns watchlists hold.

A plate entry matches exactly, by wildcard (`?` one character, `*` any run) or
fuzzily (edit distance up to a tolerance); its pattern is checked by
`models.plate_text.plate_pattern` when it is entered, never when a sighting arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import TypeVar

from models.plate_text import PlateMatch
from models.records import InputError

E = TypeVar("E", bound=StrEnum)


def choice(enum: type[E], value: object, what: str) -> E:
    """The enum member a user's text names; anything else is an InputError listing the choices."""
    if isinstance(value, str):  # the members are strings: any other value names none of them
        try:
            return enum(value)
        except ValueError:
            pass
    raise InputError(f"{what} must be one of {[m.value for m in enum]}, not {value!r}")


class WatchlistKind(StrEnum):
    PLATE = "plate"
    FACE = "face"
    ATTRIBUTE = "attribute"


class RuleKind(StrEnum):
    WATCHLIST = "watchlist"  # a sighting matches an entry of the list
    NOT_ON_WHITELIST = "not_on_whitelist"  # a plate that is not on the list
    CLONED_PLATE = "cloned_plate"  # a plate seen too far away too soon
    CO_TRAVELLER = "co_traveller"  # a vehicle that travels with the target plate


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


WATCHLIST_KINDS = tuple(k.value for k in WatchlistKind)
ENTRY_MATCHES = (PlateMatch.EXACT.value, PlateMatch.WILDCARD.value, PlateMatch.FUZZY.value)
RULE_KINDS = tuple(k.value for k in RuleKind)
SEVERITIES = tuple(k.value for k in Severity)


@dataclass
class Watchlist:
    id: str
    name: str
    kind: WatchlistKind
    description: str = ""
    created_by: str = ""
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.kind = choice(WatchlistKind, self.kind, "watchlist kind")


@dataclass
class WatchEntry:
    """One watched plate pattern, enrolled face, or attribute condition — always with who and why."""

    id: str
    watchlist_id: str
    reason: str
    created_by: str
    value: str = ""  # plate pattern, or a label for a face
    match: PlateMatch = PlateMatch.EXACT  # exact | wildcard | fuzzy (plates)
    tolerance: int = 1  # fuzzy: edit distance allowed
    conditions: dict[str, object] = field(default_factory=dict)  # attribute lists: field -> wanted value
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.match = choice(PlateMatch, self.match, "match")


@dataclass
class Rule:
    id: str
    name: str
    kind: RuleKind = RuleKind.WATCHLIST
    target_plate: str | None = None  # co_traveller: alert when a vehicle that travels with this plate is seen
    watchlist_id: str | None = None
    camera_ids: list[str] = field(default_factory=list)
    area_wkt: str | None = None  # polygon in lon/lat
    time_from: time | None = None  # local time-of-day window at the rule's zone
    time_to: time | None = None
    tz: str = "UTC"
    min_confidence: float = 0.0
    severity: Severity = Severity.MEDIUM
    cooldown_s: int = 300
    active: bool = True

    def __post_init__(self) -> None:
        self.kind = choice(RuleKind, self.kind, "rule kind")
        self.severity = choice(Severity, self.severity, "severity")


@dataclass
class Alert:
    id: str
    rule_id: str
    sighting_id: str
    camera_id: str
    ts: datetime  # when the sighting was made
    raised_at: datetime
    severity: Severity
    target: str  # the plate, face entry or condition that matched
    details: dict[str, object] = field(default_factory=dict)
    crop: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)
