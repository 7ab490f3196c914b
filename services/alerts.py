"""Rule evaluation: every stored sighting is checked against the active rules, and alerts are raised.

Matching is indexed so that it costs about the same with 10 or 10,000 entries:
exact plates by dictionary, wildcards by their literal prefix, fuzzy plates by
deletion neighbourhoods (symmetric delete), faces by a FAISS inner-product index;
and a sighting looks each watchlist up once, visiting only the rules of the lists
it matched, so 100 rules over two lists cost about two lookups. Watchlists and
rules are changed through services.watchlists, which recompiles the engine after
each change (queue workers, other processes, recompile every few seconds:
services/worker.py); the alerts one sighting raises are stored in one write, then
go to services.delivery.
"""
from __future__ import annotations

import re
import threading
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from itertools import combinations
from zoneinfo import ZoneInfo

import faiss
import numpy as np
from shapely import wkt
from shapely.geometry import Point

from geo.clones import CloneMonitor, CloneSettings
from geo.cotravel import co_travellers
from indexer.alert_store import AlertStore
from indexer.store import RecordStore
from models.plate_text import PlateMatch, edit_distance, wildcard_regex
from models.records import Sighting, SightingKind
from models.spaces import FACE_MATCH_COSINE, SPACES
from models.watchlists import Alert, Rule, RuleKind, WatchEntry, WatchlistKind
from services.delivery import AlertDelivery

COMPANIONS_TTL = timedelta(minutes=10)
Details = dict[str, object]


def deletions(text: str, k: int) -> set[str]:
    """Every string made by deleting up to k characters (the symmetric-delete key set)."""
    out = {text}
    for n in range(1, min(k, len(text)) + 1):
        out.update("".join(c for i, c in enumerate(text) if i not in drop)
                   for drop in combinations(range(len(text)), n))
    return out


class PlateMatcher:
    """The plate entries of the active watchlists, indexed for one lookup per sighting."""

    def __init__(self, entries: list[WatchEntry]):
        self.exact: dict[str, list[WatchEntry]] = {}
        self.wildcards: dict[str, list[tuple[re.Pattern, WatchEntry]]] = {}  # by literal 2-char prefix, "" = any
        self.fuzzy: dict[str, list[WatchEntry]] = {}
        self.tolerance = max((e.tolerance for e in entries if e.match == PlateMatch.FUZZY), default=0)
        for e in entries:
            if e.match == PlateMatch.EXACT:
                self.exact.setdefault(e.value, []).append(e)
            elif e.match == PlateMatch.WILDCARD:
                prefix = e.value[:2] if re.match(r"^[^?*]{2}", e.value) else ""
                self.wildcards.setdefault(prefix, []).append((re.compile(wildcard_regex(e.value)), e))
            else:
                for key in deletions(e.value, e.tolerance):
                    self.fuzzy.setdefault(key, []).append(e)

    def match(self, plate: str) -> list[WatchEntry]:
        found = list(self.exact.get(plate, ()))
        for prefix in (plate[:2], ""):
            found += [e for rx, e in self.wildcards.get(prefix, ()) if rx.fullmatch(plate)]
        if self.fuzzy:
            candidates = {id(e): e for key in deletions(plate, self.tolerance) for e in self.fuzzy.get(key, ())}
            found += [e for e in candidates.values() if e not in found and edit_distance(plate, e.value) <= e.tolerance]
        return found


class FaceMatcher:
    """Enrolled faces in an exact inner-product index; a match is cosine ≥ FACE_MATCH_COSINE."""

    def __init__(self, entries: list[tuple[WatchEntry, np.ndarray]]):
        self.entries = [e for e, _ in entries]
        self.index = faiss.IndexFlatIP(SPACES[SightingKind.FACE])
        if entries:
            self.index.add(np.stack([v for _, v in entries]).astype(np.float32))

    def match(self, vector: np.ndarray, k: int = 5) -> list[tuple[WatchEntry, float]]:
        if not self.entries:
            return []
        scores, ids = self.index.search(vector.reshape(1, -1).astype(np.float32), min(k, len(self.entries)))
        return [(self.entries[i], float(s)) for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0 and s >= FACE_MATCH_COSINE]


def attribute_match(entry: WatchEntry, sighting: Sighting) -> bool:
    attrs = asdict(sighting.attributes)
    wanted = dict(entry.conditions)
    kind = wanted.pop("kind", None)
    return (kind is None or kind == sighting.kind) and all(attrs.get(k) == v for k, v in wanted.items())


class RuleEngine:
    """Holds the compiled rules; `check` runs on every committed sighting (the ingest hook)."""

    def __init__(self, store: AlertStore, records: RecordStore, delivery: AlertDelivery):
        self.store, self.records, self.delivery = store, records, delivery
        self._lock = threading.RLock()
        self._cooldown: dict[tuple[str, str, str], datetime] = {}
        for a in store.alerts(since=datetime.now(timezone.utc) - timedelta(days=1), limit=100_000):
            self._cooldown.setdefault((a.rule_id, a.target, a.camera_id), a.ts)
        self.reload()

    # configuration ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Recompile matchers and rule scopes after any change to watchlists, entries, rules or cameras."""
        with self._lock:
            lists = {w.id: w for w in self.store.watchlists()}
            entries = self.store.entries()
            self.lists = lists
            self.plates: dict[str, PlateMatcher] = {}
            self.faces: dict[str, FaceMatcher] = {}
            self.attributes: dict[str, list[WatchEntry]] = {}
            for wid, w in lists.items():
                mine = [(e, f) for e, f in entries if e.watchlist_id == wid]
                if w.kind == WatchlistKind.PLATE:
                    self.plates[wid] = PlateMatcher([e for e, _ in mine])
                elif w.kind == WatchlistKind.FACE:
                    self.faces[wid] = FaceMatcher([(e, f) for e, f in mine if f is not None])
                else:
                    self.attributes[wid] = [e for e, _ in mine]
            self.rules = [r for r in self.store.rules() if r.active]
            # Watchlist rules by their list: a sighting that matches no entry of a list (nearly every sighting)
            # passes all that list's rules with one lookup, so 100 rules cost about what 2 lists do.
            self.by_list: dict[str, list[Rule]] = {}
            for r in self.rules:
                if r.kind == RuleKind.WATCHLIST and r.watchlist_id:
                    self.by_list.setdefault(r.watchlist_id, []).append(r)
            self.other_rules = [r for r in self.rules if r.kind != RuleKind.WATCHLIST]
            cameras = self.records.list_cameras()
            clone_rules = [r for r in self.rules if r.kind == RuleKind.CLONED_PLATE]
            # One streaming clone check for all clone rules; the strictest confidence any of them asks for.
            self.clone_monitor = CloneMonitor({c.id: c for c in cameras}, CloneSettings(
                min_plate_score=min(r.min_confidence for r in clone_rules) or 0.8)) if clone_rules else None
            self.companions: dict[str, set[str]] = {}
            self.companions_at = datetime.min.replace(tzinfo=timezone.utc)
            self.scopes: dict[str, set[str] | None] = {}
            for r in self.rules:
                scope = set(r.camera_ids) if r.camera_ids else None
                if r.area_wkt:
                    area = wkt.loads(r.area_wkt)
                    inside = {c.id for c in cameras if area.covers(Point(c.lon, c.lat))}
                    scope = inside if scope is None else scope & inside
                self.scopes[r.id] = scope

    # evaluation ------------------------------------------------------------------------------------
    def check(self, sightings: list[Sighting], vectors: dict[str, np.ndarray] | None = None) -> list[Alert]:
        """Evaluate the rules on newly stored sightings (faces need their vectors); returns raised alerts."""
        raised: list[Alert] = []
        vectors = vectors or {}
        with self._lock:
            for s in sightings:
                memo: dict[str, list] = {}  # one lookup per watchlist per sighting, however many rules share it
                if self.clone_monitor is not None and s.kind == SightingKind.VEHICLE:
                    case = self.clone_monitor.check(s)
                    memo["cloned_plate"] = [case] if case else []
                candidates = [r for wid, rules in self.by_list.items() if self._hits(wid, s, vectors, memo)
                              for r in rules]
                for rule in candidates + self.other_rules:
                    if self._in_scope(rule, s):
                        for target, details in self._matches(rule, s, vectors, memo):
                            alert = self._raise(rule, s, target, details)
                            if alert:
                                raised.append(alert)
            self.store.add_alerts(raised)  # one write for them all: the first is not kept waiting by the others
        self.delivery.deliver(raised)
        return raised

    def _hits(self, wid: str, s: Sighting, vectors: dict[str, np.ndarray], memo: dict[str, list]) -> list:
        """The entries of list `wid` that the sighting matches before any rule's confidence, scope or cool-down
        (plates: entries; faces: (entry, similarity)); looked up once per sighting and list."""
        if wid not in memo:
            plate = getattr(s.attributes, "plate", None)
            if wid in self.plates:
                memo[wid] = self.plates[wid].match(plate) if plate else []
            elif wid in self.faces:
                memo[wid] = (self.faces[wid].match(vectors[s.id])
                             if s.kind == SightingKind.FACE and s.id in vectors else [])
            else:
                memo[wid] = [e for e in self.attributes.get(wid, ()) if attribute_match(e, s)]
        return memo[wid]

    def _companions_of(self, rule: Rule) -> set[str]:
        """The target's co-travellers over the past week, recomputed every COMPANIONS_TTL (a few ms each)."""
        now = datetime.now(timezone.utc)
        if now - self.companions_at > COMPANIONS_TTL:
            self.companions, self.companions_at = {}, now
        if rule.id not in self.companions:
            found = co_travellers(self.records, rule.target_plate or "", now - timedelta(days=7), now)
            self.companions[rule.id] = {c.plate for c in found}
        return self.companions[rule.id]

    def _in_scope(self, rule: Rule, s: Sighting) -> bool:
        scope = self.scopes.get(rule.id)
        if scope is not None and s.camera_id not in scope:
            return False
        if rule.time_from is not None and rule.time_to is not None:
            local = s.ts.astimezone(ZoneInfo(rule.tz)).time()
            inside = (rule.time_from <= local < rule.time_to if rule.time_from <= rule.time_to
                      else local >= rule.time_from or local < rule.time_to)  # a window over midnight
            if not inside:
                return False
        return True

    def _matches(self, rule: Rule, s: Sighting, vectors: dict[str, np.ndarray], memo: dict[str, list]
                 ) -> list[tuple[str, Details]]:
        plate: str = getattr(s.attributes, "plate", None) or ""
        plate_ok = bool(plate) and (getattr(s.attributes, "plate_score", 0) or 0) >= rule.min_confidence
        wid = rule.watchlist_id or ""
        if rule.kind == RuleKind.CO_TRAVELLER:
            if plate_ok and plate in self._companions_of(rule):
                return [(plate, {"target_plate": rule.target_plate, "reason": "travels with the target"})]
            return []
        if rule.kind == RuleKind.CLONED_PLATE:
            return [(c.plate, {"speed_kmh": round(c.speed_kmh, 1), "distance_m": round(c.distance_m),
                               "other_sighting_id": c.pair[0].sighting_id, "other_camera_id": c.pair[0].camera_id,
                               "appearance": c.appearance, "reason": "plate seen too far away too soon"})
                    for c in memo.get("cloned_plate", []) if plate_ok]
        if wid in self.plates and plate_ok:
            if rule.kind == RuleKind.NOT_ON_WHITELIST:
                return [] if self._hits(wid, s, vectors, memo) else [(plate, {"reason": "not on the whitelist"})]
            return [(plate, {"entry_id": e.id, "pattern": e.value, "match": e.match, "reason": e.reason})
                    for e in self._hits(wid, s, vectors, memo)[:1]]
        if wid in self.faces and s.kind == SightingKind.FACE and s.id in vectors:
            if (getattr(s.attributes, "quality", 0) or 0) < rule.min_confidence:
                return []
            return [(e.value, {"entry_id": e.id, "similarity": round(score, 3), "reason": e.reason})
                    for e, score in self._hits(wid, s, vectors, memo)[:1]]
        if wid in self.attributes and s.det_score >= rule.min_confidence:
            return [(e.value or "attributes", {"entry_id": e.id, "conditions": e.conditions, "reason": e.reason})
                    for e in self._hits(wid, s, vectors, memo)[:1]]
        return []

    def _raise(self, rule: Rule, s: Sighting, target: str, details: Details) -> Alert | None:
        """The alert, unless the rule's cool-down holds it back; `check` stores all a batch raises in one write."""
        key = (rule.id, target, s.camera_id)
        last = self._cooldown.get(key)
        if last is not None and abs((s.ts - last).total_seconds()) < rule.cooldown_s:
            return None  # one alert per rule, target and camera within the cool-down
        self._cooldown[key] = s.ts
        return Alert(uuid.uuid4().hex, rule.id, s.id, s.camera_id, s.ts, datetime.now(timezone.utc), rule.severity,
                     target, {**details, "rule": rule.name, "kind": s.kind}, s.crop)
