"""The HTTP API over real HTTP with the fake pipeline (tests/fakes.py): no weights, a few seconds.

What the models see is scripted per photo, so these tests check the API's own work — storing, searching,
alerting, refusing bad input, documenting itself — not recognition (tests/test_api.py does that with the
real models on real photos).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from models.imageops import decode_image
from models.observations import Detection
from models.records import BBox, Camera, parse_time
from models.spaces import SPACES
from models.tracking import Candidate, Track
from services.api.app import create_app
from services.api.localserver import serving
from services.ingest import PhotoJob
from services.search import Filters
from services.settings import Settings
from tests.conftest import client
from tests.fakes import FakePipeline, face, jpeg, person, unit, vehicle

CAMERAS = [{"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21, "heading_deg": 90, "road": "纪翟路"},
           {"id": "gate-2", "name": "Gate 2", "lon": 121.30, "lat": 31.22}]
MORNING = "2026-11-02T08:00:00+08:00"


@pytest.fixture
def api(tmp_path: Path, model_dir: Path, fake_pipeline: FakePipeline):  # noqa: ANN201
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, roads_geojson=None, max_upload_bytes=2 << 20)
    app = create_app(settings, fake_pipeline)
    with serving(app) as url, client(app, url, timeout=30) as api:  # signed in as an admin, with a case
        assert api.post("/cameras", json=CAMERAS).json() == {"stored": 2}
        yield api


def near(vector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same face in another photo: its vector moved a little (cosine ≈ 0.99)."""
    return vector + rng.normal(scale=0.01, size=vector.shape)


def post_frame(client: httpx.Client, data: bytes, camera: str = "gate-1", captured_at: str = MORNING) -> httpx.Response:
    return client.post("/frames", files={"file": ("photo.jpg", data, "image/jpeg")},
                       data={"camera_id": camera, "captured_at": captured_at})


def stored(client: httpx.Client, data: bytes, camera: str = "gate-1", captured_at: str = MORNING) -> list[dict]:
    r = post_frame(client, data, camera, captured_at)
    assert r.status_code == 201, r.text
    return r.json()["sightings"]


def test_the_fake_pipeline_sees_what_was_scripted_and_embeds_the_pixels() -> None:
    fake = FakePipeline()
    a, b = decode_image(jpeg(1)), decode_image(jpeg(2))
    (seen,) = fake.process([a])[0]  # unscripted: one vehicle covering the frame
    assert seen.kind == "vehicle" and seen.bbox == BBox(0, 0, 128, 96) and seen.space == "vehicle"
    assert seen.vector.shape == (SPACES["vehicle"],) and np.linalg.norm(seen.vector) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(FakePipeline().process([a.copy()])[0][0].vector, seen.vector)  # same photo, same vector
    assert float(seen.vector @ fake.process([b])[0][0].vector) < 0.9  # another photo, another vector
    assert np.allclose(fake.embed_crops([a], "vehicle")[0], seen.vector, atol=1e-6)  # a photo search's probe
    fake.script(jpeg(2), [person(BBox(0, 0, 50, 90), gender="female"), face(BBox(10, 5, 30, 30), parent=0)])
    people, faces = fake.process([b])[0]
    assert (people.kind, people.attributes.gender, faces.kind, faces.parent) == ("person", "female", "face", 0)
    assert people.vector.shape == (SPACES["person"],) and faces.crop.shape == (25, 20, 3)
    assert [d.kind for d in fake.detect([b])[0]] == ["person"] and len(fake.detect_faces(b)) == 1
    assert np.allclose(fake.subject_face(b).vector, faces.vector) and fake.subject_face(a) is None
    fake.script(a, [])
    assert fake.process([a]) == [[]] and fake.frames_seen == 4
    track = Track(1, "vehicle", "car", np.zeros(4, np.float32),
                  candidates=[Candidate(0, Detection("vehicle", "car", BBox(0, 0, 64, 48), 0.8), 0.5, b)])
    (described,) = fake.describe_tracks([track])
    assert described.kind == "vehicle" and described.vector.shape == (SPACES["vehicle"],)


def test_the_fake_system_ingests_and_searches_in_process(fake_system, fake_pipeline: FakePipeline) -> None:  # noqa: ANN001
    fake_system.store.upsert_cameras([Camera(**CAMERAS[0])])
    fake_pipeline.script(jpeg(3), [vehicle(plate="苏E12345", plate_score=0.9)])
    t = parse_time(MORNING)
    report = fake_system.ingestor.ingest([PhotoJob(f"{i}.jpg", jpeg(i), "gate-1", t) for i in (3, 4)])
    assert report.errors == [] and report.stored == 2 and len(fake_system.indexes["vehicle"]) == 2
    plates = fake_system.search.plates_like("苏E12345", "exact", Filters())
    assert [p.plate for p in plates] == ["苏E12345"]
    found = fake_system.search.image(jpeg(4), "vehicle", 1, Filters())
    assert found.results[0].sighting.id == report.results[1].sightings[0].id


def test_batches_commit_while_the_next_runs_and_the_report_keeps_the_input_order(fake_system) -> None:  # noqa: ANN001
    """Ingest overlaps a batch's commit with the models on the next: results still come in input order, a repeat
    of a photo committed a batch earlier reads its sightings back, and everything is stored when the call returns."""
    fake_system.store.upsert_cameras([Camera(**CAMERAS[0])])
    t = parse_time(MORNING)
    seeds = [10, 11, 12, 13, 14, 15, 10, 16, 17, 18, 19]  # batches of 4: the 7th repeats the 1st
    report = fake_system.ingestor.ingest([PhotoJob(f"{n}-{s}.jpg", jpeg(s), "gate-1", t) for n, s in enumerate(seeds)])
    assert [r.source for r in report.results] == [f"{n}-{s}.jpg" for n, s in enumerate(seeds)]
    assert [r.duplicate for r in report.results] == [n == 6 for n in range(len(seeds))]
    assert [s.id for s in report.results[6].sightings] == [s.id for s in report.results[0].sightings] != []
    assert fake_system.store.count() == report.stored == 10 == len(fake_system.indexes["vehicle"])


def test_frames_become_sightings_found_by_plate_and_attributes(api: httpx.Client, fake_pipeline: FakePipeline) -> None:
    assert sorted(c["id"] for c in api.get("/cameras").json()) == ["gate-1", "gate-2"]
    car_photo, street_photo = jpeg(1), jpeg(2)
    fake_pipeline.script(car_photo, [vehicle(plate="京A12345", plate_score=0.95, plate_color="blue",
                                             vehicle_color="red", vehicle_type="car")])
    fake_pipeline.script(street_photo, [
        vehicle(BBox(0, 0, 64, 96), plate="沪B88888", plate_score=0.9, vehicle_color="white", vehicle_type="suv"),
        person(BBox(64, 0, 128, 96), gender="female", upper_color="blue", bag=True)])

    first = post_frame(api, car_photo)
    assert first.status_code == 201 and first.json()["duplicate"] is False
    (car,) = first.json()["sightings"]
    assert car["kind"] == "vehicle" and car["attributes"]["plate"] == "京A12345"
    assert car["ts"] == "2026-11-02T00:00:00+00:00" and car["camera_id"] == "gate-1" and car["vector_id"] is not None
    seen = fake_pipeline.frames_seen
    again = post_frame(api, car_photo)
    assert again.json()["duplicate"] is True and [s["id"] for s in again.json()["sightings"]] == [car["id"]]
    assert fake_pipeline.frames_seen == seen  # a duplicate is recognised by its bytes, never processed again
    street = stored(api, street_photo, "gate-2", "2026-11-02T09:00:00+08:00")
    assert sorted(s["kind"] for s in street) == ["person", "vehicle"]
    assert api.get("/health").json()["sightings"] == 3

    crop = api.get(f"/sightings/{car['id']}/crop")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert api.get(f"/sightings/{car['id']}").json()["attributes"]["vehicle_color"] == "red"
    assert api.get("/sightings", params={"plate": "京a·12345"}).json()["count"] == 1  # normalised

    exact = api.get("/search/plates", params={"q": "京A12345"}).json()["results"]
    assert [(r["plate"], r["sightings_total"]) for r in exact] == [("京A12345", 1)]
    assert exact[0]["sightings"][0]["id"] == car["id"]
    fuzzy = api.get("/search/plates", params={"q": "京A1Z345", "mode": "fuzzy"}).json()["results"]
    assert fuzzy[0]["plate"] == "京A12345" and fuzzy[0]["distance"] == 0.5  # a reader's 2/Z confusion
    wildcard = api.get("/search/plates", params={"q": "沪B*", "mode": "wildcard"}).json()["results"]
    assert [r["plate"] for r in wildcard] == ["沪B88888"]
    elsewhere = api.get("/search/plates", params={"q": "京A12345", "camera_id": "gate-2"}).json()["results"]
    assert elsewhere == []

    white = api.post("/search/attributes", json={"kind": "vehicle", "vehicle_color": "white"}).json()
    assert [s["attributes"]["plate"] for s in white["sightings"]] == ["沪B88888"]
    women = api.post("/search/attributes", json={"kind": "person", "gender": "female", "bag": True}).json()
    assert women["count"] == 1 and women["sightings"][0]["camera_id"] == "gate-2"
    assert api.post("/search/attributes", json={"kind": "person", "camera_ids": ["gate-1"]}).json()["count"] == 0
    window = api.post("/search/attributes", json={"kind": "vehicle", "start": "2026-11-02T08:30:00+08:00",
                                                  "end": "2026-11-02T10:00:00+08:00"}).json()
    assert [s["attributes"]["plate"] for s in window["sightings"]] == ["沪B88888"]


def test_attribute_search_honours_confidence_and_near_colours(api: httpx.Client, fake_pipeline: FakePipeline
                                                              ) -> None:
    photo = jpeg(3)
    fake_pipeline.script(photo, [
        vehicle(BBox(0, 0, 40, 96), plate="京A11111", vehicle_color="silver", vehicle_color_score=0.9),
        vehicle(BBox(40, 0, 80, 96), plate="京A22222", vehicle_color="white", vehicle_color_score=0.35),
        person(BBox(80, 0, 128, 96), upper_color="black", upper_color_score=0.8, lower_color="gray")])
    stored(api, photo)

    def plates(**body: object) -> list[str]:
        found = api.post("/search/attributes", json={"kind": "vehicle", **body})
        assert found.status_code == 200, found.text
        return sorted(s["attributes"]["plate"] for s in found.json()["sightings"])

    assert plates(vehicle_color="white") == ["京A11111", "京A22222"]  # silver ≈ white unless asked for exactly
    assert plates(vehicle_color="white", exact_colors=True) == ["京A22222"]
    assert plates(vehicle_color="silver", exact_colors=True) == ["京A11111"]
    assert plates(vehicle_color="white", near_colors=True) == ["京A11111", "京A22222"]
    assert plates(vehicle_color="white", min_confidence=0.5) == ["京A11111"]
    assert plates(vehicle_color="white", exact_colors=True, min_confidence=0.5) == []
    assert plates(vehicle_color="black") == []  # gray ≈ black only with near_colors
    people = api.post("/search/attributes", json={"kind": "person", "upper_color": "black", "min_confidence": 0.7})
    assert people.json()["count"] == 1
    unsure = api.post("/search/attributes", json={"kind": "person", "lower_color": "gray", "min_confidence": 0.1})
    assert unsure.json()["count"] == 0  # no score recorded: not sure enough for a query that asks for sureness
    refused = api.post("/search/attributes", json={"kind": "vehicle", "min_confidence": 1.5})
    assert refused.status_code in (400, 422) and "min_confidence" in refused.text
    words = api.get("/search/vocabulary").json()
    assert "silver" in words["vehicle_colors"] and "white" in words["near_colors"]["silver"]
    assert words["default_near"] == {"white": ["silver"], "silver": ["gray", "white"], "gray": ["silver"]}


def test_free_text_is_parsed_into_filters_that_find_the_sighting(api: httpx.Client, fake_pipeline: FakePipeline
                                                                   ) -> None:
    photo = jpeg(4)
    fake_pipeline.script(photo, [vehicle(plate="皖AY766D", vehicle_color="white", vehicle_type="car")])
    stored(api, photo, "gate-1", "2026-11-02T09:00:00+08:00")
    parsed = api.get("/search/parse", params={"q": "white SUV on Jidi Road", "tz": "Asia/Shanghai"})
    assert parsed.status_code == 200, parsed.text
    body = parsed.json()
    assert body["kind"] == "vehicle" and body["filters"]["camera_ids"] == ["gate-1"]  # 纪翟路 read as pinyin
    assert {c["field"] for c in body["chips"]} == {"vehicle_color", "vehicle_type", "place"}
    found = api.post("/search/attributes", json={"kind": body["kind"], **body["filters"]}).json()
    assert [s["attributes"]["plate"] for s in found["sightings"]] == ["皖AY766D"]
    assert api.get("/search/parse", params={"q": "car", "tz": "Nowhere/Land"}).status_code == 400
    assert api.get("/search/parse", params={"q": "x" * 301}).status_code in (400, 422)


def test_image_search_finds_the_same_photo_first(api: httpx.Client) -> None:
    photos = [jpeg(10 + i) for i in range(6)]
    ids = [stored(api, p, captured_at=f"2026-11-02T08:0{i}:00+08:00")[0]["id"] for i, p in enumerate(photos)]
    for i in (0, 3, 5):
        r = api.post("/search/image", files={"file": ("q.jpg", photos[i], "image/jpeg")}, data={"kind": "vehicle"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][0]["sighting"]["id"] == ids[i]
        assert body["results"][0]["why"]["appearance"] == pytest.approx(1.0, abs=1e-3)
        assert body["results"][1]["why"]["appearance"] < 0.9  # another photo is another car
        assert body["objects"][0]["label"] == "car"
        # what the photo shows (its colour, read by describe_object) reaches the answer
        assert body["probe"]["vehicle_color"] == body["results"][0]["sighting"]["attributes"]["vehicle_color"]
    narrowed = api.post("/search/image", files={"file": ("q.jpg", photos[2], "image/jpeg")},
                        data={"kind": "vehicle", "filters": json.dumps({"camera_ids": ["gate-2"]})})
    assert narrowed.status_code == 200 and narrowed.json()["results"] == []
    like = api.post("/search/image", files={"file": ("q.jpg", photos[2], "image/jpeg")},
                    data={"kind": "vehicle", "k": "2", "filters": json.dumps({"start": "2026-11-02T08:02:00+08:00"})})
    assert [h["sighting"]["id"] for h in like.json()["results"]][:1] == [ids[2]] and len(like.json()["results"]) == 2


def test_a_person_search_is_expanded_by_the_nearest_stored_person(api: httpx.Client, fake_pipeline: FakePipeline
                                                                   ) -> None:
    """The probe's nearest stored person (another view of them) is averaged into the query, which lifts a third
    view the probe alone ranks below a stranger (models/spaces.py: QUERY_EXPANSION)."""
    probe = jpeg(30)
    fake_pipeline.script(probe, [person()])
    p = fake_pipeline.embed(decode_image(probe), "person")
    e1, e2 = (unit(v - (v @ p) * p) for v in np.random.default_rng(3).standard_normal((2, SPACES["person"])))
    e2 = unit(e2 - (e2 @ e1) * e1)
    views = {"near view": unit(0.9 * p + 0.436 * e1), "far view": unit(0.35 * p + 0.937 * e1),
             "stranger": unit(0.5 * p + 0.866 * e2)}  # cosines to the probe 0.9, 0.35 and 0.5
    ids = {}
    for i, (name, vector) in enumerate(views.items()):
        fake_pipeline.script(photo := jpeg(31 + i), [person(vector=vector)])
        ids[stored(api, photo)[0]["id"]] = name
    found = api.post("/search/image", files={"file": ("q.jpg", probe, "image/jpeg")}, data={"kind": "person"})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert [ids[h["sighting"]["id"]] for h in results] == ["near view", "far view", "stranger"]
    expanded = unit(p + views["near view"])  # the scores are cosines to the expanded query
    for h in results:
        assert h["why"]["appearance"] == pytest.approx(float(expanded @ views[ids[h["sighting"]["id"]]]), abs=1e-3)


def test_face_search_finds_a_scripted_face(api: httpx.Client, fake_pipeline: FakePipeline) -> None:
    rng = np.random.default_rng(7)
    someone = unit(rng.standard_normal(SPACES["face"]))
    scene, probe, stranger = jpeg(20), jpeg(21), jpeg(22)
    fake_pipeline.script(scene, [person(BBox(10, 0, 110, 96), gender="male"),
                                 face(BBox(40, 5, 80, 45), vector=someone, parent=0)])
    fake_pipeline.script(probe, [face(BBox(20, 20, 60, 60), vector=near(someone, rng))])
    fake_pipeline.script(stranger, [face(BBox(20, 20, 60, 60), vector=rng.standard_normal(SPACES["face"]))])
    sightings = {s["kind"]: s for s in stored(api, scene)}
    assert sightings["face"]["attributes"]["person_sighting_id"] == sightings["person"]["id"]
    stored(api, jpeg(23))  # a car, no face

    found = api.post("/search/face", files={"file": ("q.jpg", probe, "image/jpeg")})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert [h["sighting"]["id"] for h in results] == [sightings["face"]["id"]]
    assert results[0]["score"] >= found.json()["threshold"]
    assert api.post("/search/face", files={"file": ("q.jpg", stranger, "image/jpeg")}).json()["results"] == []
    no_face = api.post("/search/face", files={"file": ("q.jpg", jpeg(24), "image/jpeg")})
    assert no_face.status_code == 400 and "no face" in no_face.text


def test_watchlists_and_rules_raise_alerts_on_ingest(api: httpx.Client, fake_pipeline: FakePipeline) -> None:
    stolen = api.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "duty officer"})
    assert stolen.status_code == 201, stolen.text
    wid = stolen.json()["id"]
    entry = api.post(f"/watchlists/{wid}/entries", json={"value": "京A12345", "reason": "reported stolen",
                                                         "created_by": "duty officer"})
    assert entry.status_code == 201, entry.text
    rule = api.post("/rules", json={"name": "stolen cars", "watchlist_id": wid, "severity": "high"})
    assert rule.status_code == 201, rule.text
    assert api.get("/alerts").json() == []

    innocent, wanted = jpeg(30), jpeg(31)
    fake_pipeline.script(innocent, [vehicle(plate="沪B88888", plate_score=0.9)])
    fake_pipeline.script(wanted, [vehicle(plate="京A12345", plate_score=0.9)])
    stored(api, innocent)
    assert api.get("/alerts").json() == []
    (car,) = stored(api, wanted, "gate-2")
    alerts = api.get("/alerts").json()
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert["rule_id"], alert["sighting_id"], alert["camera_id"], alert["target"], alert["severity"]) == (
        rule.json()["id"], car["id"], "gate-2", "京A12345", "high")
    assert alert["details"]["reason"] == "reported stolen" and alert["acked_by"] is None
    acked = api.post(f"/alerts/{alert['id']}/ack", json={"user": "analyst"})
    assert acked.status_code == 200 and acked.json()["acked_by"] == "test-admin"  # who is signed in, not the body
    assert api.get("/alerts", params={"acked": False}).json() == []

    # a face watchlist: enrolled from a photo, matched by a later face sighting
    rng = np.random.default_rng(8)
    someone = unit(rng.standard_normal(SPACES["face"]))
    portrait, later = jpeg(32), jpeg(33)
    fake_pipeline.script(portrait, [face(BBox(10, 10, 90, 90), vector=someone)])
    fake_pipeline.script(later, [face(BBox(30, 30, 70, 70), vector=near(someone, rng))])
    faces = api.post("/watchlists", json={"name": "missing people", "kind": "face"}).json()["id"]
    enrolled = api.post(f"/watchlists/{faces}/faces", files={"files": ("p.jpg", portrait, "image/jpeg")},
                        data={"reason": "missing since Monday", "created_by": "duty officer", "label": "Li Wei"})
    assert enrolled.status_code == 201, enrolled.text
    not_a_face = api.post(f"/watchlists/{faces}/faces", files={"files": ("p.jpg", jpeg(34), "image/jpeg")},
                          data={"reason": "x", "created_by": "y"})
    assert not_a_face.status_code == 400 and "no face" in not_a_face.text
    face_rule = api.post("/rules", json={"name": "missing", "watchlist_id": faces}).json()["id"]
    (seen,) = stored(api, later)
    raised = api.get("/alerts", params={"rule_id": face_rule}).json()
    assert [(a["sighting_id"], a["target"]) for a in raised] == [(seen["id"], "Li Wei")]


def test_the_same_photo_uploaded_at_once_is_stored_once(api: httpx.Client, tmp_path: Path) -> None:
    """Simultaneous uploads of one frame race to commit it: one stores it, the others answer `duplicate`,
    none answers 500, and no crop is left behind by the losers."""
    photo = jpeg(7)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: post_frame(api, photo), range(4)))
    assert [r.status_code for r in answers] == [201] * 4, [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert sum(not b["duplicate"] for b in bodies) == 1
    kept = {s["id"] for b in bodies for s in b["sightings"]}
    assert len(kept) == 1 and api.get("/health").json()["sightings"] == 1
    crops = [p for p in (tmp_path / "data" / "crops").rglob("*.jpg")]
    assert len(crops) == 1


def test_bad_input_gets_a_clear_4xx_and_stores_nothing(api: httpx.Client) -> None:
    photo = jpeg(40)
    stored(api, photo)
    before = api.get("/health").json()["sightings"]
    inverted = {"start": "2026-11-03T00:00:00Z", "end": "2026-11-02T00:00:00Z"}

    def search_image(data: bytes = photo, **form: str) -> httpx.Response:
        return api.post("/search/image", files={"file": ("q.jpg", data, "image/jpeg")}, data=form)

    cases = {  # name: (request, the status(es) it must get, what the message must say)
        "corrupt image": (lambda: post_frame(api, b"\xff\xd8\xff\xe0 broken jpeg"), 400, "not a readable image"),
        "empty image": (lambda: post_frame(api, b""), 400, "empty"),
        "unknown camera": (lambda: post_frame(api, jpeg(41), camera="nope"), 400, "unknown camera"),
        "naive time": (lambda: post_frame(api, jpeg(41), captured_at="2026-11-02T08:00:00"), 400, "time zone"),
        "not a time": (lambda: post_frame(api, jpeg(41), captured_at="yesterday"), 400, "ISO 8601"),
        "bad kind": (lambda: api.get("/sightings", params={"kind": "boat"}), 400, "kind must be"),
        "inverted range": (lambda: api.get("/sightings", params=inverted), 400, "ends before it starts"),
        "inverted search range": (lambda: api.get("/search/plates", params={"q": "京A12345", **inverted}), 400,
                                  "before"),
        "bad plate pattern": (lambda: api.get("/search/plates", params={"q": "京A$1"}), 400, "not a plate pattern"),
        "bad search kind": (lambda: api.post("/search/attributes", json={"kind": "boat"}), 422, "kind"),
        "naive search time": (lambda: api.post("/search/attributes", json={"start": "2026-11-02T08:00:00"}), 400,
                              "time zone"),
        "malformed filters": (lambda: search_image(filters="{not json"), (400, 422), "filters"),
        "mistyped filters": (lambda: search_image(filters='{"camera_ids": 5}'), (400, 422), "filters"),
        "image search kind": (lambda: search_image(kind="face"), 400, "kind"),
        "corrupt query image": (lambda: search_image(b"junk"), 400, "not a readable image"),
        "missing sighting": (lambda: api.get("/sightings/does-not-exist"), 404, "no sighting"),
        "bad camera": (lambda: api.post("/cameras", json={**CAMERAS[0], "lat": 123}), 422, "lat"),
        "rule without a list": (lambda: api.post("/rules", json={"name": "r"}), 400, "watchlist_id"),
    }
    wrong = {}
    for name, (call, status, message) in cases.items():
        try:
            r = call()
        except httpx.HTTPError as exc:  # the server dropped the connection: an unhandled error on its side
            wrong[name] = repr(exc)
            continue
        if r.status_code not in (status if isinstance(status, tuple) else (status,)) \
                or message.lower() not in r.text.lower():
            wrong[name] = (r.status_code, r.text[:300])
    assert wrong == {}
    assert api.get("/health").json()["sightings"] == before


def _typed(schema: dict, components: dict) -> bool:
    """Whether a JSON schema says what the body holds (a model, typed fields or items), not just "an object"."""
    if "$ref" in schema:
        return True
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return all(_typed(s, components) for s in schema[combined])
    kind = schema.get("type")
    if kind in ("string", "integer", "number", "boolean", "null"):
        return True
    if kind == "array":
        return _typed(schema.get("items") or {}, components)
    if kind == "object":
        extra = schema.get("additionalProperties")
        return bool(schema.get("properties")) or (isinstance(extra, dict) and _typed(extra, components))
    return False


def test_every_operation_declares_its_response_schema(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    components = spec.get("components", {}).get("schemas", {})
    untyped = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            success = sorted(code for code in op.get("responses", {}) if code.startswith("2"))
            assert success, f"{method.upper()} {path} declares no success response"
            response = op["responses"][success[0]]
            if success[0] == "204":
                continue  # no body
            content = response.get("content", {})
            if not any(_typed(media.get("schema") or {}, components) for media in content.values()):
                untyped.append(f"{method.upper()} {path} {success[0]}")
    assert untyped == [], f"operations without a response schema: {untyped}"
