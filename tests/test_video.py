"""Video files and live streams on real eval video: one sighting per object, reconnection, bad sources."""
from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from models.records import Camera, InputError
from services.outbound import OutboundPolicy
from services.system import Sightline
from services.video import StreamManager, VideoProcessor

pytestmark = pytest.mark.models
START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)

# Counted by eye once, frame by frame: four cars cross the view of car-detection.mp4 (one going up at
# 5-8 s, two side by side at 15-19 s, one at 26-28 s); the dark shapes at the top edge are parked cars.
CARS_CROSSING = 4
# vtest.avi: people walking through the plaza, counted by eye on 2-second frame grids (5-9 people in
# view at a time, each crossing in 10-20 s): about 32 passages over the 80 s.
PEOPLE_PASSING = 32


@pytest.fixture
def video_system(system: Sightline) -> Sightline:
    system.store.upsert_cameras([Camera("cam-v", "Video camera", 121.29, 31.21, kind="surveillance")])
    return system


def test_one_sighting_per_car_crossing_the_view(video_system: Sightline, eval_dir: Path) -> None:
    processor = VideoProcessor(video_system.ingestor, sample_fps=5.0)
    report = processor.ingest_file(eval_dir / "video" / "car-detection.mp4", "cam-v", START)
    vehicles = [s for s in report.sightings if s.kind == "vehicle"]
    assert len(vehicles) == CARS_CROSSING
    for s in vehicles:
        assert s.track is not None and s.track.first_seen <= s.ts <= s.track.last_seen
        assert len(s.track.path) == s.track.frames >= 3 and s.vector_id is not None
        assert s.crop and video_system.blobs.get(s.crop)
    assert 25 <= report.video_seconds <= 35 and report.sampled <= report.frames / 2
    again = processor.ingest_file(eval_dir / "video" / "car-detection.mp4", "cam-v", START)
    assert again.sightings == [] and again.skipped_tracks == report.tracks  # a rerun stores nothing twice


def test_person_tracks_stay_close_to_the_people_walking_through(video_system: Sightline, eval_dir: Path) -> None:
    report = VideoProcessor(video_system.ingestor).ingest_file(eval_dir / "video" / "vtest.avi", "cam-v", START)
    people = [s for s in report.sightings if s.kind == "person"]
    assert 0.6 * PEOPLE_PASSING <= len(people) <= 1.5 * PEOPLE_PASSING
    assert all(s.attributes.gender in ("male", "female") for s in people)


def test_bad_video_sources_are_clear_errors(video_system: Sightline, tmp_path: Path) -> None:
    processor = VideoProcessor(video_system.ingestor)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 not a video at all" * 100)
    with pytest.raises(InputError, match="cannot open video"):
        processor.ingest_file(junk, "cam-v", START)
    with pytest.raises(InputError, match="does not exist"):
        processor.ingest_file(tmp_path / "missing.mp4", "cam-v", START)
    with pytest.raises(InputError, match="unknown camera"):
        processor.ingest_file(junk, "nope", START)
    with pytest.raises(InputError, match="time zone"):
        processor.ingest_file(junk, "cam-v", datetime(2026, 11, 2, 8, 0))


class MjpegServer:
    """A local MJPEG-over-HTTP camera serving vtest.avi frames; `stop()` drops every viewer at once."""

    def __init__(self, frames: list[bytes], port: int = 0):
        self.frames, self.alive = frames, threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while server.alive.is_set():
                    jpeg = server.frames[i % len(server.frames)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                    except OSError:
                        return
                    i += 1
                    time.sleep(0.1)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.alive.set()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.alive.clear()
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait(condition, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_dropped_stream_reconnects_and_a_silent_one_does_not_disturb_it(video_system: Sightline,
                                                                         eval_dir: Path) -> None:
    capture = cv2.VideoCapture(str(eval_dir / "video" / "vtest.avi"))
    frames = [cv2.imencode(".jpg", capture.read()[1])[1].tobytes() for _ in range(40)]
    camera = MjpegServer(frames)
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    manager = StreamManager(video_system.ingestor, sample_fps=5.0, policy=OutboundPolicy(["127.0.0.1"]))
    try:
        live = manager.add(f"http://127.0.0.1:{camera.port}/stream.mjpg", "cam-v")
        dead = manager.add(f"http://127.0.0.1:{silent.getsockname()[1]}/stream", "cam-v")
        assert _wait(lambda: live.state == "running" and live.frames >= 5, 30)
        camera.stop()  # the camera drops off the network
        assert _wait(lambda: live.state == "reconnecting", 30)
        frames_before = live.frames
        camera = MjpegServer(frames, port=camera.port)  # and comes back on the same address
        assert _wait(lambda: live.state == "running" and live.frames > frames_before + 5, 60)
        assert live.reconnects >= 1
        assert dead.state == "reconnecting" and "cannot open video" in (dead.last_error or "")
        with pytest.raises(InputError, match="unknown camera"):
            manager.add("http://127.0.0.1:1/x", "nope")
    finally:
        manager.stop_all()
        camera.stop()
        silent.close()
    assert live.state == dead.state == "stopped" and manager.list() == []
