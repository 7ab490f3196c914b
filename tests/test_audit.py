"""The audit trail: every search says who made it, under which case and why, with what and how much it found;
the log is read back filtered, exported as CSV and summarised (who looked up this plate, and why); its sealed
chain and signed checkpoint find an entry altered, removed, forged or re-chained and a log cut short or deleted;
purging sightings leaves it whole; and the CLI's
`users` and `audit` commands. Over real HTTP with the fake pipeline (no weights)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from indexer.audit_store import COLUMNS, GENESIS, entry_hash
from models.accounts import AuditEntry
from models.records import Camera, InputError
from services.api.app import create_app
from services.api.auth import CSV_COLUMNS
from services.api.localserver import serving
from services.audit import CHECKPOINT_FILE
from services.cli.main import main as sightline
from services.settings import Settings
from services.system import Sightline
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
    assert photo.params["upload_sha256"] == hashlib.sha256(jpeg(1)).hexdigest()  # which photo, not only its size

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
    # refused requests are on the log too, with who asked (if anyone could be told) and the case they named
    assert [(e.actor, e.status, e.case_ref) for e in entries(officers.app, action="GET /search/plates")][:2] == [
        ("?", 401, "CASE-7"), ("alice", 400, None)]


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
    assert {e["action"] for e in mine} == {"GET /search/plates", "begun POST /frames", "POST /frames"}
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
    about_rows = list(csv.DictReader(io.StringIO(bob.get("/audit/export", params={"about": OTHER}).text)))
    searches = [e["seq"] for e in audit(about=OTHER) if not e["action"].startswith("GET /audit")]  # not the reads
    assert [int(r["seq"]) for r in about_rows if not r["action"].startswith("GET /audit")] == searches
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
    assert bob.get("/audit/verify").json() == {"entries": written, "ok": True, "first_broken": None, "problem": None,
                                               "checkpoint": written, "unkeyed": 0}


def test_purging_sightings_leaves_the_audit_log_whole(officers: Officers) -> None:
    alice, root = officers["alice"], officers["root"]
    assert alice.get("/search/plates", params={"q": STOLEN}, headers=ALICE_CASE).json()["results"]
    before = entries(officers.app, limit=10_000)
    assert root.delete("/sightings", params={"before": "2026-11-03T00:00:00Z"}).json()["sightings"] == 2
    assert officers.app.state.system.store.count() == 0
    after = entries(officers.app, limit=10_000)
    assert after[2:] == before  # every entry as it was, the purge itself added on top: begun, then done
    assert (after[1].actor, after[1].action, after[1].status) == ("root", "begun DELETE /sightings", None)
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


def test_the_cli_records_each_case_bound_command_and_verifies_the_log(data: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
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
    assert not list(data.glob("*.key")) and (data.parent / "data.audit" / "audit.key").is_file()  # kept apart


def test_the_cli_checks_case_and_reason_as_the_api_does(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for reason in ("line one\nline two", "bell\a", "escape\x1b[31m", "c1\x85c1"):
        code, _, err = cli(capsys, data, "search", "plate", STOLEN, "--case", "CASE-CLI", "--reason", reason)
        assert code == 2 and "control characters" in err, (reason, err)
    code, _, err = cli(capsys, data, "search", "plate", STOLEN, "--case=-./", "--reason", "r")
    assert code == 2 and "letter or digit" in err
    assert cli(capsys, data, "watchlist", "create", "stolen")[0] == 0
    assert cli(capsys, data, "watchlist", "add", "stolen", STOLEN, "--reason", "stolen", "--by", "ops")[0] == 0
    code, _, err = cli(capsys, data, "watchlist", "export", "stolen")
    assert code == 2 and "--case" in err  # the list leaves the system only for a case
    code, out, _ = cli(capsys, data, "watchlist", "export", "stolen", *CLI_CASE)
    assert code == 0 and STOLEN in out
    code, out, _ = cli(capsys, data, "audit", "list", "--action", "watchlist export")
    (entry,) = json.loads(out)
    assert (entry["case_ref"], entry["reason"], entry["result_count"]) == ("CASE-CLI", "checking the command line", 1)


LOG_SIZE = 20


@pytest.fixture
def sealed_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose log holds LOG_SIZE entries, its key and checkpoint in `data.audit` beside it."""
    for name in ("SIGHTLINE_DATA", "SIGHTLINE_AUDIT_KEY_FILE", "SIGHTLINE_AUDIT_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    with Sightline(Settings(data_dir=tmp_path / "log" / "data", roads_geojson=None)) as system:
        for i in range(LOG_SIZE):
            system.audit.record("alice", "investigator", "GET /search/plates", "10.0.0.7", "CASE-7",
                                "stolen car report 7", {"q": STOLEN, "i": i}, 1, 200)
    return tmp_path / "log" / "data"


def tampered(sealed_log: Path, name: str) -> Path:
    """A copy of the sealed log's data folder and its key folder, for one attack."""
    copy = sealed_log.parent.parent / name
    shutil.copytree(sealed_log.parent, copy)
    return copy / "data"


def rows(data: Path) -> list[AuditEntry]:
    with sqlite3.connect(data / "audit.db") as db:
        return [AuditEntry(r[0], datetime.fromtimestamp(r[1] / 1e6, timezone.utc), *r[2:8], json.loads(r[8]),
                           *r[9:14]) for r in db.execute(f"SELECT {COLUMNS} FROM audit ORDER BY seq")]


def rewrite(data: Path, entries: list[AuditEntry]) -> None:
    with sqlite3.connect(data / "audit.db") as db:
        db.execute("DELETE FROM audit")
        db.executemany(f"INSERT INTO audit ({COLUMNS}) VALUES ({','.join('?' * 14)})",
                       [(e.seq, round(e.ts.timestamp() * 1e6), e.actor, e.role, e.action, e.source, e.case_ref,
                         e.reason, json.dumps(e.params, sort_keys=True, ensure_ascii=False), e.result_count,
                         e.status, e.prev_hash, e.hash, e.key_id) for e in entries])


def rechained(entries: list[AuditEntry], start: int) -> list[AuditEntry]:
    """The entries from `start` on re-linked with plain SHA-256, as someone without the key would."""
    out = entries[:start]
    for e in entries[start:]:
        linked = replace(e, prev_hash=out[-1].hash if out else GENESIS)
        linked.hash = entry_hash(linked, None)
        out.append(linked)
    return out


def broken(capsys: pytest.CaptureFixture[str], data: Path, *extra: str) -> str:
    code, _, err = cli(capsys, data, "audit", "verify", *extra)
    assert code == 1, err
    return err


def test_audit_verify_names_an_entry_altered_or_removed(sealed_log: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert cli(capsys, sealed_log, "audit", "verify")[0] == 0
    altered = tampered(sealed_log, "altered")
    with sqlite3.connect(altered / "audit.db") as db:
        db.execute("UPDATE audit SET reason='x' WHERE seq=2")  # someone edits the log behind its back
    assert "entry 2" in (err := broken(capsys, altered)) and "altered" in err
    removed = tampered(sealed_log, "removed")
    with sqlite3.connect(removed / "audit.db") as db:
        db.execute("DELETE FROM audit WHERE seq=3")
    assert "entry 4" in (err := broken(capsys, removed)) and "missing" in err


def test_audit_verify_refuses_a_forged_entry_with_a_recomputed_hash(sealed_log: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tampered(sealed_log, "forged")
    entries = rows(data)
    forged = replace(entries[-1], seq=LOG_SIZE + 1, actor="mallory", prev_hash=entries[-1].hash)
    forged.hash = entry_hash(forged, None)
    rewrite(data, [*entries, forged])
    err = broken(capsys, data)
    assert f"entry {LOG_SIZE + 1}" in err and "forged" in err and "without the key" in err


def test_audit_verify_names_the_last_entries_cut(sealed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tampered(sealed_log, "cut")
    rewrite(data, rows(data)[:-10])
    err = broken(capsys, data)
    assert f"vouches for {LOG_SIZE} entries and the log holds {LOG_SIZE - 10}" in err and "10 entries were cut" in err


def test_audit_verify_names_re_chaining_after_an_edit(sealed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tampered(sealed_log, "rechained")
    entries = rows(data)
    entries[5] = replace(entries[5], reason="routine check")  # the edit, then every later link recomputed
    rewrite(data, rechained(entries, 5))
    err = broken(capsys, data)
    assert "entry 6" in err and "re-chained" in err
    # sealed-looking but recomputed with a made-up key: the seal does not check either
    data = tampered(sealed_log, "rekeyed")
    entries = rows(data)
    entries[5] = replace(entries[5], reason="routine check")
    rewrite(data, [*entries[:5], *[replace(e, hash="0" * 64) for e in entries[5:]]])
    assert "entry 6" in (err := broken(capsys, data)) and "does not carry the key's seal" in err


def test_audit_verify_names_a_deleted_log(sealed_log: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    package = tmp_path / "evidence.zip"  # an evidence package exported before the deletion carries a checkpoint
    with Sightline(Settings(data_dir=sealed_log, roads_geojson=None)) as system, \
            zipfile.ZipFile(package, "w") as archive:
        point = system.audit.checkpoint()
        assert point is not None and point.seq == LOG_SIZE
        archive.writestr(CHECKPOINT_FILE, point.to_json())
    data = tampered(sealed_log, "deleted")
    (data / "audit.db").unlink()
    assert "the log is empty: it was deleted or emptied" in broken(capsys, data)
    # the checkpoint deleted too: its absence is named, and the package's copy still vouches for the log
    (data.parent / "data.audit" / "checkpoint.json").unlink()
    rewrite_empty = tampered(sealed_log, "both")
    (rewrite_empty / "audit.db").unlink()
    (rewrite_empty.parent / "data.audit" / "checkpoint.json").unlink()
    assert "the log is empty" in broken(capsys, rewrite_empty, "--checkpoint", str(package))
    kept = tampered(sealed_log, "kept")
    (kept.parent / "data.audit" / "checkpoint.json").unlink()
    assert "checkpoint" in (err := broken(capsys, kept)) and "missing" in err
    assert cli(capsys, sealed_log, "audit", "verify", "--checkpoint", str(package))[0] == 0


def test_a_checkpoint_not_signed_by_the_key_is_refused(sealed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tampered(sealed_log, "cut-and-resigned")
    rewrite(data, rows(data)[:-10])
    path = data.parent / "data.audit" / "checkpoint.json"
    point = json.loads(path.read_text())
    path.write_text(json.dumps({**point, "seq": LOG_SIZE - 10, "hash": rows(data)[-1].hash}))
    assert "does not carry this key's signature" in broken(capsys, data)
    assert cli(capsys, data, "audit", "verify", "--checkpoint", str(data / "nothing.json"))[0] == 2


def test_a_log_from_before_keying_is_adopted_and_sealed_from_then_on(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "audit.db") as db:  # the schema and plain chain of the release before keying
        db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL, "
                   "role TEXT NOT NULL, action TEXT NOT NULL, source TEXT NOT NULL, case_ref TEXT, reason TEXT, "
                   "params TEXT NOT NULL, result_count INTEGER, status INTEGER, prev_hash TEXT NOT NULL, "
                   "hash TEXT NOT NULL)")
    old = rechained([AuditEntry(i + 1, datetime(2026, 1, 1, tzinfo=timezone.utc), "ada", "admin", "login")
                     for i in range(3)], 0)
    rewrite_old = [(e.seq, round(e.ts.timestamp() * 1e6), e.actor, e.role, e.action, e.source, e.case_ref,
                    e.reason, "{}", e.result_count, e.status, e.prev_hash, e.hash) for e in old]
    with sqlite3.connect(data / "audit.db") as db:
        db.executemany(f"INSERT INTO audit VALUES ({','.join('?' * 13)})", rewrite_old)
    assert cli(capsys, data, "users", "add", "chief", "--role", "admin")[0] == 0  # entry 4: sealed
    code, out, _ = cli(capsys, data, "audit", "verify")
    assert code == 0 and "4 entries (3 from before keying" in out
    later = rows(data)
    assert [bool(e.key_id) for e in later] == [False, False, False, True]
    forged = replace(later[-1], seq=5, prev_hash=later[-1].hash, key_id="")
    forged.hash = entry_hash(forged, None)  # an unsealed entry after keying is a forgery, not an old entry
    rewrite(data, [*later, forged])
    assert "entry 5" in broken(capsys, data)


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


HANGING_SERVER = """
import sys, time
from pathlib import Path
from services.api.app import create_app
from services.api.localserver import serving
from services.settings import Settings
from tests.fakes import FakePipeline

data = Path(sys.argv[1])
app = create_app(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None), FakePipeline())
app.state.system.ingestor.listeners.append(lambda *_: time.sleep(600))  # committed, and never answered
_, token = app.state.system.accounts.add("ada", "investigator")
with serving(app) as url:
    print(url, token, flush=True)
    time.sleep(600)
"""


def test_a_frame_committed_just_before_a_kill_has_its_audit_entry(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    data = tmp_path / "data"
    with Sightline(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None)) as system:
        system.store.upsert_cameras([Camera(**CAMERAS[0])])  # type: ignore[arg-type]
    server = subprocess.Popen([sys.executable, "-c", HANGING_SERVER, str(data)], cwd=repo, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert server.stdout is not None
        url, token = server.stdout.readline().split()
        with httpx.Client(base_url=url, timeout=1, headers={"Authorization": f"Bearer {token}"}) as api, \
                pytest.raises(httpx.TimeoutException):
            api.post("/frames", files={"file": ("p.jpg", jpeg(1), "image/jpeg")},
                     data={"camera_id": "gate-1", "captured_at": MORNING})
        with Sightline(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None)) as system:
            deadline = time.monotonic() + 30
            while system.store.count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert system.store.count() == 1  # the frame is committed; its answer never comes
    finally:
        server.kill()  # SIGKILL: no shutdown, no audit write at the end of the request
        server.wait(10)
    with Sightline(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None)) as system:
        (begun,) = system.audit.entries(action="begun POST /frames")
        assert begun.actor == "ada" and begun.params["path"] == "/frames"
        assert system.audit.verify().ok


def test_the_key_and_checkpoint_must_live_outside_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for where in ({"audit_key_file": data / "audit.key"}, {"audit_checkpoint": data / "sub" / "checkpoint.json"}):
        with pytest.raises(InputError, match="inside the data folder"):
            Sightline(Settings(data_dir=data, roads_geojson=None, **where))  # type: ignore[arg-type]
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "audit.key").write_text("not hex\n")
    with pytest.raises(InputError, match="not hex"):
        Sightline(Settings(data_dir=data, roads_geojson=None, audit_key_file=tmp_path / "keys" / "audit.key"))
