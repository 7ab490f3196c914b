"""Bounded resources, a CLI that never prints a traceback, and retention that leaves nothing behind.

A. Resources: an image's pixel count is checked from its header before it is decoded; an upload's size is
   counted while it streams (with a Content-Length or chunked); every number and time a caller sends is
   range-checked (no 500 from an offset past 2^63, a zoned time outside the years 1–9999 in UTC, or NaN).
B. The command line: bad input is one line of message and exit code 2, never a traceback.
C. Retention: alerts naming purged sightings go with them (and their webhook deliveries); crops no sighting
   refers to are swept; a capture time in the future is refused (it could never be purged by time).

Everything runs on the fake pipeline (tests/fakes.py), over real HTTP where the API is concerned.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from indexer.store import SightingQuery
from models.imageops import decode_image
from models.records import Camera, InputError, parse_time, require_utc
from models.watchlists import Alert
from services.api.app import create_app
from services.api.localserver import serving
from services.cli.main import main
from services.ingest import PhotoJob, read_manifest
from services.settings import Settings
from services.system import Sightline
from tests.fakes import FakePipeline, jpeg, vehicle

LIMIT = 4 << 20  # the upload limit of these tests' servers (a bomb below fits under it)
CASE = {"X-Case": "T-1", "X-Reason": "test"}
CLI_CASE = ["--case", "T-1", "--reason", "test"]
CAMERAS = [{"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21},
           {"id": "gate-2", "name": "Gate 2", "lon": 121.30, "lat": 31.22}]
MORNING = "2026-11-02T08:00:00+08:00"
OVERFLOWING = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00")  # UTC year 0 and year 10000
EDGES = ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z")  # the first and last instants that are valid


def black_png(width: int, height: int) -> bytes:
    """A valid black RGB PNG of any size in a few MB: each row is one zlib block repeated (a decompression bomb)."""
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    packer = zlib.compressobj(9)
    first = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    again = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)  # the history reset: the same bytes every row
    adler = ((len(row) * height) % 65521) << 16 | 1  # Adler-32 of that many zero bytes
    idat = first + again * (height - 1) + b"\x03\x00" + struct.pack(">I", adler)  # an empty final block

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def served(tmp_path: Path, model_dir: Path) -> Iterator[tuple[httpx.Client, FakePipeline, Sightline]]:
    """The API on the fake pipeline, with two cameras, signed in as an admin with a case and reason."""
    fake = FakePipeline()
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, roads_geojson=None,
                        max_upload_bytes=LIMIT, outbound_allow=("127.0.0.1",))
    app = create_app(settings, fake)
    _, token = app.state.system.accounts.add("ops", "admin")
    with serving(app) as url, httpx.Client(base_url=url, timeout=60,
                                           headers={"Authorization": f"Bearer {token}", **CASE}) as api:
        assert api.post("/cameras", json=CAMERAS).status_code == 201
        yield api, fake, app.state.system


def post_frame(api: httpx.Client, data: bytes, captured_at: str = MORNING, camera: str = "gate-1") -> httpx.Response:
    return api.post("/frames", files={"file": ("photo.png", data, "image/png")},
                    data={"camera_id": camera, "captured_at": captured_at})


# A. Bounded resources ----------------------------------------------------------------------------------------

def test_the_pixel_count_is_read_from_the_header_before_decoding(served) -> None:  # noqa: ANN001
    bomb = black_png(25000, 25000)  # 625 megapixels: ~1.9 GB decoded, in a file of about 2 MB
    assert len(bomb) < 3 << 20
    with pytest.raises(InputError, match="25000×25000 pixels, over the limit"):
        decode_image(bomb)
    assert decode_image(black_png(300, 200)).shape == (200, 300, 3)  # the same construction, small: it decodes
    with pytest.raises(InputError, match="300×200 pixels, over the limit of 50,000"):
        decode_image(black_png(300, 200), max_pixels=50_000)  # the limit is a parameter
    with pytest.raises(InputError, match="not a readable image"):
        decode_image(b"GIF89a" + b"\0" * 5)

    api, _, system = served
    # The size in the message is read from the header: the refusal comes before any pixel is decoded.
    refused = post_frame(api, bomb)
    assert refused.status_code == 400 and "25000×25000 pixels, over the limit" in refused.json()["detail"], refused.text
    searched = api.post("/search/image", files={"file": ("probe.png", bomb, "image/png")})
    assert searched.status_code == 400 and "25000×25000 pixels, over the limit" in searched.json()["detail"]
    assert system.store.count() == 0


def _body(total_mb: int, sent: list[int]) -> Iterator[bytes]:
    """A multipart body of a `total_mb` MB file, streamed a MB at a time; `sent` counts the MB handed over."""
    yield (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
           b"Content-Type: image/jpeg\r\n\r\n")
    for _ in range(total_mb):
        sent[0] += 1
        yield b"\xff" * (1 << 20)
    yield b'\r\n--xyz\r\nContent-Disposition: form-data; name="camera_id"\r\n\r\ngate-1\r\n--xyz--\r\n'


def _post_streamed(api: httpx.Client, path: str, total_mb: int, chunked: bool) -> tuple[int | str, int]:
    """POST a big multipart body, chunked (no Content-Length) or not; (status or "closed", MB the client sent)."""
    sent = [0]
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    if chunked:
        content: bytes | Iterator[bytes] = _body(total_mb, sent)
    else:
        content = b"".join(_body(total_mb, [0]))
    try:
        return api.post(path, content=content, headers=headers).status_code, sent[0]
    except httpx.TransportError:  # the server closed the connection while the body was still coming
        return "closed", sent[0]


def test_the_upload_limit_counts_bytes_as_they_stream_chunked_or_not(served) -> None:  # noqa: ANN001
    api, _, system = served
    for path, total_mb in (("/search/image", 300), ("/frames", 55)):
        status, sent = _post_streamed(api, path, total_mb, chunked=True)
        assert status in (413, "closed"), (path, status)
        assert sent < 40, f"{path} took {sent} MB of a chunked upload over a limit of 4 MB"
        status, _ = _post_streamed(api, path, total_mb, chunked=False)
        assert status in (413, "closed"), (path, status)
    big = api.post("/frames", content=b"".join(_body(8, [0])),
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert big.status_code == 413 and "exceeds the limit" in big.json()["detail"]
    assert api.get("/health").status_code == 200  # the server is fine
    assert post_frame(api, jpeg(1)).status_code == 201  # an upload under the limit still goes in
    assert system.store.count() == 1


def test_offsets_past_2_63_are_a_422(served) -> None:  # noqa: ANN001
    api, _, _ = served
    for huge in (2**63, 2**64 + 5, 10**9 + 1):
        assert api.get("/sightings", params={"offset": huge}).status_code == 422
        assert api.get("/alerts", params={"offset": huge}).status_code == 422
        assert api.post("/search/attributes", json={"offset": huge}).status_code == 422
    assert api.get("/sightings", params={"offset": 10**9}).json() == {"count": 0, "sightings": []}
    assert api.get("/alerts", params={"offset": 10**9}).json() == []
    assert api.post("/search/image", files={"file": ("p.jpg", jpeg(1), "image/jpeg")},
                    data={"pick": str(2**63)}).status_code == 422


def _time_requests(api: httpx.Client, t: str) -> dict[str, httpx.Response]:
    """Every time parameter of the API, given `t`."""
    photo = {"file": ("p.jpg", jpeg(9), "image/jpeg")}
    square = {"type": "Polygon", "coordinates": [[[121, 31], [122, 31], [122, 32], [121, 31]]]}
    out = {}
    for name in ("start", "end"):
        out[f"GET /sightings {name}"] = api.get("/sightings", params={name: t})
        out[f"GET /search/plates {name}"] = api.get("/search/plates", params={"q": "京A12345", name: t})
        out[f"POST /search/attributes {name}"] = api.post("/search/attributes", json={name: t})
        out[f"POST /search/image {name}"] = api.post("/search/image", files=photo,
                                                     data={"filters": json.dumps({name: t})})
        out[f"POST /search/face {name}"] = api.post("/search/face", files=photo,
                                                    data={"filters": json.dumps({name: t})})
        out[f"POST /search/areas {name}"] = api.post("/search/areas", json={"areas": [{"polygon": square, name: t}]})
        for path in ("/trajectories/京A12345", "/trajectories/by-sighting/nope", "/stays/京A12345", "/clones",
                     "/co-travel/京A12345", "/audit"):
            out[f"GET {path} {name}"] = api.get(path, params={name: t})
    out["GET /alerts since"] = api.get("/alerts", params={"since": t})
    out["DELETE /sightings before"] = api.delete("/sightings", params={"before": t})
    out["POST /frames captured_at"] = post_frame(api, jpeg(8), t)
    return out


def test_a_zoned_time_outside_the_years_1_to_9999_in_utc_is_a_400_on_every_time_parameter(served) -> None:  # noqa: ANN001
    api, _, _ = served
    for t in OVERFLOWING:
        for what, response in _time_requests(api, t).items():
            assert response.status_code == 400, (t, what, response.status_code, response.text)
            assert "outside the years 1–9999" in response.json()["detail"], (t, what)
    for t in EDGES:  # valid, if odd: answered, never a 500
        for what, response in _time_requests(api, t).items():
            assert response.status_code < 500, (t, what, response.text)
    for t in OVERFLOWING:
        with pytest.raises(InputError, match="outside the years"):
            parse_time(t)
    with pytest.raises(InputError, match="outside the years"):
        require_utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


def test_nan_and_infinity_in_json_or_queries_are_a_422(served) -> None:  # noqa: ANN001
    api, _, _ = served
    json_type = {"Content-Type": "application/json"}
    for body in ('{"id": "c", "name": "C", "lon": NaN, "lat": 31}',
                 '{"id": "c", "name": "C", "lon": 121, "lat": 31, "heading_deg": NaN}',
                 '[{"id": "c", "name": "C", "lon": Infinity, "lat": 31}]',
                 '{"id": "c", "name": "C", "lon": 121, "lat": -Infinity}'):
        refused = api.post("/cameras", content=body, headers=json_type)
        assert refused.status_code == 422, (body, refused.text)
    for body in ('{"url": "rtsp://127.0.0.1/x", "camera_id": "gate-1", "sample_fps": NaN}',
                 '{"url": "rtsp://127.0.0.1/x", "camera_id": "gate-1", "sample_fps": Infinity}'):
        refused = api.post("/streams", content=body, headers=json_type)
        assert refused.status_code == 422, (body, refused.text)
    for path, name in (("/clones", "max_speed_kmh"), ("/clones", "min_plate_score"), ("/clones", "min_distance_m"),
                       ("/co-travel/京A12345", "window_s"), ("/trajectories/by-sighting/x", "min_similarity")):
        for value in ("nan", "inf", "-inf"):
            assert api.get(path, params={name: value}).status_code == 422, (path, name, value)
    assert [c["id"] for c in api.get("/cameras").json()] == ["gate-1", "gate-2"]  # nothing stored


# B. The command line ------------------------------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `sightline ARGS` in this process: (exit code, stdout, stderr). `main` lets SIGPIPE end the process (as
    a Unix tool should); pytest gets its own handling back, or a later write to a closed socket would end it."""
    before = signal.getsignal(signal.SIGPIPE)
    try:
        code = main(list(args))
    finally:
        signal.signal(signal.SIGPIPE, before)
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`sightline ARGS` must end with exit code 2 and one line of message; returns that line."""
    code, _, err = cli(capsys, *args)
    assert code == 2, (args, code, err)
    assert "Traceback" not in err and err.startswith("sightline: ") and err.count("\n") == 1, (args, err)
    return err


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A data folder with camera gate-1 (the environment's settings left out)."""
    for name in list(os.environ):
        if name.startswith("SIGHTLINE_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "cli-data"
    cams = tmp_path / "cams.csv"
    cams.write_text("id,name,lon,lat\ngate-1,Gate 1,121.29,31.21\n", encoding="utf-8")
    assert cli(capsys, "--data", str(folder), "cameras", "import", str(cams))[0] == 0
    return folder


def test_the_cli_refuses_out_of_range_times_in_one_line(data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg(1))
    d = ["--data", str(data)]
    for t in OVERFLOWING:
        assert "outside the years" in refused(capsys, *d, "ingest", str(photos / "a.jpg"), "--camera", "gate-1",
                                              "--time", t)
        manifest = tmp_path / "manifest.csv"
        manifest.write_text(f"file,camera_id,captured_at\na.jpg,gate-1,{t}\n", encoding="utf-8")
        code, _, err = cli(capsys, *d, "ingest", str(photos), "--manifest", str(manifest))
        assert code == 2 and "Traceback" not in err and "line 2: timestamp" in err  # a line per bad row
        assert "outside the years" in refused(capsys, *d, "search", "plate", "京A12345", "--start", t, *CLI_CASE)
        assert "outside the years" in refused(capsys, *d, "trajectory", "京A12345", "--end", t, *CLI_CASE)
        assert "outside the years" in refused(capsys, *d, "purge", "--before", t)
    with pytest.raises(InputError, match="line 2: timestamp .* outside the years"):
        read_manifest(photos, tmp_path / "manifest.csv")


def test_the_cli_refuses_impossible_ages_files_and_limits_in_one_line(data: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data", str(data)]
    for days in ("nan", "inf", "1e12", "-1"):
        assert "--older-than-days" in refused(capsys, *d, "purge", "--older-than-days", days)
    assert cli(capsys, *d, "purge", "--older-than-days", "30")[0] == 0

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("file,camera_id,captured_at\ncaméra.jpg,gate-1,2026-11-02T08:00:00Z\n".encode("latin-1"))
    assert "UTF-8" in refused(capsys, *d, "ingest", str(tmp_path), "--manifest", str(latin1))
    cams = tmp_path / "cams-latin1.csv"
    cams.write_bytes("id,name,lon,lat\ng,Caméra,121.2,31.2\n".encode("latin-1"))
    assert "UTF-8" in refused(capsys, *d, "cameras", "import", str(cams))

    assert cli(capsys, *d, "watchlist", "create", "stolen")[0] == 0
    assert "does not exist" in refused(capsys, *d, "watchlist", "import", "stolen", str(tmp_path / "missing.csv"))
    assert "does not exist" in refused(capsys, *d, "watchlist", "enrol", "stolen", str(tmp_path / "missing.jpg"),
                                       "--reason", "r", "--by", "me")
    assert "does not exist" in refused(capsys, *d, "watchlist", "import", "stolen", str(tmp_path))  # a folder

    roadnet = tmp_path / "roads.geojson"
    roadnet.write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in refused(capsys, *d, "cameras", "import", str(roadnet), "--roadnet")
    roadnet.write_text('{"features": [{"properties": {"type": "signal"}}]}', encoding="utf-8")
    assert "roads.geojson" in refused(capsys, *d, "cameras", "import", str(roadnet), "--roadnet")

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x", encoding="utf-8")
    for folder in (a_file, a_file / "data"):
        assert "is a file" in refused(capsys, "--data", str(folder), "cameras", "list")

    for limit in (str(2**63), str(2**64), "-1", "0"):
        assert "--limit" in refused(capsys, *d, "sightings", "--limit", limit, *CLI_CASE)
        assert "--limit" in refused(capsys, *d, "alerts", "--limit", limit)
        assert "--limit" in refused(capsys, *d, "search", "plate", "京A12345", "--limit", limit, *CLI_CASE)
    assert "--window-s" in refused(capsys, *d, "cotravel", "京A12345", "--window-s", "nan", *CLI_CASE)
    code, out, _ = cli(capsys, *d, "sightings", "--limit", "5", *CLI_CASE)
    assert code == 0 and json.loads(out) == []


# C. Retention that leaves nothing behind ----------------------------------------------------------------------

def test_alerts_naming_purged_sightings_go_with_them_and_their_deliveries(served) -> None:  # noqa: ANN001
    api, fake, system = served
    wid = api.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "ops"}).json()["id"]
    assert api.post(f"/watchlists/{wid}/entries", json={"value": "京A12345", "reason": "stolen",
                                                        "created_by": "ops"}).status_code == 201
    assert api.post("/rules", json={"name": "stolen cars", "watchlist_id": wid, "cooldown_s": 0}).status_code == 201
    assert api.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"}).status_code == 201  # nobody listens
    photos = [jpeg(40 + i) for i in range(3)]
    for photo in photos:
        fake.script(photo, [vehicle(plate="京A12345", plate_score=0.95)])
    sightings = [post_frame(api, photo, f"2026-11-02T{8 + i:02d}:00:00+08:00").json()["sightings"][0]
                 for i, photo in enumerate(photos)]
    alerts = api.get("/alerts").json()
    assert sorted(a["sighting_id"] for a in alerts) == sorted(s["id"] for s in sightings)
    by_sighting = {a["sighting_id"]: a["id"] for a in alerts}
    assert {d["alert_id"] for d in system.alert_store.deliveries()} == set(by_sighting.values())

    assert api.delete(f"/sightings/{sightings[0]['id']}").status_code == 200  # by id
    left = api.get("/alerts").json()
    assert sightings[0]["id"] not in {a["sighting_id"] for a in left} and len(left) == 2
    assert by_sighting[sightings[0]["id"]] not in {d["alert_id"] for d in system.alert_store.deliveries()}

    assert api.delete("/sightings", params={"before": "2026-11-02T09:30:00+08:00"}).json()["sightings"] == 1  # by time
    assert [a["sighting_id"] for a in api.get("/alerts").json()] == [sightings[2]["id"]]
    assert {d["alert_id"] for d in system.alert_store.deliveries()} == {by_sighting[sightings[2]["id"]]}
    # Nothing of the purged sightings is left in the alert store: no plate, camera, time or crop key.
    dump = "\n".join(system.alert_store.conn.iterdump())
    for gone in sightings[:2]:
        assert gone["id"] not in dump and gone["crop"] not in dump

    # A cloned-plate alert names its other read too: purging that read takes the alert.
    last = sightings[2]
    system.alert_store.add_alert(Alert("clone-1", "r", last["id"], "gate-1", parse_time(last["ts"]),
                                       datetime.now(timezone.utc), "high", "京A12345",
                                       {"other_sighting_id": "gone-read", "other_camera_id": "gate-2"}, last["crop"]))
    assert system.alert_store.delete_for_sightings(["gone-read"]) == 1
    assert system.alert_store.get_alert("clone-1") is None and system.alert_store.get_alert(
        by_sighting[last["id"]]) is not None


def _ago(path: Path, hours: float) -> None:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_orphan_crops_are_swept_by_the_policy_pass_and_by_purge_sweep(tmp_path: Path, model_dir: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, roads_geojson=None)
    system = Sightline(settings, FakePipeline())
    system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21)])
    kept = system.ingestor.ingest_one(PhotoJob("a.jpg", jpeg(1), "gate-1", parse_time(MORNING))).sightings[0]

    def crash(*_: object) -> None:
        raise RuntimeError("power cut")

    with pytest.MonkeyPatch.context() as patch, pytest.raises(RuntimeError, match="power cut"):
        patch.setattr(system.store, "add_frame", crash)  # the crash: after the crops, before the commit
        system.ingestor.ingest_one(PhotoJob("b.jpg", jpeg(2), "gate-1", parse_time(MORNING)))
    crops = settings.crops_dir
    crashed = [p for p in crops.rglob("*.jpg") if p.stem != kept.id]
    assert len(crashed) == 1 and system.store.count() == 1  # the orphan the crash left
    leftover = crashed[0].parent / f".{crashed[0].name}.1234.tmp"  # a write cut short
    leftover.write_bytes(b"half")
    fresh = crops / "2026" / "11" / "02" / "0123456789abcdef.jpg"  # an ingest in flight: not yet committed
    fresh.write_bytes(b"in flight")
    for path in (*crashed, leftover, crops.joinpath(kept.crop or "")):
        _ago(path, 2)
    assert sorted(system.blobs.keys()) == sorted(str(p.relative_to(crops)) for p in crops.rglob("*") if p.is_file())

    system.retention.apply_policy(days=36_500)  # the policy pass keeps every sighting and sweeps the orphans
    assert system.retention.last_sweep is not None and system.retention.last_sweep.crops == 2
    assert not crashed[0].exists() and not leftover.exists()
    assert fresh.exists() and system.blobs.get(kept.crop or "") is not None  # the young one and the stored one stay
    assert system.store.query(SightingQuery()) and system.retention.sweep_orphans().crops == 0
    system.close()

    _ago(fresh, 2)  # it never committed
    code, out, _ = cli(capsys, "--data", str(settings.data_dir), "purge", "--sweep")
    assert code == 0 and json.loads(out) == {"purged": None, "swept": {"crops": 1, "alerts": 0, "frames": 0}}
    assert not fresh.exists() and (crops / (kept.crop or "")).exists()


def test_a_capture_time_in_the_future_is_refused(served, data: Path, tmp_path: Path,  # noqa: ANN001
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    api, _, system = served
    now = datetime.now(timezone.utc)
    for ahead in (timedelta(hours=1), timedelta(days=3650), datetime(9999, 12, 31, tzinfo=timezone.utc) - now):
        refused_frame = post_frame(api, jpeg(60), (now + ahead).isoformat())
        assert refused_frame.status_code == 400 and "in the future" in refused_frame.json()["detail"]
    assert system.store.count() == 0
    assert post_frame(api, jpeg(60), (now + timedelta(minutes=1)).isoformat()).status_code == 201  # clock drift

    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg(61))
    later = (now + timedelta(days=1)).isoformat()
    assert "in the future" in refused(capsys, "--data", str(data), "ingest", str(photo), "--camera", "gate-1",
                                      "--time", later)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"file,camera_id,captured_at\na.jpg,gate-1,{later}\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2: capture time .* is in the future"):
        read_manifest(tmp_path, manifest)
