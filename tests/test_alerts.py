"""Watchlists and alerts: indexed plate matching, live SSE alerts, webhooks that survive a down receiver,
face enrolment on real eval faces, restarts, and bad input."""
from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from models.plate_text import edit_distance, plate_pattern, wildcard_regex
from models.records import (
    Attributes,
    BBox,
    Camera,
    FaceAttributes,
    InputError,
    PersonAttributes,
    Sighting,
    SightingKind,
    VehicleAttributes,
)
from models.spaces import FACE_MATCH_COSINE
from models.watchlists import Rule, WatchEntry
from services.alerts import PlateMatcher, deletions
from services.api.app import create_app
from services.api.localserver import serving
from services.watchlists import EntrySpec
from tests.conftest import auth_headers, client

CAMERA = {"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21}


def _entry(value: str, match: str, tolerance: int = 1) -> WatchEntry:
    return WatchEntry(id=value, watchlist_id="w", reason="test", created_by="t", value=value, match=match,
                      tolerance=tolerance)


def test_plate_matcher_exact_wildcard_and_fuzzy() -> None:
    matcher = PlateMatcher([_entry("皖AY766D", "exact"), _entry("京A?23*", "wildcard"), _entry("*375", "wildcard"),
                            _entry("沪B12345", "fuzzy", 1), _entry("苏E88888", "fuzzy", 2)])
    assert [e.id for e in matcher.match("皖AY766D")] == ["皖AY766D"]
    assert [e.id for e in matcher.match("京AB2399")] == ["京A?23*"]
    assert [e.id for e in matcher.match("皖AYL375")] == ["*375"]
    assert [e.id for e in matcher.match("沪B12845")] == ["沪B12345"]  # one substitution
    assert [e.id for e in matcher.match("沪B1234")] == ["沪B12345"]  # one deletion
    assert matcher.match("沪B18845") == []  # two edits, tolerance 1
    assert [e.id for e in matcher.match("苏E8B88B")] == ["苏E88888"]
    assert matcher.match("京B12399") == []
    assert len(deletions("ABC", 2)) == 7 and edit_distance("kitten", "sitting") == 3


def test_malformed_plate_patterns_are_refused() -> None:
    for bad, match in [("", "exact"), ("京A 12$45", "exact"), ("京A?2", "exact"), ("**", "wildcard"),
                       ("京A123456789012", "exact")]:
        with pytest.raises(InputError):
            plate_pattern(bad, match)
    assert plate_pattern("京a·12345", "exact") == "京A12345"


class Receiver:
    """A webhook receiver on localhost that records what it gets; it can be started late."""

    def __init__(self, port: int):
        self.port, self.got, self.httpd = port, [], None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frame(client: httpx.Client, path: Path, when: str = "2026-11-02T08:00:00+08:00") -> dict:
    r = client.post("/frames", files={"file": (path.name, path.read_bytes(), "image/jpeg")},
                    data={"camera_id": "gate-1", "captured_at": when})
    assert r.status_code == 201, r.text
    return r.json()


def _sse(url: str, headers: dict[str, str], got: list[dict], ready: threading.Event, stop: threading.Event) -> None:
    with httpx.stream("GET", url + "/alerts/stream", headers=headers, timeout=60) as response:
        for line in response.iter_lines():
            ready.set()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
            if stop.is_set() or len(got) >= 1:
                return


@pytest.mark.models
def test_plate_alert_is_streamed_and_reaches_a_webhook_that_was_down(settings, pipeline, eval_dir: Path) -> None:
    receiver = Receiver(_free_port())
    app = create_app(replace(settings, outbound_allow=("127.0.0.1",)), pipeline)  # the receiver is on loopback
    system = app.state.system
    system.delivery.webhooks.base = 0.2  # fast back-off for the test: 0.2, 0.4, 0.8 s ...
    photos = eval_dir / "plates" / "full"
    with serving(app) as url, client(app, url) as api:
        api.post("/cameras", json=CAMERA)
        wl = api.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "ops"}).json()
        bad = api.post(f"/watchlists/{wl['id']}/entries", json={"value": "皖A$Y", "reason": "x", "created_by": "a"})
        assert bad.status_code == 400 and "characters" in bad.json()["detail"]
        empty = api.post(f"/watchlists/{wl['id']}/entries",
                         json={"value": "皖AY766D", "reason": " ", "created_by": "a"})
        assert empty.status_code == 400 and "reason" in empty.json()["detail"]
        assert api.post(f"/watchlists/{wl['id']}/entries", json={"value": "皖AY7*", "match": "wildcard",
                                                                "reason": "stolen 2026-10-30", "created_by": "ops"}
                        ).status_code == 201
        assert api.post("/rules", json={"name": "x", "watchlist_id": "nope"}).status_code == 400
        assert api.post("/rules", json={"name": "x", "watchlist_id": wl["id"], "area_wkt": "POLYGON((1 2"}
                        ).status_code == 400
        rule = api.post("/rules", json={"name": "stolen cars", "watchlist_id": wl["id"], "severity": "high",
                                        "min_confidence": 0.5}).json()
        hook = api.post("/webhooks", json={"url": f"http://127.0.0.1:{receiver.port}/hook"})  # nobody listens yet
        assert hook.status_code == 201, hook.text

        streamed: list[dict] = []
        ready, stop = threading.Event(), threading.Event()
        viewer = auth_headers(app, "viewer")  # the live alerts are for every role
        listener = threading.Thread(target=_sse, args=(url, viewer, streamed, ready, stop), daemon=True)
        listener.start()
        assert ready.wait(10)
        _frame(api, photos / "0000.jpg")  # 皖AYL375: not on the list
        _frame(api, photos / "0001.jpg")  # 皖AY766D: matches 皖AY7*
        _frame(api, photos / "0001.jpg", "2026-11-02T08:01:00+08:00")  # same frame bytes: a duplicate, no alert
        listener.join(20)
        assert [a["target"] for a in streamed] == ["皖AY766D"] and streamed[0]["rule_id"] == rule["id"]
        alerts = api.get("/alerts").json()
        assert len(alerts) == 1 and alerts[0]["severity"] == "high" and alerts[0]["crop"]

        time.sleep(1.0)  # a few failed attempts while the receiver is down
        pending = system.alert_store.deliveries("pending")
        assert len(pending) == 1 and pending[0]["attempts"] >= 1 and "Connect" in pending[0]["last_error"]
        receiver.start()
        deadline = time.time() + 20
        while not receiver.got and time.time() < deadline:
            time.sleep(0.1)
        assert [a["id"] for a in receiver.got] == [alerts[0]["id"]]
        assert system.alert_store.deliveries("delivered")[0]["alert_id"] == alerts[0]["id"]

        acked = api.post(f"/alerts/{alerts[0]['id']}/ack", json={"user": "duty officer"})
        assert acked.status_code == 200 and acked.json()["acked_by"] == "test-admin"  # the signed-in user
        assert api.post(f"/alerts/{alerts[0]['id']}/ack", json={"user": "x"}).status_code == 409
        exported = api.get(f"/watchlists/{wl['id']}/export").text
        assert "皖AY7*,wildcard" in exported
    receiver.stop()

    restarted = create_app(settings)  # a restart loses no stored alert
    with serving(restarted) as url, client(restarted, url) as api:
        kept = api.get("/alerts").json()
        assert [a["id"] for a in kept] == [alerts[0]["id"]] and kept[0]["acked_by"] == "test-admin"
        assert api.get("/rules").json()[0]["name"] == "stolen cars"


@pytest.mark.models
def test_enrolled_face_alerts_on_another_photo_of_that_person_only(settings, pipeline, eval_dir: Path) -> None:
    app = create_app(settings, pipeline)
    faces = eval_dir / "faces"
    obama = sorted((faces / "barack_obama").iterdir())
    with serving(app) as url, client(app, url, timeout=120) as api:
        api.post("/cameras", json=CAMERA)
        wl = api.post("/watchlists", json={"name": "persons of interest", "kind": "face"}).json()
        no_face = api.post(f"/watchlists/{wl['id']}/faces",
                           files=[("files", ("plate.jpg", (eval_dir / "plates" / "crops" / "0000.jpg").read_bytes()))],
                           data={"reason": "test", "created_by": "ops"})
        assert no_face.status_code == 400 and "no face" in no_face.json()["detail"]
        enrolled = api.post(f"/watchlists/{wl['id']}/faces", files=[("files", (obama[1].name, obama[1].read_bytes()))],
                            data={"reason": "wanted for questioning", "created_by": "ops", "label": "B. Obama"})
        assert enrolled.status_code == 201
        api.post("/rules", json={"name": "faces", "watchlist_id": wl["id"], "cooldown_s": 0})
        others = [sorted(d.iterdir())[0] for d in sorted(faces.iterdir()) if d.name != "barack_obama"]
        for i, photo in enumerate(others):
            _frame(api, photo, f"2026-11-02T08:{i:02d}:00+08:00")
        assert api.get("/alerts").json() == []  # no other identity raises it
        _frame(api, obama[0], "2026-11-02T09:00:00+08:00")
        alerts = api.get("/alerts").json()
        assert [a["target"] for a in alerts] == ["B. Obama"] and alerts[0]["details"]["similarity"] >= 0.92


def test_clone_and_co_traveller_rules_raise_alerts_from_simulated_traffic(settings, eval_dir: Path) -> None:
    """The built-in rule kinds on the city simulator's ground truth (no models needed: sightings are synthetic)."""
    from datetime import datetime, timedelta, timezone

    from geo.simulator import build_city
    from models.watchlists import Rule
    from services.cameras import from_roadnet
    from services.system import Sightline

    system = Sightline(settings)
    cams = from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson")
    system.store.upsert_cameras(cams)
    city = build_city(cams, 120, seed=3, convoys=3, clones=3)
    now = datetime.now(timezone.utc)
    history = list(city.sightings(3, start=now - timedelta(days=7)))
    system.store.add_sightings(history)
    target, followers = next(iter(city.truth.convoys.items()))
    system.watchlists.put_rule(Rule("co", "with the target", kind="co_traveller", target_plate=target, cooldown_s=0))
    system.watchlists.put_rule(Rule("cl", "clones", kind="cloned_plate", cooldown_s=0, severity="high"))
    with pytest.raises(InputError):
        system.watchlists.put_rule(Rule("bad", "no target", kind="co_traveller"))
    recent = list(city.sightings(7, start=now - timedelta(days=7)))  # the stream of a week, as it arrives
    raised = system.rules.check(recent)
    seen_with = {a.target for a in raised if a.rule_id == "co"}
    clones = {a.target for a in raised if a.rule_id == "cl"}
    assert seen_with == followers
    assert clones and clones <= city.truth.cloned_plates
    system.close()


# The rule engine's index (services/alerts.py): watchlist rules grouped by list, each list looked up once ----------
T = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def _plate(rng: random.Random) -> str:
    return rng.choice("京沪皖苏") + rng.choice("AB") + "".join(rng.choice(LETTERS) for _ in range(5))


def _sighting(n: int, kind: str, attributes: Attributes, camera: str = "gate-1", det_score: float = 0.9
              ) -> Sighting:
    return Sighting(f"s{n}", camera, T + timedelta(seconds=n), SightingKind(kind), BBox(0, 0, 10, 10), det_score,
                    attributes)


def _slow_path(rule: Rule, s: Sighting, vectors: dict[str, np.ndarray], kinds: dict[str, str],
               entries: list[tuple[WatchEntry, np.ndarray | None]]) -> set[str]:
    """Every entry of the rule's list the sighting matches, checked one by one (what the index must agree with);
    {""} for a whitelist rule that the plate is missing from."""
    if rule.camera_ids and s.camera_id not in rule.camera_ids:
        return set()
    mine = [(e, f) for e, f in entries if e.watchlist_id == rule.watchlist_id]
    a, kind = s.attributes, kinds[rule.watchlist_id or ""]
    if kind == "plate":
        plate = getattr(a, "plate", None)
        if not plate or (getattr(a, "plate_score", 0) or 0) < rule.min_confidence:
            return set()
        found = {e.id for e, _ in mine if (plate == e.value if e.match == "exact" else
                                           re.fullmatch(wildcard_regex(e.value), plate) if e.match == "wildcard"
                                           else edit_distance(plate, e.value) <= e.tolerance)}
        return ({""} if not found else set()) if rule.kind == "not_on_whitelist" else found
    if kind == "face":
        if s.kind != "face" or (getattr(a, "quality", 0) or 0) < rule.min_confidence:
            return set()
        return {e.id for e, f in mine if f is not None and float(f @ vectors[s.id]) >= FACE_MATCH_COSINE}
    return {e.id for e, _ in mine if s.det_score >= rule.min_confidence
            and all((s.kind if k == "kind" else getattr(a, k, None)) == v for k, v in e.conditions.items())}


def test_the_indexed_rules_raise_exactly_what_checking_every_rule_and_entry_raises(fake_system) -> None:  # noqa: ANN001
    rng, np_rng = random.Random(5), np.random.default_rng(5)
    service, engine = fake_system.watchlists, fake_system.rules
    plates, faces, people = (service.create(n, n) for n in ("plate", "face", "attribute"))
    known = [_plate(rng) for _ in range(60)]
    service.add_entries(plates.id, [EntrySpec("stolen", "t", p, "exact") for p in known[:40]]
                        + [EntrySpec("stolen", "t", p[:4] + "*", "wildcard") for p in known[40:50]]
                        + [EntrySpec("stolen", "t", p, "fuzzy", 1 + i % 2) for i, p in enumerate(known[50:])])
    enrolled = [np_rng.normal(size=128).astype(np.float32) for _ in range(20)]
    enrolled = [v / np.linalg.norm(v) for v in enrolled]
    service.store.add_entries([WatchEntry(f"f{i}", faces.id, "wanted", "t", f"face {i}") for i in range(20)], enrolled)
    service.add_entries(people.id, [EntrySpec("bolo", "t", "hat", conditions={"hat": True}),
                                    EntrySpec("bolo", "t", "bag", conditions={"kind": "person", "bag": True})])
    rules = [Rule(f"r{i}", f"rule {i}", watchlist_id=(plates.id, faces.id, people.id)[i % 3], cooldown_s=0,
                  min_confidence=(0.0, 0.5, 0.8)[i // 3],
                  camera_ids=["gate-2"] if i == 4 else []) for i in range(9)]
    rules += [Rule("white", "not on the list", kind="not_on_whitelist", watchlist_id=plates.id, cooldown_s=0),
              Rule("off", "inactive", watchlist_id=plates.id, cooldown_s=0, active=False)]
    for rule in rules:
        service.put_rule(rule)

    sightings, vectors = [], {}
    for n in range(300):
        camera = rng.choice(["gate-1", "gate-2"])
        if n % 3 == 0:
            plate = rng.choice(known) if rng.random() < 0.6 else _plate(rng)
            if rng.random() < 0.3:  # a misread: one character off
                i = rng.randrange(2, 7)
                plate = plate[:i] + rng.choice(LETTERS) + plate[i + 1:]
            sightings.append(_sighting(n, "vehicle", VehicleAttributes(plate=plate, plate_score=rng.random()), camera))
        elif n % 3 == 1:
            base = rng.choice(enrolled) if rng.random() < 0.5 else np_rng.normal(size=128).astype(np.float32)
            v = base + np_rng.normal(scale=0.02, size=128).astype(np.float32)
            sightings.append(_sighting(n, "face", FaceAttributes(quality=rng.random()), camera))
            vectors[f"s{n}"] = v / np.linalg.norm(v)
        else:
            sightings.append(_sighting(n, "person", PersonAttributes(hat=rng.random() < 0.5, bag=rng.random() < 0.5),
                                       camera, det_score=rng.random()))
    raised = engine.check(sightings, vectors)

    entries, kinds = service.store.entries(), {w.id: w.kind for w in service.all()}
    expected = {(r.id, s.id) for r in rules if r.active for s in sightings
                if _slow_path(r, s, vectors, kinds, entries)}
    assert {(a.rule_id, a.sighting_id) for a in raised} == expected and len(raised) == len(expected)
    assert len({r for r, _ in expected}) == 10  # every active rule, each kind of list, raised something
    for a in raised:  # and the entry each names is one that matches
        s = next(s for s in sightings if s.id == a.sighting_id)
        rule = next(r for r in rules if r.id == a.rule_id)
        assert a.details.get("entry_id", "") in _slow_path(rule, s, vectors, kinds, entries)
    assert fake_system.alert_store.alert_count() == len(raised)  # stored, in one write per check


def test_the_rule_index_follows_every_change_and_another_process_follows_on_reload(fake_system) -> None:  # noqa: ANN001
    from services.alerts import RuleEngine

    service, engine = fake_system.watchlists, fake_system.rules
    other = RuleEngine(fake_system.alert_store, fake_system.store, fake_system.delivery)  # another process's engine
    plates = service.create("stolen", "plate")
    service.put_rule(Rule("r1", "stolen", watchlist_id=plates.id, cooldown_s=0))
    n = iter(range(100))

    def hits(rules: RuleEngine, plate: str) -> list[str]:
        return [a.target for a in rules.check([_sighting(next(n), "vehicle", VehicleAttributes(plate, 0.9))])]

    assert hits(engine, "京A12345") == [] and hits(other, "京A12345") == []
    added = service.add_entries(plates.id, [EntrySpec("stolen", "t", "京A12345", "exact"),
                                            EntrySpec("stolen", "t", "沪B1*", "wildcard")])
    assert hits(engine, "京A12345") == ["京A12345"] and hits(engine, "沪B1XYZ9") == ["沪B1XYZ9"]
    assert hits(other, "京A12345") == []  # its compiled index is stale until it reloads (workers: every few s)
    other.reload()
    assert hits(other, "京A12345") == ["京A12345"]
    service.delete_entry(added[0].id)
    assert hits(engine, "京A12345") == [] and hits(engine, "沪B1XYZ9") == ["沪B1XYZ9"]
    service.put_rule(Rule("r1", "stolen", watchlist_id=plates.id, cooldown_s=0, active=False))
    assert hits(engine, "沪B1XYZ9") == []
    service.put_rule(Rule("r1", "stolen", watchlist_id=plates.id, cooldown_s=0, camera_ids=["gate-1"]))
    assert hits(engine, "沪B1XYZ9") == ["沪B1XYZ9"]
    service.delete(plates.id)
    assert hits(engine, "沪B1XYZ9") == []


def test_the_alerts_bench_signs_in_and_measures_what_it_reports(tmp_path: Path) -> None:
    from services.bench.alerts import bench_alerts
    from services.settings import Settings

    figures = bench_alerts(Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "m", roads_geojson=None),
                           rules=4, entries=30, faces=5, sightings=60, photos_dir=None)
    assert figures["alerts_measured"] == 30  # one per plate on the list, each seen by the signed-in listener
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["sightings_per_s_with_rules"] > 0


@pytest.mark.models
def test_a_double_row_plate_on_a_watchlist_raises_its_alert_and_is_searchable(system, eval_dir: Path) -> None:  # noqa: ANN001
    """A farm light truck's green double-row plate (皖11 over 49885) and a truck's yellow one, read from real photos,
    each alert on its watchlist entry; the farm plate is found by exact, wildcard and fuzzy search."""
    from services.ingest import PhotoJob
    from services.search import Filters

    system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.3, 31.2)])
    photos = eval_dir / "plates" / "double_row"
    for name, plate in (("double_09.png", "皖1149885"), ("double_07.jpg", "渝D00796")):
        wl = system.watchlists.create(f"list {name}", "plate", created_by="ops")
        system.watchlists.add_entries(wl.id, [EntrySpec("farm vehicle reported stolen", "ops", plate, "exact")])
        system.watchlists.put_rule(Rule(f"rule-{name[:9]}", f"stolen {plate}", watchlist_id=wl.id))
        system.ingestor.ingest_one(PhotoJob(name, (photos / name).read_bytes(), "gate-1",
                                            datetime(2026, 11, 2, 8, tzinfo=timezone.utc)))
    assert sorted(a.target for a in system.alert_store.alerts()) == ["渝D00796", "皖1149885"]
    for query, mode in (("皖1149885", "exact"), ("皖11*", "wildcard"), ("皖1149886", "fuzzy")):
        assert [m.plate for m in system.search.plates_like(query, mode, Filters())] == ["皖1149885"], (query, mode)
