"""Cases and evidence packages: the use-case's rules (the store's own: tests/test_case_account_contract.py), and
the API over real HTTP with the fake pipeline (no weights) — open a case, collect findings, refuse queries for a
closed case, and export the evidence package, whose PDF text, CSV, GeoJSON and SHA-256 manifest are checked against
the stored bytes."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from models.records import InputError
from services.api.app import create_app
from services.api.localserver import serving
from services.api.security import _CASE
from services.cases import CASE_REF, CaseConflict, NewItem
from services.evidence import CJK_FONTS
from services.system import Sightline
from tests.conftest import auth_headers, tokens
from tests.fakes import FakePipeline, jpeg, vehicle

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
CAMERAS = [{"id": f"gate-{i}", "name": f"纪翟路 Gate {i}", "lon": 121.29 + i / 100, "lat": 31.21 + i / 200}
           for i in range(1, 4)]
PLATE, OTHER = "皖AY766D", "沪B12345"


def test_the_case_number_is_what_the_x_case_header_accepts() -> None:
    assert CASE_REF.pattern == _CASE.pattern


def _vehicle_sighting(system: Sightline, pipeline: FakePipeline, seed: int, plate: str, camera: str,
                      ts: datetime) -> str:
    from services.ingest import PhotoJob

    pipeline.script(jpeg(seed), [vehicle(plate=plate, plate_score=0.95, vehicle_color="white")])
    return system.ingestor.ingest_one(PhotoJob(f"{seed}.jpg", jpeg(seed), camera, ts)).sightings[0].id


def test_the_service_checks_each_kind_and_a_closed_case_takes_nothing(fake_system: Sightline,
                                                                      fake_pipeline: FakePipeline) -> None:
    from models.records import Camera

    fake_system.store.upsert_cameras([Camera(**c) for c in CAMERAS])  # type: ignore[arg-type]
    sid = _vehicle_sighting(fake_system, fake_pipeline, 1, PLATE, "gate-1", T0)
    cases = fake_system.cases
    for ref in ("", "x" * 65, "<script>", "a\nb", "案件 12"):
        with pytest.raises(InputError, match="case number"):
            cases.create(ref, "t", "r", "alice")
    with pytest.raises(InputError, match="title"):
        cases.create("C-1", "  ", "r", "alice")
    case = cases.create("C-1", "stolen car", "enquiry", "alice")
    with pytest.raises(CaseConflict, match="exists"):
        cases.create("C-1", "again", "r", "bob")

    refused = {
        "kind": NewItem("photo"), "one sighting": NewItem("sighting", sighting_ids=[]),
        "no sighting nope": NewItem("sighting", sighting_ids=["nope"]),
        "query is empty": NewItem("search", query=" "), "plate is empty": NewItem("trajectory"),
        "ends before": NewItem("trajectory", plate=PLATE, start=T0, end=T0 - timedelta(hours=1)),
        "other_plate": NewItem("cotravel", plate=PLATE), "conflicting": NewItem("clone", plate=PLATE),
        "note is longer": NewItem("sighting", sighting_ids=[sid], note="x" * 2001),
    }
    for message, new in refused.items():
        with pytest.raises(InputError, match=message):
            cases.add_item(case.id, new, "alice")
    item = cases.add_item(case.id, NewItem("sighting", sighting_ids=[sid], note="first read", query="plates"), "alice")
    cases.add_item(case.id, NewItem("trajectory", plate=" 皖ay766d ", start=T0), "alice")
    assert cases.file(case.id).items[1].plate == PLATE  # normalised as the store keeps plates
    cases.add_note(case.id, "called the owner", "alice")
    cases.check_query("C-1")
    cases.check_query("NOT-REGISTERED")  # a number kept elsewhere (CLI users) is accepted

    cases.close(case.id, "alice")
    for change in (lambda: cases.add_item(case.id, NewItem("search", query="x"), "alice"),
                   lambda: cases.add_note(case.id, "late", "alice"),
                   lambda: cases.remove_item(case.id, item.id), lambda: cases.close(case.id, "alice"),
                   lambda: cases.check_query("C-1")):
        with pytest.raises(CaseConflict, match="closed"):
            change()
    assert len(cases.file(case.id).items) == 2  # nothing stored before is lost
    with pytest.raises(LookupError):
        cases.get("no-such-case")


@pytest.fixture
def served(tmp_path: Path, model_dir: Path, fake_pipeline: FakePipeline):  # noqa: ANN201
    from services.settings import Settings

    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString",
                                                             "coordinates": [[121.29, 31.21], [121.33, 31.23]]}}]}))
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, roads_geojson=roads)
    app = create_app(settings, fake_pipeline)
    with serving(app) as url:
        tokens(app)
        yield app, url


def _client(app, url: str, role: str = "investigator", case: bool = True) -> httpx.Client:  # noqa: ANN001
    return httpx.Client(base_url=url, timeout=60, headers=auth_headers(app, role, case))


def _frames(api: httpx.Client, pipeline: FakePipeline) -> dict[str, tuple[str, bytes]]:
    """Five frames: 皖AY766D at three cameras, 沪B12345 twice beside it. sighting id -> (plate, frame bytes)."""
    assert api.post("/cameras", json=CAMERAS).status_code == 201
    out = {}
    for seed, (plate, cam, minutes) in enumerate([(PLATE, 1, 0), (PLATE, 2, 10), (PLATE, 3, 20), (OTHER, 1, 1),
                                                  (OTHER, 2, 11)], start=1):
        data = jpeg(seed)
        pipeline.script(data, [vehicle(plate=plate, plate_score=0.95, vehicle_color="white")])
        r = api.post("/frames", files={"file": (f"{seed}.jpg", data, "image/jpeg")},
                     data={"camera_id": f"gate-{cam}", "captured_at": (T0 + timedelta(minutes=minutes)).isoformat()})
        assert r.status_code == 201, r.text
        out[r.json()["sightings"][0]["id"]] = (plate, data)
    return out


def test_cases_over_http_collect_findings_and_a_closed_case_refuses_searches(served, fake_pipeline) -> None:  # noqa: ANN001
    app, url = served
    with _client(app, url, "admin") as admin:
        frames = _frames(admin, fake_pipeline)
    first = next(iter(frames))
    with _client(app, url, case=False) as api, _client(app, url, "viewer", case=False) as viewer, \
            _client(app, url, "supervisor", case=False) as supervisor:
        assert viewer.get("/cases").status_code == 403
        assert viewer.post("/cases", json={"ref": "V-1", "title": "t", "reason": "r"}).status_code == 403
        bad = api.post("/cases", json={"ref": "<b>", "title": "t", "reason": "r"})
        assert bad.status_code == 400 and "case number" in bad.json()["detail"]
        assert api.post("/cases", json={"ref": "A-1", "title": "", "reason": "r"}).status_code == 422
        made = api.post("/cases", json={"ref": "2026/0412", "title": "stolen car", "reason": "theft enquiry"})
        assert made.status_code == 201, made.text
        case = made.json()
        assert (case["owner"], case["status"]) == ("test-investigator", "open")
        taken = api.post("/cases", json={"ref": "2026/0412", "title": "x", "reason": "y"})
        assert taken.status_code == 409 and "exists" in taken.json()["detail"]
        listed = api.get("/cases", params={"ref": "2026/0412"}).json()["cases"]
        assert [c["id"] for c in listed] == [case["id"]]

        base = f"/cases/{case['id']}"
        added = api.post(f"{base}/items", json={"kind": "sighting", "sighting_ids": [first], "note": "first read",
                                                "query": f"plate search {PLATE} (exact)"})
        assert added.status_code == 201, added.text
        assert api.post(f"{base}/items", json={"kind": "trajectory", "plate": PLATE,
                                               "start": T0.isoformat()}).status_code == 201
        unknown = api.post(f"{base}/items", json={"kind": "sighting", "sighting_ids": ["nope"]})
        assert unknown.status_code == 400 and "no sighting nope" in unknown.json()["detail"]
        reversed_range = api.post(f"{base}/items", json={"kind": "trajectory", "plate": PLATE,
                                                         "start": T0.isoformat(), "end": "2026-01-01T00:00:00Z"})
        assert reversed_range.status_code == 400 and "ends before" in reversed_range.json()["detail"]
        assert api.post(f"{base}/items", json={"kind": "sighting", "sighting_ids": ["x"] * 101}).status_code == 422
        assert api.post(f"{base}/notes", json={"text": "owner reported it at 07:40"}).status_code == 201
        assert api.post("/cases/no-such-case/notes", json={"text": "x"}).status_code == 404

        read = api.get(base)
        assert read.status_code == 200
        body = read.json()
        assert [i["kind"] for i in body["items"]] == ["sighting", "trajectory"]
        assert [s["id"] for s in body["sightings"]] == [first] and body["notes"][0]["author"] == "test-investigator"
        audit = app.state.system.audit.entries(case_ref="2026/0412")
        assert {"GET /cases/{case_id}", "POST /cases/{case_id}/items"} <= {e.action for e in audit}

        # Queries for the case run while it is open; a number never registered is still accepted.
        search = {"X-Case": "2026/0412", "X-Reason": "theft enquiry"}
        assert api.get("/search/plates", params={"q": PLATE}, headers=search).status_code == 200
        other = api.get("/cases", headers={"Authorization": supervisor.headers["Authorization"]})
        assert other.status_code == 200
        with _client(app, url, "supervisor", case=False) as peer:
            peer_case = peer.post("/cases", json={"ref": "P-1", "title": "t", "reason": "r"}).json()
        not_owner = api.post(f"/cases/{peer_case['id']}/close")
        assert not_owner.status_code == 403 and "owner" in not_owner.json()["detail"]
        closed = api.post(f"{base}/close")
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        refused = api.get("/search/plates", params={"q": PLATE}, headers=search)
        assert refused.status_code == 409 and "closed" in refused.json()["detail"]
        assert api.get("/clones", headers=search).status_code == 409
        assert api.get("/clones", headers={**search, "X-Case": "CLI-42"}).status_code == 200
        late = api.post(f"{base}/notes", json={"text": "too late"})
        assert late.status_code == 409 and "closed" in late.json()["detail"]
        assert api.delete(f"{base}/items/{added.json()['id']}").status_code == 409
        assert len(api.get(base).json()["items"]) == 2  # nothing stored before is lost
        assert supervisor.post(f"/cases/{peer_case['id']}/close").status_code == 200


@pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh installs one)")
def test_the_evidence_package_holds_a_readable_report_and_a_manifest_that_matches_the_bytes(
        served, fake_pipeline) -> None:  # noqa: ANN001
    from pypdf import PdfReader

    app, url = served
    with _client(app, url, "admin") as admin:
        frames = _frames(admin, fake_pipeline)
    ids = list(frames)
    with _client(app, url, case=False) as api:
        case = api.post("/cases", json={"ref": "2026/0412", "title": "stolen car", "reason": "theft"}).json()
        base = f"/cases/{case['id']}"
        for item in ({"kind": "sighting", "sighting_ids": [ids[0]], "query": "plate search 皖AY766D (exact)"},
                     {"kind": "trajectory", "plate": PLATE},
                     {"kind": "cotravel", "plate": PLATE, "other_plate": OTHER, "sighting_ids": [ids[0], ids[3]]},
                     {"kind": "search", "query": "attributes: white car"}):
            assert api.post(f"{base}/items", json=item).status_code == 201
        api.post(f"{base}/notes", json={"text": "车主报案 07:40"})
        assert api.get("/cases/no-such-case/export").status_code == 404
        exported = api.get(f"{base}/export")
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "application/zip"
    assert 'filename="case-2026-0412-evidence.zip"' in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    names = set(archive.namelist())
    assert {"report.pdf", "sightings.csv", "sightings.geojson", "manifest.json", "SHA256SUMS"} <= names

    pdf = archive.read("report.pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "2026/0412" in text and PLATE in text and OTHER in text and "车主报案" in text
    for minutes in (0, 10, 20):
        assert (T0 + timedelta(minutes=minutes)).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert "纪翟路 Gate 2" in text and "plate search 皖AY766D (exact)" in text and "not retained" in text

    manifest = json.loads(archive.read("manifest.json"))
    hashes = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert hashes["report.pdf"] == hashlib.sha256(pdf).hexdigest()
    store, blobs = app.state.system.store, app.state.system.blobs
    for sighting in store.get_sightings(ids):
        crop = blobs.get(sighting.crop)
        assert crop is not None
        assert hashes[f"crops/{sighting.id}.jpg"] == hashlib.sha256(crop).hexdigest()
        assert archive.read(f"crops/{sighting.id}.jpg") == crop
    frames_listed = {f["sha256"]: f for f in manifest["original_frames"]["frames"]}
    assert manifest["original_frames"]["kept"] is False
    assert set(frames_listed) == {hashlib.sha256(data).hexdigest() for _, data in frames.values()}
    for line in archive.read("SHA256SUMS").decode().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest

    rows = list(csv.DictReader(io.StringIO(archive.read("sightings.csv").decode("utf-8-sig"))))
    assert {r["sighting_id"] for r in rows} == set(ids)  # the sighting, the trajectory's, the co-traveller's
    assert {r["plate"] for r in rows} == {PLATE, OTHER} and all(r["camera_name"] for r in rows)
    geo = json.loads(archive.read("sightings.geojson"))
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == len(rows)
    assert all(f["geometry"]["type"] == "Point" for f in geo["features"])

    exports = app.state.system.audit.entries(case_ref="2026/0412", action="GET /cases/{case_id}/export")
    assert len(exports) == 1 and exports[0].status == 200 and exports[0].actor == "test-investigator"


@pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh installs one)")
def test_an_empty_case_with_a_latin_number_exports_and_its_file_name_stays_ascii(served) -> None:  # noqa: ANN001
    app, url = served
    with _client(app, url, case=False) as api:
        case = api.post("/cases", json={"ref": "Müller/7", "title": "Fahrzeug", "reason": "Ermittlung"}).json()
        exported = api.get(f"/cases/{case['id']}/export")
    assert exported.status_code == 200, exported.text
    assert 'filename="case-M-ller-7-evidence.zip"' in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    assert json.loads(archive.read("manifest.json"))["original_frames"]["frames"] == []
    assert list(csv.reader(io.StringIO(archive.read("sightings.csv").decode("utf-8-sig")))) == [
        ["sighting_id", "kind", "ts", "camera_id", "camera_name", "lon", "lat", "plate", "vehicle_color",
         "vehicle_type", "det_score", "frame_sha256", "crop_file", "crop_sha256"]]
