"""Watchlists, their entries and the rules over them: every change is checked, stored, and the rule
engine recompiled, so no caller has to remember to keep alerts current."""
from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from shapely import wkt
from shapely.errors import ShapelyError

from indexer.alert_store import AlertStore
from models.plate_text import PlateMatch, normalize_plate, plate_pattern
from models.records import InputError
from models.watchlists import ENTRY_MATCHES, Rule, RuleKind, WatchEntry, Watchlist, WatchlistKind, choice
from services.alerts import RuleEngine
from services.csvsafe import csv_text, original_cell

CSV_FIELDS = ("value", "match", "tolerance", "reason", "created_by")


@dataclass
class EntrySpec:
    """A plate pattern or attribute condition to watch, as a user gives it: always with why and by whom."""

    reason: str
    created_by: str
    value: str = ""
    match: str = PlateMatch.EXACT
    tolerance: int = 1
    conditions: dict[str, object] = field(default_factory=dict)


class WatchlistService:
    def __init__(self, store: AlertStore, engine: RuleEngine, face_vector: Callable[[bytes], np.ndarray]):
        self.store, self.engine, self.face_vector = store, engine, face_vector

    def all(self) -> list[Watchlist]:
        return self.store.watchlists()

    def get(self, watchlist_id: str) -> Watchlist:
        """The watchlist with this id; LookupError when there is none."""
        w = next((w for w in self.store.watchlists() if w.id == watchlist_id), None)
        if w is None:
            raise LookupError(f"no watchlist {watchlist_id}")
        return w

    def find(self, name_or_id: str) -> Watchlist:
        """By name or id, for the command line."""
        for w in self.store.watchlists():
            if name_or_id in (w.name, w.id):
                return w
        raise InputError(f"no watchlist named {name_or_id!r} (see `sightline watchlist list`)")

    def entries(self, watchlist_id: str) -> list[WatchEntry]:
        return [e for e, _ in self.store.entries(watchlist_id)]

    def create(self, name: str, kind: str, description: str = "", created_by: str = "") -> Watchlist:
        if not name.strip():
            raise InputError("a watchlist needs a name")
        kind = choice(WatchlistKind, kind, "watchlist kind")
        if any(w.name == name.strip() for w in self.store.watchlists()):
            raise InputError(f"a watchlist named {name!r} exists already")
        w = Watchlist(uuid.uuid4().hex[:12], name.strip(), kind, description, created_by)
        self.store.add_watchlist(w)
        self.engine.reload()
        return w

    def delete(self, watchlist_id: str) -> bool:
        return self._changed(self.store.delete_watchlist(watchlist_id))

    def add_entries(self, watchlist_id: str, specs: list[EntrySpec]) -> list[WatchEntry]:
        """Plate or attribute entries; every one is checked before any is stored (all or nothing)."""
        w = self.get(watchlist_id)
        if w.kind == WatchlistKind.FACE:
            raise InputError("face entries are enrolled from photos (POST /watchlists/{id}/faces)")
        made = [self._entry(w, n, spec) for n, spec in enumerate(specs, start=1)]
        self.store.add_entries(made, [None] * len(made))
        self.engine.reload()
        return made

    def delete_entry(self, entry_id: str) -> bool:
        return self._changed(self.store.delete_entry(entry_id))

    def enrol_face(self, watchlist_id: str, photos: list[bytes], label: str, reason: str, created_by: str
                   ) -> WatchEntry:
        """One entry per person: the mean of the faces found in the photos (each photo must show a face)."""
        w = self.get(watchlist_id)
        if w.kind != WatchlistKind.FACE:
            raise InputError(f"watchlist {w.name!r} holds {w.kind} entries, not faces")
        reason, created_by = _who(1, reason, created_by)
        if not photos:
            raise InputError("give at least one photo of the face")
        mean = np.mean([self.face_vector(p) for p in photos], axis=0)
        entry = WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value=label or "face")
        self.store.add_entries([entry], [mean / np.linalg.norm(mean)])
        self.engine.reload()
        return entry

    def rules(self) -> list[Rule]:
        return self.store.rules()

    def put_rule(self, rule: Rule) -> Rule:
        if rule.kind == RuleKind.CO_TRAVELLER:
            rule.target_plate = normalize_plate(rule.target_plate or "")
            if not rule.target_plate:
                raise InputError("a co_traveller rule needs target_plate")
        if rule.kind in (RuleKind.WATCHLIST, RuleKind.NOT_ON_WHITELIST):
            if not rule.watchlist_id:
                raise InputError(f"a {rule.kind} rule needs a watchlist_id")
            try:
                w = self.get(rule.watchlist_id)
            except LookupError as exc:
                raise InputError(str(exc)) from exc
            if rule.kind == RuleKind.NOT_ON_WHITELIST and w.kind != WatchlistKind.PLATE:
                raise InputError("a whitelist rule needs a plate watchlist")
        if rule.area_wkt:
            try:
                area = wkt.loads(rule.area_wkt)
            except (ShapelyError, ValueError) as exc:
                raise InputError(f"area is not valid WKT: {exc}") from exc
            if area.geom_type not in ("Polygon", "MultiPolygon") or not area.is_valid:
                raise InputError("area must be a valid polygon (lon lat pairs)")
        try:
            ZoneInfo(rule.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InputError(f"unknown time zone {rule.tz!r}") from exc
        if (rule.time_from is None) != (rule.time_to is None):
            raise InputError("give both time_from and time_to, or neither")
        if not 0.0 <= rule.min_confidence <= 1.0:
            raise InputError("min_confidence must be between 0 and 1")
        self.store.put_rule(rule)
        self.engine.reload()
        return rule

    def delete_rule(self, rule_id: str) -> bool:
        return self._changed(self.store.delete_rule(rule_id))

    def cameras_changed(self) -> None:
        """Rule scopes (areas) and the clone check depend on where cameras are."""
        self.engine.reload()

    def _changed(self, done: bool) -> bool:
        if done:
            self.engine.reload()
        return done

    def _entry(self, w: Watchlist, n: int, spec: EntrySpec) -> WatchEntry:
        reason, created_by = _who(n, spec.reason, spec.created_by)
        if w.kind == WatchlistKind.ATTRIBUTE:
            if not isinstance(spec.conditions, dict) or not spec.conditions:
                raise InputError(f"entry {n}: attribute entries need a non-empty 'conditions' object")
            return WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value=spec.value,
                              conditions=spec.conditions)
        if spec.match not in ENTRY_MATCHES:
            raise InputError(f"entry {n}: match must be one of {ENTRY_MATCHES}")
        if spec.match == PlateMatch.FUZZY and not 1 <= spec.tolerance <= 2:
            raise InputError(f"entry {n}: fuzzy tolerance must be 1 or 2")
        try:
            value = plate_pattern(spec.value, spec.match)
        except InputError as exc:
            raise InputError(f"entry {n}: {exc}") from exc
        return WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value, PlateMatch(spec.match),
                          spec.tolerance)


def _who(n: int, reason: str, created_by: str) -> tuple[str, str]:
    """Every entry says why it is watched and who put it there."""
    if not (reason or "").strip():
        raise InputError(f"entry {n}: a reason is required (why is this on the watchlist?)")
    if not (created_by or "").strip():
        raise InputError(f"entry {n}: created_by is required")
    return reason.strip(), created_by.strip()


def entries_to_csv(entries: list[WatchEntry]) -> str:
    """The entries as CSV that `entries_from_csv` reads back; a reason like `=cmd|...` is neutralised (csvsafe)."""
    return csv_text(CSV_FIELDS, ([e.value, e.match, e.tolerance, e.reason, e.created_by] for e in entries))


def entries_from_csv(text: str) -> list[EntrySpec]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"value", "reason", "created_by"} - set(reader.fieldnames or [])
    if missing:
        raise InputError(f"the CSV lacks the column(s) {sorted(missing)}; columns are {CSV_FIELDS}")
    specs = []
    for line, row in enumerate(reader, start=2):
        try:
            tolerance = int(row.get("tolerance") or 1)
        except ValueError:
            raise InputError(f"line {line}: tolerance must be a whole number") from None
        specs.append(EntrySpec(reason=original_cell(row.get("reason") or ""),
                               created_by=original_cell(row.get("created_by") or ""),
                               value=original_cell(row.get("value") or ""), match=row.get("match") or PlateMatch.EXACT,
                               tolerance=tolerance))
    return specs
