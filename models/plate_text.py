"""Chinese plate text, in one home: the format, normalisation, query patterns, wildcards and distances.

No models, cheap to import: the API, the alert rules, the plate dictionary and the
readers all use these same rules, so a pattern accepted in one place means the same
thing everywhere.
"""
from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from models.records import InputError

PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O
_ALNUM = f"[{LETTERS}0-9]"
PLATE_PATTERN = re.compile(
    rf"^[{PROVINCES}](?:[{LETTERS}]("
    rf"{_ALNUM}{{5}}"  # blue and yellow: 京A12345
    rf"|[DF]{_ALNUM}\d{{4}}|\d{{5}}[DF]"  # green new-energy, small car / large vehicle: 京AD12345, 京A12345D
    rf"|{_ALNUM}{{4}}[学警挂领港澳试超]"  # learner, police, trailer, consulate, HK/Macau, test cars
    r")"
    r"|\d{7})$"  # farm and low-speed vehicles (double-row): province and two digits over five digits, 皖11 49885
)
SEPARATORS = re.compile(r"[\s·•.\-_:：・]")
_PATTERN_CHARS = re.compile(r"^[0-9A-Z\u4e00-\u9fff?*]+$")
MAX_PLATE_CHARS = 10

# The characters plate readers really confuse; a substitution inside one group costs half (reader_distance).
CONFUSIONS = ("0ODQ", "1IL", "8B", "2Z", "5S", "6G")
_CONFUSED = {(a, b) for group in CONFUSIONS for a in group for b in group if a != b}


class PlateMatch(StrEnum):
    """How a plate query or watchlist entry matches plates."""

    EXACT = "exact"
    WILDCARD = "wildcard"  # `?` one character, `*` any run
    FUZZY = "fuzzy"  # within an edit distance
    SUFFIX = "suffix"  # a known end of the plate (search only)


def normalize_plate(text: str) -> str:
    """Uppercase, full-width to ASCII, and drop the separators readers print between groups."""
    return SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def is_valid_plate(text: str) -> bool:
    return bool(PLATE_PATTERN.match(normalize_plate(text)))


def plate_pattern(query: str, mode: str) -> str:
    """A normalised plate query or watchlist pattern; a malformed one is an InputError, said when it is entered."""
    if mode not in tuple(PlateMatch):
        raise InputError(f"mode must be one of {[m.value for m in PlateMatch]}")
    text = normalize_plate(query or "")
    if not text:
        raise InputError("the plate pattern is empty")
    if not _PATTERN_CHARS.match(text):
        raise InputError(f"{query!r} is not a plate pattern: use letters, digits, province characters, ? and *")
    if mode != PlateMatch.WILDCARD and ("?" in text or "*" in text):
        raise InputError(f"{query!r} has wildcards: use mode (match) 'wildcard'")
    if mode == PlateMatch.WILDCARD and not text.strip("*?"):
        raise InputError("a wildcard pattern needs at least one plate character")
    if len(text.replace("*", "")) > MAX_PLATE_CHARS:
        raise InputError(f"{query!r} is longer than any plate")
    return text


def wildcard_regex(pattern: str, any_char: str = ".") -> str:
    """The regular expression of a wildcard pattern; `any_char` is what `?` and `*` may stand for."""
    return "".join(any_char if c == "?" else any_char + "*" if c == "*" else re.escape(c) for c in pattern)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions all cost 1)."""
    return int(reader_distance(a, b, limit=float(max(len(a), len(b))), confusions=False))


def reader_distance(a: str, b: str, limit: float = 2.0, confusions: bool = True) -> float:
    """Edit distance where, with `confusions`, a substitution within a confusion group (0/O/D/Q, 1/I/L, 8/B,
    2/Z, 5/S, 6/G) costs 0.5. Past `limit` it stops early and answers limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = [float(j) for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        cur = [float(i)]
        for j, cb in enumerate(b, 1):
            sub = 0.0 if ca == cb else (0.5 if confusions and (ca, cb) in _CONFUSED else 1.0)
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + sub))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]
