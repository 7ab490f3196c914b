"""Watchlist, rule and alert records, and the plate patterns watchlists hold.

A plate entry matches exactly, by wildcard (`?` one character, `*` any run) or
fuzzily (edit distance up to a tolerance). Patterns are validated here so that a
malformed one is refused when it is entered, never when a sighting arrives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time

from models.records import InputError

WATCHLIST_KINDS = ("plate", "face", "attribute")
ENTRY_MATCHES = ("exact", "wildcard", "fuzzy")
RULE_KINDS = ("watchlist", "not_on_whitelist", "cloned_plate", "co_traveller")
SEVERITIES = ("low", "medium", "high", "critical")
_PLATE_CHARS = re.compile(r"^[0-9A-Z\u4e00-\u9fff?*]+$")


def normalise_plate_pattern(pattern: str, match: str) -> str:
    """Upper-case, strip separators, and check the characters a plate pattern may hold."""
    text = re.sub(r"[\s·•\-_.]", "", pattern or "").upper()
    if not text:
        raise InputError("the plate pattern is empty")
    if not _PLATE_CHARS.match(text):
        raise InputError(f"plate pattern {pattern!r} holds characters no plate has (allowed: letters, digits, "
                         "Chinese province characters, ? and *)")
    if match != "wildcard" and ("?" in text or "*" in text):
        raise InputError(f"plate pattern {pattern!r} has wildcards; set match to 'wildcard'")
    if match == "wildcard" and text.strip("*") == "":
        raise InputError("a wildcard pattern of only '*' would match every plate")
    if len(text.replace("*", "")) > 10:
        raise InputError(f"plate pattern {pattern!r} is longer than any plate")
    return text


def wildcard_regex(pattern: str) -> str:
    return "".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)


@dataclass
class Watchlist:
    id: str
    name: str
    kind: str  # plate | face | attribute
    description: str = ""
    created_by: str = ""
    created_at: datetime | None = None


@dataclass
class WatchEntry:
    """One watched plate pattern, enrolled face, or attribute condition — always with who and why."""

    id: str
    watchlist_id: str
    reason: str
    created_by: str
    value: str = ""  # plate pattern, or a label for a face
    match: str = "exact"  # exact | wildcard | fuzzy (plates)
    tolerance: int = 1  # fuzzy: edit distance allowed
    conditions: dict[str, object] = field(default_factory=dict)  # attribute lists: field -> wanted value
    created_at: datetime | None = None


@dataclass
class Rule:
    id: str
    name: str
    kind: str = "watchlist"  # watchlist | not_on_whitelist | cloned_plate | co_traveller
    target_plate: str | None = None  # co_traveller: alert when a vehicle that travels with this plate is seen
    watchlist_id: str | None = None
    camera_ids: list[str] = field(default_factory=list)
    area_wkt: str | None = None  # polygon in lon/lat
    time_from: time | None = None  # local time-of-day window at the rule's zone
    time_to: time | None = None
    tz: str = "UTC"
    min_confidence: float = 0.0
    severity: str = "medium"
    cooldown_s: int = 300
    active: bool = True


@dataclass
class Alert:
    id: str
    rule_id: str
    sighting_id: str
    camera_id: str
    ts: datetime  # when the sighting was made
    raised_at: datetime
    severity: str
    target: str  # the plate, face entry or condition that matched
    details: dict[str, object] = field(default_factory=dict)
    crop: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
