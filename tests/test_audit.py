"""The audit trail: every search says who made it, under which case and why, with what and how much it found;
the log is read back filtered, exported as CSV and summarised (who looked up this plate, and why); its hash
chain finds an entry altered or removed behind its back; purging sightings leaves it whole; and the CLI's
`users` and `audit` commands. Over real HTTP with the fake pipeline (no weights)."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.api.app import create_app
from services.api.auth import CSV_COLUMNS
from services.api.localserver import serving
from services.cli.main import main as sightline
from services.settings import Settings
from tests.fakes import FakePipeline, jpeg, vehicle

CAMERAS = [{"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21},
           {"id": "gate-2", "name": "Gate 2", "lon": 121.30, "lat": 31.22}]
MORNING = "2026-11-02T08:00:00+08:00"
STOLEN, OTHER = "京A12345", "沪B88888"
ALICE_CASE = {"X-Case": "CASE-7", "X-Reason": "stolen car report 7"}
BOB_CASE = {"X-Case": "CASE-9", "X-Reason": "hit and run"}
CLI_CASE = ["--case", "CASE-CLI", "--reason", "checking the command line"]


class Officers:
    """A served app with an admin, an investigator (alice) and a supervisor (bob), each with a client."""

    def __init__(self, app: FastAPI, url: str, data: Path):
        self.app, self.url, self.data = app, url, data
        accounts = app.state.system.accounts
        self.tokens = {name: accounts.add(name, role)[1]
                       for name, role in (("root", "admin"), ("alice", "investigator"), ("bob", "supervisor"))}
        self.clients = {name: httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
                        for name, token in self.tokens.items()}

    def __getitem__(self, name: str) -> httpx.Client:
        return self.clients[name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def officers(tmp_path: Path, fake_pipeline: FakePipeline) -> Iterator[Officers]:
    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data, model_dir=tmp_path / "no-models", roads_geojson=None), fake_pipeline)
    with serving(app) as url:
        made = Officers(app, url, data)
        try:
            assert made["root"].post("/cameras", json=CAMERAS).status_code == 201
            fake_pipeline.script(jpeg(1), [vehicle(plate=STOLEN, plate_score=0.95, vehicle_color="red")])
            fake_pipeline.script(jpeg(2), [vehicle(plate=OTHER, plate_score=0.95, vehicle_color="white")])
            for seed, camera in ((1, "gate-1"), (2, "gate-2")):
                r = made["alice"].post("/frames", files={"file": ("p.jpg", jpeg(seed), "image/jpeg")},
                                       data={"camera_id": camera, "captured_at": MORNING})
                assert r.status_code == 201, r.text
            yield made
        finally:
            made.close()


def entries(app: FastAPI, **filters: object) -> list:
    return app.state.system.audit.entries(**filters)


def test_searches_are_recorded_with_who_why_what_and_how_much(officers: Officers,
                                                              fake_pipeline: FakePipeline) -> None:
    alice = officers["alice"]
    plates = alice.get("/search/plates", params={"q": STOLEN}, headers=ALICE_CASE)
    assert plates.status_code == 200 and len(plates.json()["results"]) == 1
    (entry,) = entries(officers.app, action="GET /search/plates")
    assert (entry.actor, entry.role, entry.case_ref, entry.reason) == ("alice", "investigator", "CASE-7",
                                                                       "stolen car report 7")
    assert entry.params == {"path": "/search/plates", "q": STOLEN} and entry.result_count == 1
    assert entry.status == 200 and entry.source == "127.0.0.1" and entry.hash and entry.seq > 1

    body = {"kind": "vehicle", "vehicle_color": "red"}
    found = alice.post("/search/attributes", json=body, headers=ALICE_CASE).json()
    (by_colour,) = entries(officers.app, action="POST /search/attributes")
    assert by_colour.params["body"] == body and by_colour.result_count == found["count"] == 1

    by_photo = alice.post("/search/image", files={"file": ("q.jpg", jpeg(1), "image/jpeg")},
                          data={"kind": "vehicle"}, headers=ALICE_CASE)
    assert by_photo.status_code == 200, by_photo.text
    (photo,) = entries(officers.app, action="POST /search/image")
    assert photo.params["upload_bytes"] > len(jpeg(1)) and photo.result_count == len(by_photo.json()["results"])

    listed = alice.get("/sightings", params={"camera_id": ["gate-1", "gate-2"]}, headers=ALICE_CASE)
    (sightings,) = entries(officers.app, action="GET /sightings")
    assert sightings.params["camera_id"] == ["gate-1", "gate-2"]  # every value of a repeated parameter
    assert sightings.result_count == listed.json()["count"] == 2

    route = alice.get(f"/trajectories/{STOLEN}", headers=ALICE_CASE).json()
    (trajectory,) = entries(officers.app, action="GET /trajectories/{plate}")
    assert trajectory.params["path"] == f"/trajectories/{STOLEN}" and trajectory.result_count == len(route["points"])

    bad = alice.get("/search/plates", params={"q": "京A$1"}, headers=ALICE_CASE)  # refused input: still a look-up
    assert bad.status_code == 400
    assert [(e.status, e.result_count) for e in entries(officers.app, action="GET /search/plates")][0] == (400, None)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the models fell over")

    fake_pipeline.detect = broken  # a search that fails with an unhandled error was made all the same
    failed = httpx.post(officers.url + "/search/image", files={"file": ("q.jpg", jpeg(2), "image/jpeg")},
                        headers={**alice.headers, **ALICE_CASE})  # a connection of its own: the server closes it
    assert failed.status_code == 500
    assert entries(officers.app, action="POST /search/image")[0].status == 500

    refused = officers["alice"].get("/search/plates", params={"q": STOLEN})  # no case: refused, nothing searched
    assert refused.status_code == 400
    viewer_less = httpx.get(officers.url + "/search/plates", params={"q": STOLEN}, headers=ALICE_CASE)
    assert viewer_less.status_code == 401
    assert len(entries(officers.app, action="GET /search/plates")) == 2


def test_the_log_is_filtered_exported_and_summarised(officers: Officers) -> None:
    alice, bob = officers["alice"], officers["bob"]
    for plate in (STOLEN, OTHER):
        assert alice.get("/search/plates", params={"q": plate}, headers=ALICE_CASE).status_code == 200
    assert bob.get("/search/plates", params={"q": STOLEN}, headers=BOB_CASE).status_code == 200
    assert bob.get(f"/co-travel/{OTHER}", headers=BOB_CASE).status_code == 200

    def audit(**params: str) -> list[dict]:
        r = bob.get("/audit", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    mine = audit(user="alice")
    assert {e["actor"] for e in mine} == {"alice"} and [e["seq"] for e in mine] == sorted(
        (e["seq"] for e in mine), reverse=True)  # newest first
    assert {e["action"] for e in mine} == {"GET /search/plates", "POST /frames"}
    assert [e["params"].get("q") for e in audit(case="CASE-7")] == [OTHER, STOLEN]
    assert {(e["actor"], e["case_ref"]) for e in audit(action="GET /search/plates")} == {
        ("alice", "CASE-7"), ("bob", "CASE-9")}
    about = audit(about=STOLEN)
    assert {(e["actor"], e["action"], e["reason"]) for e in about} == {
        ("alice", "GET /search/plates", "stolen car report 7"), ("bob", "GET /search/plates", "hit and run")}
    assert {e["action"] for e in audit(about=OTHER)} == {"GET /search/plates", "GET /co-travel/{plate}"}
    assert audit(user="alice", start="2999-01-01T00:00:00Z") == []
    assert len(audit(user="alice", limit="1")) == 1
    assert bob.get("/audit", params={"start": "yesterday"}).status_code == 400
    assert {e["action"] for e in audit(user="bob")} >= {"GET /audit"}  # reading the log is on the log

    exported = bob.get("/audit/export", params={"user": "alice"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert tuple(csv.DictReader(io.StringIO(exported.text)).fieldnames or ()) == CSV_COLUMNS
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in audit(user="alice")]
    plate_rows = [r for r in rows if r["action"] == "GET /search/plates"]
    assert {json.loads(r["params"])["q"] for r in plate_rows} == {STOLEN, OTHER}
    assert {(r["case_ref"], r["reason"], r["result_count"]) for r in plate_rows} == {
        ("CASE-7", "stolen car report 7", "1")}

    who = bob.get("/audit/summary", params={"action": "GET /search/plates", "about": STOLEN}).json()
    assert who["by_actor"] == {"alice": {"GET /search/plates": 1}, "bob": {"GET /search/plates": 1}}
    assert who["by_case"] == {"CASE-7": {"GET /search/plates": 1}, "CASE-9": {"GET /search/plates": 1}}
    assert who["reasons"] == {"CASE-7": ["stolen car report 7"], "CASE-9": ["hit and run"]}
    assert alice.get("/audit").status_code == 403  # an investigator does not read the log
    written = len(entries(officers.app, limit=10_000))
    assert bob.get("/audit/verify").json() == {"entries": written, "ok": True, "first_broken": None, "problem": None}


def test_purging_sightings_leaves_the_audit_log_whole(officers: Officers) -> None:
    alice, root = officers["alice"], officers["root"]
    assert alice.get("/search/plates", params={"q": STOLEN}, headers=ALICE_CASE).json()["results"]
    before = entries(officers.app, limit=10_000)
    assert root.delete("/sightings", params={"before": "2026-11-03T00:00:00Z"}).json()["sightings"] == 2
    assert officers.app.state.system.store.count() == 0
    after = entries(officers.app, limit=10_000)
    assert after[1:] == before  # every entry as it was, the purge itself added on top
    assert (after[0].actor, after[0].action, after[0].result_count) == ("root", "DELETE /sightings", 2)
    assert after[0].params["before"] == "2026-11-03T00:00:00Z"
    assert officers["bob"].get("/audit/verify").json()["ok"] is True
    assert officers["bob"].get("/audit", params={"about": STOLEN}).json()[0]["actor"] == "alice"


# The command line ---------------------------------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> tuple[int, str, str]:
    code = sightline(["--data", str(data), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SIGHTLINE_DATA", "SIGHTLINE_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def test_users_add_shows_the_token_once_and_list_never(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, data, "users", "add", "chief", "--role", "admin")
    assert code == 0 and len(out.splitlines()) == 1
    made = json.loads(out)
    assert (made["name"], made["role"], made["disabled"]) == ("chief", "admin", False)
    token = made["token"]
    assert token.startswith("sl_") and len(token) > 30
    assert cli(capsys, data, "users", "add", "duty", "--role", "viewer")[0] == 0
    code, out, _ = cli(capsys, data, "users", "list")
    assert code == 0 and token not in out and "token" not in out
    assert [(u["name"], u["role"]) for u in json.loads(out)] == [("chief", "admin"), ("duty", "viewer")]
    code, _, err = cli(capsys, data, "users", "add", "chief", "--role", "viewer")
    assert code == 2 and "exists" in err
    assert cli(capsys, data, "users", "add", "nobody")[0] == 2  # no role
    code, out, _ = cli(capsys, data, "users", "rotate", "chief")
    assert code == 0 and json.loads(out)["token"] != token
    code, out, _ = cli(capsys, data, "users", "disable", "duty")
    assert code == 0 and json.loads(out) == {"name": "duty", "role": "viewer", "disabled": True}
    for file in ("audit.db", "accounts.db"):  # the token is kept only as its hash, and never logged
        assert token.encode() not in (data / file).read_bytes()
    code, out, _ = cli(capsys, data, "audit", "list", "--action", "users add")
    assert code == 0 and [e["params"]["name"] for e in json.loads(out)] == ["duty", "chief"]


def test_audit_verify_finds_an_altered_entry_and_a_removed_one(data: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    assert cli(capsys, data, "users", "add", "chief", "--role", "admin")[0] == 0  # entry 1
    code, out, _ = cli(capsys, data, "search", "plate", STOLEN, *CLI_CASE)  # entry 2
    assert code == 0 and json.loads(out) == []
    assert cli(capsys, data, "sightings", "--plate", STOLEN, *CLI_CASE)[0] == 0  # entry 3
    assert cli(capsys, data, "trajectory", STOLEN, *CLI_CASE)[0] == 0  # entry 4
    code, _, err = cli(capsys, data, "search", "plate", STOLEN)
    assert code == 2 and "--case" in err  # no case, no search (and nothing logged)
    code, out, _ = cli(capsys, data, "audit", "list", "--case", "CASE-CLI")
    listed = json.loads(out)
    assert [e["action"] for e in listed] == ["trajectory", "sightings", "search plate"]
    assert {(e["actor"].startswith("cli:"), e["reason"], e["result_count"]) for e in listed} == {
        (True, "checking the command line", 0)}

    code, out, _ = cli(capsys, data, "audit", "verify")
    assert code == 0 and "4 entries" in out

    honest = data.parent / "honest"  # a copy to remove an entry from, after altering this one
    honest.mkdir()
    with sqlite3.connect(data / "audit.db") as db:
        db.execute("VACUUM INTO ?", (str(honest / "audit.db"),))
    with sqlite3.connect(data / "audit.db") as db:
        db.execute("UPDATE audit SET reason='x' WHERE seq=2")  # someone edits the log behind its back
    code, _, err = cli(capsys, data, "audit", "verify")
    assert code != 0 and "entry 2" in err and "altered" in err

    with sqlite3.connect(honest / "audit.db") as db:
        db.execute("DELETE FROM audit WHERE seq=2")
    code, _, err = cli(capsys, honest, "audit", "verify")
    assert code != 0 and "entry 3" in err and "missing" in err


def test_a_reason_in_any_script_arrives_percent_encoded(officers: Officers) -> None:
    """Headers carry Latin-1 only: the web app percent-encodes the reason as UTF-8 and the log keeps the text."""
    reason = "车辆被盗调查 (50% sure)"
    from urllib.parse import quote

    headers = {"X-Case": "CASE-%", "X-Reason": "x"}  # a case reference stays plain: it is matched and filtered on
    assert officers["alice"].get("/search/plates", params={"q": STOLEN}, headers=headers).status_code == 400

    answer = officers["alice"].get("/search/plates", params={"q": STOLEN},
                                   headers={"X-Case": "CASE-11", "X-Reason": quote(reason)})
    assert answer.status_code == 200, answer.text
    found = officers["root"].get("/audit", params={"case": "CASE-11"}).json()
    assert [e["reason"] for e in found] == [reason]
