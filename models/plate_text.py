"""Chinese plate text: the format, normalisation and edit distance — no models, cheap to import."""
from __future__ import annotations

import re
import unicodedata

PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O
_ALNUM = f"[{LETTERS}0-9]"
PLATE_PATTERN = re.compile(
    rf"^[{PROVINCES}][{LETTERS}]("
    rf"{_ALNUM}{{5}}"  # blue and yellow: 京A12345
    rf"|[DF]{_ALNUM}\d{{4}}|\d{{5}}[DF]"  # green new-energy, small car / large vehicle: 京AD12345, 京A12345D
    rf"|{_ALNUM}{{4}}[学警挂领港澳试超]"  # learner, police, trailer, consulate, HK/Macau, test cars
    r")$"
)
SEPARATORS = re.compile(r"[\s·•.\-_:：・]")


def normalize_plate(text: str) -> str:
    """Uppercase, full-width to ASCII, and drop the separators readers print between groups."""
    return SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def is_valid_plate(text: str) -> bool:
    return bool(PLATE_PATTERN.match(normalize_plate(text)))


