"""Plate search over the distinct-plate dictionary: exact, wildcard, fuzzy (reader-aware) and known suffix.

There are far fewer distinct plates than sightings, so patterns run over the
dictionary held in memory (refreshed incrementally from the record store), and
sightings are then fetched by the (plate, time) index. Fuzzy search filters
candidates by shared bigrams of the plates with confusable characters folded
together (the q-gram lemma: within k edits two strings share at least len-1-2k
bigrams) and verifies them with an edit distance in which the confusions plate
readers really make cost half.
"""
from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass

import numpy as np

from indexer.store import RecordStore
from models.plate_text import CONFUSIONS, PlateMatch, plate_pattern, reader_distance, wildcard_regex

# Each confusion group read as one character: a confusion then never breaks a bigram, so the q-gram bound
# below only has to allow for the (at most two) full-cost edits.
_CANON = str.maketrans({c: group[0] for group in CONFUSIONS for c in group[1:]})
MODES = tuple(m.value for m in PlateMatch)


@dataclass
class PlateHit:
    plate: str
    score: float  # 1.0 exact; lower with distance
    distance: float = 0.0


class PlateDictionary:
    """Every distinct plate in memory: a sorted list for prefixes, the same as one newline-joined text for
    wildcards (one C regex scan instead of a Python loop per plate), a bigram index for fuzzy candidates."""

    def __init__(self, store: RecordStore):
        self.store = store
        self.plates: list[str] = []
        self.known: set[str] = set()
        self.sorted: list[str] = []
        self.reversed_sorted: list[str] = []
        self.bigrams: dict[str, list[int]] = {}
        self._text: tuple[str, np.ndarray] | None = None  # (sorted plates joined by "\n", start offsets)
        self.last_rowid = 0
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Add the plates stored since the last refresh (cheap when nothing is new)."""
        new = self.store.plates_after(self.last_rowid)
        if not new:
            return
        with self.lock:
            self.last_rowid = new[-1][0]
            new = [row for row in new if row[1] not in self.known]  # a plate deleted by retention and seen again
            for _, plate, _ in new:
                index = len(self.plates)
                self.plates.append(plate)
                self.known.add(plate)
                folded = plate.translate(_CANON)
                for gram in {folded[i:i + 2] for i in range(len(folded) - 1)}:
                    self.bigrams.setdefault(gram, []).append(index)
            if len(new) < 1000:  # a trickle while ingesting: insert in place rather than re-sort
                for _, plate, _ in new:
                    bisect.insort(self.sorted, plate)
                    bisect.insort(self.reversed_sorted, plate[::-1])
            else:
                self.sorted = sorted(self.plates)
                self.reversed_sorted = sorted(p[::-1] for p in self.plates)
            self._text = None

    def _joined(self) -> tuple[str, np.ndarray]:
        if self._text is None:
            lengths = np.fromiter((len(p) + 1 for p in self.sorted), dtype=np.int64, count=len(self.sorted))
            self._text = "\n".join(self.sorted), np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return self._text

    def search(self, query: str, mode: str, limit: int = 50, max_distance: float = 2.0) -> list[PlateHit]:
        text = plate_pattern(query, mode)
        self.refresh()
        with self.lock:
            if mode == PlateMatch.EXACT:
                i = bisect.bisect_left(self.sorted, text)
                return [PlateHit(text, 1.0)] if i < len(self.sorted) and self.sorted[i] == text else []
            if mode == PlateMatch.SUFFIX:
                rev = text[::-1]
                i = bisect.bisect_left(self.reversed_sorted, rev)
                out: list[PlateHit] = []
                while i < len(self.reversed_sorted) and self.reversed_sorted[i].startswith(rev) and len(out) < limit:
                    out.append(PlateHit(self.reversed_sorted[i][::-1], 1.0))
                    i += 1
                return out
            if mode == PlateMatch.WILDCARD:
                return self._wildcard(text, limit)
            return self._fuzzy(text, limit, max_distance)

    def _wildcard(self, text: str, limit: int) -> list[PlateHit]:
        """A known prefix narrows the scan to its slice of the sorted plates; the rest is one regex pass."""
        prefix = re.split(r"[?*]", text, maxsplit=1)[0]
        rx = re.compile("^" + wildcard_regex(text, "[^\n]") + "$", re.MULTILINE)
        joined, offsets = self._joined()
        lo = bisect.bisect_left(self.sorted, prefix)
        hi = bisect.bisect_left(self.sorted, prefix + "\uffff") if prefix else len(self.sorted)
        if lo == hi:
            return []
        end = int(offsets[hi]) - 1 if hi < len(offsets) else len(joined)
        out = []
        for m in rx.finditer(joined, int(offsets[lo]), end):
            out.append(PlateHit(m.group(0), 1.0))
            if len(out) >= limit:
                break
        return out

    def _fuzzy(self, text: str, limit: int, max_distance: float) -> list[PlateHit]:
        folded = text.translate(_CANON)
        grams = [folded[i:i + 2] for i in range(len(folded) - 1)]
        need = max(1, len(set(grams)) - 2 * int(max_distance))  # at most int(max_distance) full-cost edits
        postings = [np.asarray(self.bigrams[g], dtype=np.int64) for g in set(grams) if g in self.bigrams]
        if not postings:
            return []
        counts = np.bincount(np.concatenate(postings), minlength=len(self.plates))
        candidates = np.flatnonzero(counts >= need)
        found = []
        for i in candidates.tolist():
            d = reader_distance(text, self.plates[i], max_distance)
            if d <= max_distance:
                found.append(PlateHit(self.plates[i], round(1.0 - d / (max_distance + 1), 3), d))
        return sorted(found, key=lambda m: (m.distance, m.plate))[:limit]
