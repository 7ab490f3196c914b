"""The HTTP API over real HTTP (uvicorn on localhost), with the real models."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.localserver import serving
from tests.conftest import client

pytestmark = pytest.mark.models
CAMERA = {"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21, "heading_deg": 90, "road": "纪翟路"}


@pytest.fixture
def api(settings, pipeline):  # noqa: ANN001, ANN201
    # the stream test's rtsp://127.0.0.1 is a loopback address, refused unless the operator allows it
    app = create_app(replace(settings, max_upload_bytes=2 << 20, outbound_allow=("127.0.0.1",)), pipeline)
    with serving(app) as url, client(app, url) as api:  # signed in as an admin, with a case
        yield api


def _post_frame(client: httpx.Client, data: bytes, camera: str = "gate-1",
                captured_at: str = "2026-11-02T08:00:00+08:00") -> httpx.Response:
    return client.post("/frames", files={"file": ("photo.jpg", data, "image/jpeg")},
                       data={"camera_id": camera, "captured_at": captured_at})


def test_frame_to_sightings_over_http(api: httpx.Client, eval_dir: Path) -> None:
    assert api.post("/cameras", json=CAMERA).status_code == 201
    assert [c["id"] for c in api.get("/cameras").json()] == ["gate-1"]
    photo = (eval_dir / "plates" / "full" / "0000.jpg").read_bytes()
    r = _post_frame(api, photo)
    assert r.status_code == 201, r.text
    body = r.json()
    plates = [s["attributes"]["plate"] for s in body["sightings"] if s["kind"] == "vehicle"]
    assert "皖AYL375" in plates and body["duplicate"] is False
    assert _post_frame(api, photo).json()["duplicate"] is True
    found = api.get("/sightings", params={"plate": "皖AYL375"}).json()
    assert found["count"] == 1
    sighting = found["sightings"][0]
    assert sighting["ts"] == "2026-11-02T00:00:00+00:00" and sighting["camera_id"] == "gate-1"
    assert api.get(f"/sightings/{sighting['id']}").json()["attributes"]["plate_color"] == "blue"
    crop = api.get(f"/sightings/{sighting['id']}/crop")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg" and crop.content[:2] == b"\xff\xd8"
    window = api.get("/sightings", params={"kind": "vehicle", "camera_id": "gate-1",
                                           "start": "2026-11-02T07:59:00+08:00", "end": "2026-11-02T08:01:00+08:00"})
    assert window.json()["count"] >= 1
    assert api.get("/docs").status_code == 200 and "/frames" in api.get("/openapi.json").json()["paths"]


def test_bad_input_gets_clear_4xx_and_the_store_stays_intact(api: httpx.Client, eval_dir: Path) -> None:
    api.post("/cameras", json=CAMERA)
    photo = (eval_dir / "plates" / "full" / "0001.jpg").read_bytes()
    assert _post_frame(api, photo).status_code == 201
    before = api.get("/health").json()["sightings"]
    cases = {
        "corrupt": (_post_frame(api, b"\xff\xd8\xff\xe0 broken jpeg"), 400, "not a readable image"),
        "empty": (_post_frame(api, b""), 400, "empty"),
        "unknown camera": (_post_frame(api, photo, camera="nope"), 400, "unknown camera"),
        "naive time": (_post_frame(api, photo, captured_at="2026-11-02T08:00:00"), 400, "time zone"),
        "huge": (_post_frame(api, b"\xff" * (3 << 20)), 413, "exceeds the limit"),
        "bad kind": (api.get("/sightings", params={"kind": "boat"}), 400, "kind must be"),
        "inverted range": (api.get("/sightings", params={"start": "2026-11-03T00:00:00Z",
                                                         "end": "2026-11-02T00:00:00Z"}), 400, "ends before it starts"),
        "missing sighting": (api.get("/sightings/does-not-exist"), 404, "no sighting"),
        "bad camera": (api.post("/cameras", json={**CAMERA, "lat": 123}), 422, "lat"),
    }
    for name, (response, status, message) in cases.items():
        assert response.status_code == status, name
        assert message in response.text, name
    assert api.get("/health").json()["sightings"] == before


def test_streams_are_managed_over_http(api: httpx.Client) -> None:
    api.post("/cameras", json=CAMERA)
    assert api.post("/streams", json={"url": "rtsp://127.0.0.1:1/none", "camera_id": "nope"}).status_code == 400
    assert api.post("/streams", json={"url": "", "camera_id": "gate-1"}).status_code == 422
    created = api.post("/streams", json={"url": "rtsp://127.0.0.1:1/none", "camera_id": "gate-1", "sample_fps": 2})
    assert created.status_code == 201
    stream_id = created.json()["id"]
    listed = {s["id"]: s for s in api.get("/streams").json()}
    assert listed[stream_id]["camera_id"] == "gate-1" and listed[stream_id]["state"] in ("starting", "reconnecting")
    assert api.delete(f"/streams/{stream_id}").status_code == 204
    assert api.delete(f"/streams/{stream_id}").status_code == 404 and api.get("/streams").json() == []
