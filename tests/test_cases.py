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

from models.accounts import Role, User
from models.records import InputError
from services.api.app import create_app
from services.api.localserver import serving
from services.cases import CaseConflict, CaseForbidden, NewItem
from services.evidence import CJK_FONTS
from services.system import Sightline
from tests.conftest import auth_headers, tokens
from tests.fakes import FakePipeline, jpeg, vehicle

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
CAMERAS = [{"id": f"gate-{i}", "name": f"纪翟路 Gate {i}", "lon": 121.29 + i / 100, "lat": 31.21 + i / 200}
           for i in range(1, 4)]
PLATE, OTHER = "皖AY766D", "沪B12345"


ALICE, BOB = User("u1", "alice", Role.INVESTIGATOR), User("u2", "bob", Role.INVESTIGATOR)
CHIEF, OTHER_CHIEF = User("u3", "chief", Role.SUPERVISOR), User("u4", "boss", Role.SUPERVISOR)


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
    for ref in ("", "x" * 65, "<script>", "a\nb", "50%"):
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
            cases.add_item(case.id, new, ALICE)
    item = cases.add_item(case.id, NewItem("sighting", sighting_ids=[sid], note="first read", query="plates"), ALICE)
    cases.add_item(case.id, NewItem("trajectory", plate=" 皖ay766d ", start=T0), ALICE)
    assert cases.file(case.id).items[1].plate == PLATE  # normalised as the store keeps plates
    cases.add_note(case.id, "called the owner", ALICE)
    assert cases.check_query("C-1", ALICE) == "C-1"
    assert cases.check_query("NOT-REGISTERED", ALICE) == "NOT-REGISTERED"  # a number kept elsewhere is accepted

    cases.close(case.id, ALICE)
    for change in (lambda: cases.add_item(case.id, NewItem("search", query="x"), ALICE),
                   lambda: cases.add_note(case.id, "late", ALICE),
                   lambda: cases.remove_item(case.id, item.id, ALICE), lambda: cases.close(case.id, ALICE),
                   lambda: cases.check_query("C-1", ALICE)):
        with pytest.raises(CaseConflict, match="closed"):
            change()
    assert len(cases.file(case.id).items) == 2  # nothing stored before is lost
    with pytest.raises(LookupError):
        cases.get("no-such-case")


def test_a_closed_case_number_is_closed_however_it_is_spelt(fake_system: Sightline) -> None:
    cases = fake_system.cases
    case = cases.create("CASE-A", "stolen car", "enquiry", "alice")
    for spelling in ("case-a", "CASE-A.", "CASE -A", " Case_A "):
        assert cases.by_ref(spelling) == case
        assert cases.check_query(spelling, ALICE) == "CASE-A"  # the audit log names the registered number
        with pytest.raises(CaseConflict, match="exists"):
            cases.create(spelling, "a second file", "r", "bob")
    cases.close(case.id, ALICE)
    for spelling in ("case-a", "CASE-A.", "CASE -A", "ＣＡＳＥ-Ａ"):
        with pytest.raises(CaseConflict, match="closed"):
            cases.check_query(spelling, ALICE)
    with pytest.raises(InputError, match="letter or digit"):
        cases.create("-./", "only punctuation", "r", "alice")


def test_only_the_owner_and_collaborators_change_a_case_and_supervisors_read_every_one(
        fake_system: Sightline) -> None:
    cases = fake_system.cases
    case = cases.create("C-7", "stolen car", "enquiry", "alice")
    note = NewItem("search", query="plates 皖A*")
    for user in (BOB, CHIEF):  # another investigator, and a supervisor who is not on the case
        for change in (lambda u=user: cases.add_item(case.id, note, u), lambda u=user: cases.add_note(case.id, "x", u),
                       lambda u=user: cases.set_collaborators(case.id, [u.name], u)):
            with pytest.raises(CaseForbidden, match="alice"):
                change()
    item = cases.add_item(case.id, note, ALICE)
    with pytest.raises(CaseForbidden):
        cases.remove_item(case.id, item.id, BOB)
    with pytest.raises(CaseForbidden):
        cases.read(case.id, BOB)
    with pytest.raises(CaseForbidden):
        cases.check_query("c-7", BOB)  # searching under another's case number is working on it
    assert cases.read(case.id, CHIEF) == case and cases.check_query("C-7", CHIEF) == "C-7"  # supervisors read all
    with pytest.raises(CaseForbidden, match="close"):
        cases.close(case.id, BOB)

    assert cases.set_collaborators(case.id, ["bob", "bob", "alice", " "], ALICE).collaborators == ["bob"]
    cases.add_note(case.id, "bob's note", BOB)
    cases.remove_item(case.id, item.id, BOB)
    assert cases.check_query("C-7", BOB) == "C-7"
    with pytest.raises(CaseForbidden, match="owner"):
        cases.set_collaborators(case.id, [], BOB)  # only the owner names collaborators
    assert [n.author for n in cases.file(case.id).notes] == ["bob"] and cases.file(case.id).items == []
    cases.close(case.id, OTHER_CHIEF)  # any supervisor may close it
    assert cases.get(case.id).closed_by == "boss"


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
    assert "纪翟路 Gate 2" in text and "plate search 皖AY766D (exact)" in text
    assert "its hash checked" in " ".join(text.split()) and "its box in red" in text  # the full frame, shown

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
    assert set(frames_listed) == {hashlib.sha256(data).hexdigest() for _, data in frames.values()}
    assert manifest["original_frames"]["kept"] == len(frames_listed)  # every uploaded photo is kept, whole
    for sha, listed in frames_listed.items():
        assert listed["hash_checked"] and listed["file"] == f"frames/{sha}.jpg"
        assert hashlib.sha256(archive.read(listed["file"])).hexdigest() == sha == hashes[listed["file"]]
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


def test_every_case_bound_route_refuses_a_closed_case_under_any_spelling(served) -> None:  # noqa: ANN001
    from services.api.security import ROUTES

    app, url = served
    bound = sorted((method, path) for (method, path), access in ROUTES.items() if access.case)
    assert len(bound) >= 13
    with _client(app, url, "supervisor", case=False) as api:  # the role every case-bound route allows
        case = api.post("/cases", json={"ref": "CASE-A", "title": "t", "reason": "r"}).json()
        assert api.post(f"/cases/{case['id']}/close").status_code == 200
        for method, path in bound:
            filled = path.replace("{", "").replace("}", "")  # every path parameter given its own name as value
            for spelling in ("CASE-A", "case-a", "CASE-A.", "CASE -A"):
                r = api.request(method, filled, headers={"X-Case": spelling, "X-Reason": "r"})
                assert r.status_code == 409 and "closed" in r.json()["detail"], (method, path, spelling, r.text)


def test_another_investigators_case_is_refused_over_http(served) -> None:  # noqa: ANN001
    app, url = served
    with _client(app, url, case=False) as owner, _client(app, url, "supervisor", case=False) as chief:
        accounts = app.state.system.accounts
        other_token = accounts.add("carol", "investigator")[1]
        case = owner.post("/cases", json={"ref": "C-42", "title": "t", "reason": "r"}).json()
        base = f"/cases/{case['id']}"
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {other_token}"}) as carol:
            for r in (carol.post(f"{base}/items", json={"kind": "search", "query": "x"}),
                      carol.post(f"{base}/notes", json={"text": "x"}), carol.get(base),
                      carol.get(f"{base}/export"), carol.post(f"{base}/close"),
                      carol.get("/search/plates", params={"q": PLATE}, headers={"X-Case": "c 42", "X-Reason": "r"})):
                assert r.status_code == 403 and "test-investigator" in r.json()["detail"], r.text
            assert chief.get(base).status_code == 200  # a supervisor reads every case
            assert chief.post(f"{base}/notes", json={"text": "x"}).status_code == 403  # and changes only their own
            assert chief.put(f"{base}/collaborators", json={"names": ["carol"]}).status_code == 403
            assert owner.put(f"{base}/collaborators", json={"names": ["nobody"]}).status_code == 400
            added = owner.put(f"{base}/collaborators", json={"names": ["carol"]})
            assert added.status_code == 200 and added.json()["collaborators"] == ["carol"]
            assert carol.post(f"{base}/notes", json={"text": "carol's lead"}).status_code == 201
            audit = app.state.system.audit.entries(case_ref="C-42", action="PUT /cases/{case_id}/collaborators")
            assert [(e.actor, e.status) for e in audit] == [("test-investigator", 200), ("test-investigator", 400),
                                                           ("test-supervisor", 403)]  # newest first


@pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh installs one)")
def test_a_package_says_which_findings_lost_sightings_to_a_purge(served, fake_pipeline) -> None:  # noqa: ANN001
    from pypdf import PdfReader

    app, url = served
    with _client(app, url, "admin") as admin:
        ids = list(_frames(admin, fake_pipeline))
    with _client(app, url, case=False) as api:
        case = api.post("/cases", json={"ref": "P-9", "title": "stolen car", "reason": "theft"}).json()
        base = f"/cases/{case['id']}"
        for item in ({"kind": "clone", "plate": PLATE, "sighting_ids": ids[:3]},
                     {"kind": "trajectory", "plate": PLATE}, {"kind": "sighting", "sighting_ids": [ids[3]]}):
            assert api.post(f"{base}/items", json=item).status_code == 201
        app.state.system.retention.purge(ids=ids[:3])  # every sighting of 皖AY766D goes
        exported = api.get(f"{base}/export")
    assert exported.status_code == 200, exported.text
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    lost = json.loads(archive.read("manifest.json"))["sightings_no_longer_stored"]
    assert [(x["kind"], x["sighting_ids"]) for x in lost] == [("clone", ids[:3])]
    assert "3 of the 3 sightings this finding named are no longer stored" in lost[0]["statement"]
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(archive.read("report.pdf"))).pages).split())
    assert "3 of the 3 sightings this finding named are no longer stored" in text
    assert "No sighting of it in this time range is stored now" in text  # the trajectory, emptied
    assert [r["sighting_id"] for r in csv.DictReader(io.StringIO(archive.read("sightings.csv").decode("utf-8-sig")))
            ] == [ids[3]]


def test_a_chinese_case_number_is_opened_and_searched_under(served) -> None:  # noqa: ANN001
    from urllib.parse import quote

    app, url = served
    ref = "沪公(2026)0412号"
    with _client(app, url, case=False) as api:
        made = api.post("/cases", json={"ref": ref, "title": "车辆被盗", "reason": "盗窃案"})
        assert made.status_code == 201, made.text
        search = {"X-Case": quote(ref), "X-Reason": quote("核查车辆")}  # headers carry Latin-1: percent-encoded
        assert api.get("/search/plates", params={"q": PLATE}, headers=search).status_code == 200
        (entry,) = app.state.system.audit.entries(action="GET /search/plates")
        assert (entry.case_ref, entry.reason) == (ref, "核查车辆")
        assert api.get("/search/plates", params={"q": PLATE},
                       headers={**search, "X-Case": "%E6%B2"}).status_code == 400  # not UTF-8: refused, not guessed
        assert api.post(f"/cases/{made.json()['id']}/close").status_code == 200
        assert api.get("/search/plates", params={"q": PLATE}, headers=search).status_code == 409


@pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh installs one)")
def test_a_case_opened_over_http_has_a_zone_and_its_report_a_language(served, fake_pipeline) -> None:  # noqa: ANN001
    from pypdf import PdfReader

    app, url = served
    with _client(app, url, "admin") as admin:
        first = next(iter(_frames(admin, fake_pipeline)))  # 皖AY766D at 2026-11-02 00:00 UTC, 08:00 in Shanghai
    with _client(app, url, case=False) as api:
        bad = api.post("/cases", json={"ref": "Z-0", "title": "t", "reason": "r", "zone": "Mars/Olympus"})
        assert bad.status_code == 400 and "time zone" in bad.json()["detail"]
        assert api.post("/cases", json={"ref": "Z-1", "title": "t", "reason": "r"}).json()["zone"] == "UTC"
        made = api.post("/cases", json={"ref": "Z-2", "title": "t", "reason": "r", "zone": "Asia/Shanghai"})
        assert made.status_code == 201 and made.json()["zone"] == "Asia/Shanghai"
        base = f"/cases/{made.json()['id']}"
        assert api.get(base).json()["case"]["zone"] == "Asia/Shanghai"
        assert api.post(f"{base}/items", json={"kind": "sighting", "sighting_ids": [first]}).status_code == 201
        assert api.get(f"{base}/export", params={"lang": "fr"}).status_code == 422
        exported = api.get(f"{base}/export", params={"lang": "zh"})
    assert exported.status_code == 200, exported.text
    pdf = zipfile.ZipFile(io.BytesIO(exported.content)).read("report.pdf")
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "证据包 — 案件 Z-2" in text and "Asia/Shanghai 时间（UTC+08:00）" in text
    assert "2026-11-02 08:00:00 UTC+08:00" in text and "2026-11-02 00:00:00" not in text


@pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh installs one)")
def test_a_package_is_built_in_the_background_with_its_progress(served, fake_pipeline) -> None:  # noqa: ANN001
    import time

    app, url = served
    with _client(app, url, "admin") as admin:
        ids = list(_frames(admin, fake_pipeline))
    with _client(app, url, case=False) as api:
        case = api.post("/cases", json={"ref": "BG-1", "title": "t", "reason": "r"}).json()
        base = f"/cases/{case['id']}"
        for sid in ids:
            assert api.post(f"{base}/items", json={"kind": "sighting", "sighting_ids": [sid]}).status_code == 201
        started = api.post(f"{base}/exports", params={"lang": "zh"})
        assert started.status_code == 202 and started.json()["state"] in ("queued", "building", "done")
        job = started.json()
        deadline = time.monotonic() + 60
        while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = api.get(f"{base}/exports/{job['id']}").json()
        assert job["state"] == "done" and job["done"] == job["total"] > 0 and job["sightings"] == len(ids)
        got = api.get(f"{base}/exports/{job['id']}/file")
        assert got.status_code == 200 and len(got.content) == job["bytes"]
        archive = zipfile.ZipFile(io.BytesIO(got.content))
        for line in archive.read("SHA256SUMS").decode().splitlines():
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(archive.read(name)).hexdigest() == digest
        assert json.loads(archive.read("manifest.json"))["report_language"] == "zh"
        assert api.get(f"{base}/exports/nosuchjob").status_code == 404
        assert api.get(f"/cases/{case['id']}/exports/{job['id']}/file".replace(case["id"], "other")).status_code == 404
        with _client(app, url, "supervisor", case=False) as chief:  # another's case: read-only, but readable
            assert chief.get(f"{base}/exports/{job['id']}").json()["state"] == "done"
        carol = app.state.system.accounts.add("carol", "investigator")[1]
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {carol}"}) as other:
            assert other.get(f"{base}/exports/{job['id']}/file").status_code == 403
    audited = {e.action for e in app.state.system.audit.entries(case_ref="BG-1")}
    assert {"POST /cases/{case_id}/exports", "GET /cases/{case_id}/exports/{export_id}/file"} <= audited
