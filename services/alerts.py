"""The alert engine: every stored sighting is checked against the active rules, and alerts are delivered.

Matching is indexed so that it costs about the same with 10 or 10,000 entries:
exact plates by dictionary, wildcards by their literal prefix, fuzzy plates by
deletion neighbourhoods (symmetric delete), faces by a FAISS inner-product index.
Delivery never blocks ingestion: alerts are stored with their pending webhook
deliveries in one transaction, pushed to live subscribers, and sent by a worker
thread that retries with exponential back-off and parks what fails as dead letters.
"""
from __future__ import annotations

import asyncio
import csv
import io
import re
import threading
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from itertools import combinations
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import faiss
import httpx
import numpy as np
from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry import Point

from geo.clones import CloneMonitor, CloneSettings
from geo.cotravel import co_travellers
from indexer.alert_store import AlertStore
from indexer.store import RecordStore
from models.plate_text import edit_distance, normalize_plate
from models.records import InputError, Sighting
from models.watchlists import (ENTRY_MATCHES, RULE_KINDS, SEVERITIES, WATCHLIST_KINDS, Alert, Rule, Watchlist,
                               WatchEntry, normalise_plate_pattern, wildcard_regex)

# dlib's published rule is "same person below Euclidean 0.6" on its raw descriptors, whose norms are about
# 1.3–1.6 (mean ≈1.45). Sightline stores unit vectors: 0.6 / 1.45 ≈ 0.41 there, i.e. cosine ≈ 1 - 0.41²/2 ≈ 0.915.
# Measured on ../shared/eval/faces: genuine pairs ≥ 0.928, impostor pairs ≤ 0.918 — a narrow margin.
FACE_MATCH_COSINE = 0.92
COMPANIONS_TTL = timedelta(minutes=10)


def deletions(text: str, k: int) -> set[str]:
    """Every string made by deleting up to k characters (the symmetric-delete key set)."""
    out = {text}
    for n in range(1, min(k, len(text)) + 1):
        out.update("".join(c for i, c in enumerate(text) if i not in drop) for drop in combinations(range(len(text)), n))
    return out


class PlateMatcher:
    """The plate entries of the active watchlists, indexed for one lookup per sighting."""

    def __init__(self, entries: list[WatchEntry]):
        self.exact: dict[str, list[WatchEntry]] = {}
        self.wildcards: dict[str, list[tuple[re.Pattern, WatchEntry]]] = {}  # by literal 2-char prefix, "" = any
        self.fuzzy: dict[str, list[WatchEntry]] = {}
        for e in entries:
            if e.match == "exact":
                self.exact.setdefault(e.value, []).append(e)
            elif e.match == "wildcard":
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
            candidates = {id(e): e for key in deletions(plate, 2) for e in self.fuzzy.get(key, ())}
            found += [e for e in candidates.values() if e not in found and edit_distance(plate, e.value) <= e.tolerance]
        return found


class FaceMatcher:
    """Enrolled faces in an exact inner-product index; a match is cosine ≥ FACE_MATCH_COSINE."""

    def __init__(self, entries: list[tuple[WatchEntry, np.ndarray]]):
        self.entries = [e for e, _ in entries]
        self.index = faiss.IndexFlatIP(128)
        if entries:
            self.index.add(np.stack([v for _, v in entries]).astype(np.float32))

    def match(self, vector: np.ndarray, k: int = 5) -> list[tuple[WatchEntry, float]]:
        if not self.entries:
            return []
        scores, ids = self.index.search(vector.reshape(1, -1).astype(np.float32), min(k, len(self.entries)))
        return [(self.entries[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and s >= FACE_MATCH_COSINE]


def attribute_match(entry: WatchEntry, sighting: Sighting) -> bool:
    attrs = asdict(sighting.attributes)
    wanted = dict(entry.conditions)
    kind = wanted.pop("kind", None)
    return (kind is None or kind == sighting.kind) and all(attrs.get(k) == v for k, v in wanted.items())


class AlertBroadcaster:
    """Live subscribers (SSE clients): each an asyncio queue fed from the ingest threads."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]

    def publish(self, payload: dict) -> None:
        with self._lock:
            targets = list(self._subscribers)
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, payload)
            except RuntimeError:  # that subscriber's loop has closed
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue, payload: dict) -> None:
    if not queue.full():  # a subscriber that stopped reading misses live items; the store keeps them all
        queue.put_nowait(payload)


def alert_json(alert: Alert) -> dict:
    out = asdict(alert)
    for key in ("ts", "raised_at", "acked_at"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


class WebhookDispatcher(threading.Thread):
    """Sends pending deliveries; a failure is retried after base·2^attempts seconds, dead after max_attempts."""

    def __init__(self, store: AlertStore, base_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 max_attempts: int = 12, timeout_s: float = 5.0):
        super().__init__(daemon=True, name="webhooks")
        self.store, self.base, self.max_delay, self.max_attempts = store, base_delay_s, max_delay_s, max_attempts
        self.client = httpx.Client(timeout=timeout_s)
        self.wake, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for alert_id, webhook_id, url, attempts in self.store.due_deliveries():
                self._send(alert_id, webhook_id, url, attempts)
            self.wake.wait(0.25)
            self.wake.clear()

    def _send(self, alert_id: str, webhook_id: str, url: str, attempts: int) -> None:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            return
        try:
            response = self.client.post(url, json=alert_json(alert), headers={"Idempotency-Key": alert_id})
            if 200 <= response.status_code < 300:
                self.store.delivery_done(alert_id, webhook_id)
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if attempts + 1 < self.max_attempts:
            retry_at = datetime.now(timezone.utc) + timedelta(seconds=min(self.max_delay, self.base * 2 ** attempts))
        self.store.delivery_failed(alert_id, webhook_id, error, retry_at)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=10)
        self.client.close()


class AlertEngine:
    """Holds the compiled rules; `check` runs on every stored sighting (the ingest hook)."""

    def __init__(self, store: AlertStore, records: RecordStore, face_embed: Callable[[bytes], np.ndarray] | None = None):
        self.store, self.records, self.face_embed = store, records, face_embed
        self.broadcaster = AlertBroadcaster()
        self.dispatcher = WebhookDispatcher(store)
        self._lock = threading.RLock()
        self._cooldown: dict[tuple[str, str, str], datetime] = {}
        for a in store.alerts(since=datetime.now(timezone.utc) - timedelta(days=1), limit=100_000):
            self._cooldown.setdefault((a.rule_id, a.target, a.camera_id), a.ts)
        self.reload()

    def start(self) -> None:
        self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()

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
                if w.kind == "plate":
                    self.plates[wid] = PlateMatcher([e for e, _ in mine])
                elif w.kind == "face":
                    self.faces[wid] = FaceMatcher([(e, f) for e, f in mine if f is not None])
                else:
                    self.attributes[wid] = [e for e, _ in mine]
            self.rules = [r for r in self.store.rules() if r.active]
            cameras = self.records.list_cameras()
            clone_rules = [r for r in self.rules if r.kind == "cloned_plate"]
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

    def create_watchlist(self, name: str, kind: str, description: str = "", created_by: str = "") -> Watchlist:
        if not name.strip():
            raise InputError("a watchlist needs a name")
        if kind not in WATCHLIST_KINDS:
            raise InputError(f"watchlist kind must be one of {WATCHLIST_KINDS}")
        if any(w.name == name for w in self.store.watchlists()):
            raise InputError(f"a watchlist named {name!r} exists already")
        w = Watchlist(uuid.uuid4().hex[:12], name.strip(), kind, description, created_by)
        self.store.add_watchlist(w)
        self.reload()
        return w

    def _watchlist(self, watchlist_id: str) -> Watchlist:
        w = next((w for w in self.store.watchlists() if w.id == watchlist_id), None)
        if w is None:
            raise LookupError(f"no watchlist {watchlist_id}")
        return w

    def add_entries(self, watchlist_id: str, entries: list[dict]) -> list[WatchEntry]:
        """Plate or attribute entries; every one is checked before any is stored (all or nothing)."""
        w = self._watchlist(watchlist_id)
        if w.kind == "face":
            raise InputError("face entries are enrolled from photos (POST /watchlists/{id}/faces)")
        made = [self._entry(w, n, e) for n, e in enumerate(entries, start=1)]
        self.store.add_entries(made, [None] * len(made))
        self.reload()
        return made

    @staticmethod
    def _who(n: int, raw: dict) -> tuple[str, str]:
        """Every entry says why it is watched and who put it there."""
        reason = str(raw.get("reason") or "").strip()
        if not reason:
            raise InputError(f"entry {n}: a reason is required (why is this on the watchlist?)")
        created_by = str(raw.get("created_by") or "").strip()
        if not created_by:
            raise InputError(f"entry {n}: created_by is required")
        return reason, created_by

    def _entry(self, w: Watchlist, n: int, raw: dict) -> WatchEntry:
        reason, created_by = self._who(n, raw)
        if w.kind == "attribute":
            conditions = raw.get("conditions")
            if not isinstance(conditions, dict) or not conditions:
                raise InputError(f"entry {n}: attribute entries need a non-empty 'conditions' object")
            return WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value=str(raw.get("value") or ""),
                              conditions=conditions)
        match = str(raw.get("match") or "exact")
        if match not in ENTRY_MATCHES:
            raise InputError(f"entry {n}: match must be one of {ENTRY_MATCHES}")
        tolerance = int(raw.get("tolerance", 1))
        if match == "fuzzy" and not 1 <= tolerance <= 2:
            raise InputError(f"entry {n}: fuzzy tolerance must be 1 or 2")
        try:
            value = normalise_plate_pattern(str(raw.get("value") or ""), match)
        except InputError as exc:
            raise InputError(f"entry {n}: {exc}") from exc
        return WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value, match, tolerance)

    def enrol_face(self, watchlist_id: str, photos: list[bytes], label: str, reason: str, created_by: str) -> WatchEntry:
        """One entry per person: the mean of the faces found in the photos (each photo must show a face)."""
        w = self._watchlist(watchlist_id)
        if w.kind != "face":
            raise InputError(f"watchlist {w.name!r} holds {w.kind} entries, not faces")
        reason, created_by = self._who(1, {"reason": reason, "created_by": created_by})
        if not photos or self.face_embed is None:
            raise InputError("give at least one photo of the face")
        vectors = [self.face_embed(p) for p in photos]
        mean = np.mean(vectors, axis=0)
        entry = WatchEntry(uuid.uuid4().hex[:12], w.id, reason, created_by, value=label or "face")
        self.store.add_entries([entry], [mean / np.linalg.norm(mean)])
        self.reload()
        return entry

    def put_rule(self, rule: Rule) -> Rule:
        if rule.kind not in RULE_KINDS:
            raise InputError(f"rule kind must be one of {RULE_KINDS}")
        if rule.severity not in SEVERITIES:
            raise InputError(f"severity must be one of {SEVERITIES}")
        if rule.kind == "co_traveller":
            rule.target_plate = normalize_plate(rule.target_plate or "")
            if not rule.target_plate:
                raise InputError("a co_traveller rule needs target_plate")
        if rule.kind in ("watchlist", "not_on_whitelist"):
            if not rule.watchlist_id:
                raise InputError(f"a {rule.kind} rule needs a watchlist_id")
            try:
                w = self._watchlist(rule.watchlist_id)
            except LookupError as exc:
                raise InputError(str(exc)) from exc
            if rule.kind == "not_on_whitelist" and w.kind != "plate":
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
        self.reload()
        return rule

    # evaluation ------------------------------------------------------------------------------------
    def check(self, sightings: list[Sighting], vectors: dict[str, np.ndarray] | None = None) -> list[Alert]:
        """Evaluate the rules on newly stored sightings (faces need their vectors); returns raised alerts."""
        raised = []
        with self._lock:
            for s in sightings:
                memo: dict[str, list] = {}  # one lookup per watchlist per sighting, however many rules share it
                if self.clone_monitor is not None and s.kind == "vehicle":
                    case = self.clone_monitor.check(s)
                    memo["cloned_plate"] = [case] if case else []
                for rule in self.rules:
                    if self._in_scope(rule, s):
                        for target, details in self._matches(rule, s, vectors or {}, memo):
                            alert = self._raise(rule, s, target, details)
                            if alert:
                                raised.append(alert)
        for alert in raised:
            self.broadcaster.publish(alert_json(alert))
        if raised:
            self.dispatcher.wake.set()
        return raised

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
                 ) -> list[tuple[str, dict]]:
        plate = getattr(s.attributes, "plate", None)
        plate_ok = plate and (getattr(s.attributes, "plate_score", 0) or 0) >= rule.min_confidence
        wid = rule.watchlist_id or ""
        if rule.kind == "co_traveller":
            if plate_ok and plate in self._companions_of(rule):
                return [(plate, {"target_plate": rule.target_plate, "reason": "travels with the target"})]
            return []
        if rule.kind == "cloned_plate":
            return [(c.plate, {"speed_kmh": round(c.speed_kmh, 1), "distance_m": round(c.distance_m),
                               "other_sighting_id": c.pair[0].sighting_id, "other_camera_id": c.pair[0].camera_id,
                               "appearance": c.appearance, "reason": "plate seen too far away too soon"})
                    for c in memo.get("cloned_plate", []) if plate_ok]
        if wid in self.plates and plate_ok:
            if wid not in memo:
                memo[wid] = self.plates[wid].match(plate)
            if rule.kind == "not_on_whitelist":
                return [] if memo[wid] else [(plate, {"reason": "not on the whitelist"})]
            return [(plate, {"entry_id": e.id, "pattern": e.value, "match": e.match, "reason": e.reason})
                    for e in memo[wid][:1]]
        if wid in self.faces and s.kind == "face" and s.id in vectors:
            if (getattr(s.attributes, "quality", 0) or 0) < rule.min_confidence:
                return []
            if wid not in memo:
                memo[wid] = self.faces[wid].match(vectors[s.id])
            return [(e.value, {"entry_id": e.id, "similarity": round(score, 3), "reason": e.reason})
                    for e, score in memo[wid][:1]]
        if wid in self.attributes and s.det_score >= rule.min_confidence:
            return [(e.value or "attributes", {"entry_id": e.id, "conditions": e.conditions, "reason": e.reason})
                    for e in self.attributes[wid] if attribute_match(e, s)][:1]
        return []

    def _raise(self, rule: Rule, s: Sighting, target: str, details: dict) -> Alert | None:
        key = (rule.id, target, s.camera_id)
        last = self._cooldown.get(key)
        if last is not None and abs((s.ts - last).total_seconds()) < rule.cooldown_s:
            return None  # one alert per rule, target and camera within the cool-down
        self._cooldown[key] = s.ts
        alert = Alert(uuid.uuid4().hex, rule.id, s.id, s.camera_id, s.ts, datetime.now(timezone.utc), rule.severity,
                      target, {**details, "rule": rule.name, "kind": s.kind}, s.crop)
        self.store.add_alert(alert)
        return alert


CSV_FIELDS = ("value", "match", "tolerance", "reason", "created_by")


def entries_to_csv(entries: list[WatchEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for e in entries:
        writer.writerow([e.value, e.match, e.tolerance, e.reason, e.created_by])
    return out.getvalue()


def entries_from_csv(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"value", "reason", "created_by"} - set(reader.fieldnames or [])
    if missing:
        raise InputError(f"the CSV lacks the column(s) {sorted(missing)}; columns are {CSV_FIELDS}")
    return [dict(row) for row in reader]


def embed_face_photo(pipeline, data: bytes) -> np.ndarray:  # noqa: ANN001 - models.pipeline.Pipeline
    """The face vector of an enrolment photo: its largest, surest face; a photo without one is refused."""
    from models.imageops import decode_image

    frame = decode_image(data)
    faces = pipeline.face_detector.detect(frame) if pipeline.face_detector else []
    if not faces:
        raise InputError("no face was found in the enrolment photo")
    best = max(faces, key=lambda f: f.bbox.area * f.score)
    return pipeline.face_embedder.embed_faces(frame, [best.bbox])[0]


def attach_alerts(system, ingestor) -> AlertEngine:  # noqa: ANN001 - services.system.Sightline, services.ingest.Ingestor
    """Open the alert store beside the data and hook the engine into ingestion."""
    store = AlertStore(system.settings.data_dir / "alerts.db")
    engine = AlertEngine(store, system.store, face_embed=lambda data: embed_face_photo(system.pipeline, data))
    ingestor.listeners.append(engine.check)
    return engine
