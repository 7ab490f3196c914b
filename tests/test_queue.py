"""The frame queue and its workers with a real redis-server, real worker processes and real HTTP.

Workers here run the fake pipeline (tests/fakes.py) on the real eval photo bytes: what is under test is the
queue — reclaiming a killed worker's frames, exactly-once storage, dead letters, alerts reaching every API
replica and webhooks sent once — not the models (they have their own tests; `sightline bench workers` runs them).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from indexer.store import SightingQuery
from models.records import Camera
from services.api.app import create_app
from services.api.localserver import serving
from services.bench.workers import free_port, redis_server
from services.cli.main import main
from services.ingest import image_files
from services.queue import QueuedFrame, RedisFrameQueue
from services.settings import Settings
from services.system import Sightline
from services.worker import Worker
from tests.conftest import REPO, auth_headers
from tests.fakes import FakePipeline

WAIT_S = 120  # a deadline for things to happen on a busy machine, never a measure of speed
CAMERA = Camera("cam-1", "Gate 1", 121.2, 31.3)
WORKER = """
import json, sys, time
from pathlib import Path
from services.settings import Settings
from services.system import Sightline
from services.worker import Worker
from services.worker import serve
from tests.fakes import FakePipeline

data, url, delay, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

class Slow(FakePipeline):
    def process(self, frames):
        time.sleep(delay * len(frames))  # a slow model, so that a batch is in flight long enough to kill it
        return super().process(frames)

settings = Settings(data_dir=Path(data), model_dir=Path(data) / "no-models", roads_geojson=None, queue=url,
                    vector_backend="store-only")
with Sightline(settings, Slow()) as system:
    counts = serve(system, name, batch=4, claim_timeout_s=2.0, max_tries=3, reload_s=0.5)
print(json.dumps(counts.__dict__), flush=True)
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of this module's own, on a free port."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisFrameQueue]:
    q = RedisFrameQueue(redis_url, 50 << 20).check()
    q.r.flushdb()
    q.clear()
    yield q
    q.close()


def settings_for(data: Path, url: str, **more: object) -> Settings:
    return Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None, queue=url, **more)  # type: ignore[arg-type]


def start_worker(data: Path, url: str, name: str, delay: float = 0.0) -> subprocess.Popen:
    """A worker process (the fake pipeline); returns once it said it is ready."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(data), url, str(delay), name], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert '"ready"' in line, f"worker {name} did not start: {line!r}"
    return proc


def wait_for(condition, what: str) -> None:  # noqa: ANN001 - a callable returning a truth value
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def prepare(data: Path) -> None:
    with Sightline(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None), FakePipeline()) as s:
        s.store.upsert_cameras([CAMERA])


def test_two_workers_one_killed_mid_batch_store_every_frame_once_and_dead_letter_the_corrupt_one(
        tmp_path: Path, eval_dir: Path, queue: RedisFrameQueue, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    prepare(data)
    photos = image_files([eval_dir / "plates" / "full"])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    a = start_worker(data, queue.url, "worker-a", delay=0.2)
    b = start_worker(data, queue.url, "worker-b", delay=0.2)
    try:  # queued through the CLI, as an operator does
        code = main(["--data", str(data), "ingest", str(eval_dir / "plates" / "full"), str(corrupt), "--camera",
                     CAMERA.id, "--time", "2026-11-02T08:00:00+08:00", "--queue", queue.url])
        assert code == 0

        def a_holds_frames() -> bool:
            return any(c.name == "worker-a" and c.pending > 0 for c in queue.status().consumers)

        wait_for(a_holds_frames, "worker A to take a batch")
        a.send_signal(signal.SIGKILL)  # mid-batch: its frames stay pending under its name
        a.wait(30)

        def drained() -> bool:
            s = queue.status()
            return s.waiting == 0 and s.pending == 0

        wait_for(drained, "the queue to drain")
        b.send_signal(signal.SIGTERM)  # a clean stop after the current batch
        out, _ = b.communicate(timeout=60)
        assert b.returncode == 0
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    status = queue.status()
    assert status.reclaimed >= 1  # the dead worker's frames were taken back by the live one
    assert status.acked == len(photos) and status.dead_letters == 1
    assert json.loads(out.strip().splitlines()[-1])["acked"] >= 1
    with Sightline(Settings(data_dir=data, model_dir=data / "no-models", roads_geojson=None), FakePipeline()) as s:
        assert s.store.count() == len(photos)  # the fake pipeline sees one vehicle per photo: none lost, none twice
        for photo in photos:
            sha = hashlib.sha256(photo.read_bytes()).hexdigest()
            assert len(s.store.query(SightingQuery(frame_sha256=sha, limit=10))) == 1, photo.name
    [dead] = queue.dead_letters()
    assert dead["source"] == str(corrupt) and "not a readable image" in dead["reason"], dead
    assert main(["queue", "status", "--queue", queue.url]) == 0 and main(["queue", "dead", "--queue", queue.url]) == 0
    printed = capsys.readouterr().out
    assert '"dead_letters": 1' in printed and '"reclaimed"' in printed and "not a readable image" in printed
    # retry-dead puts it back on the queue (where it would fail again: nothing is lost meanwhile)
    assert queue.retry_dead() == 1 and queue.status().waiting == 1 and queue.status().dead_letters == 0


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server handler name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.headers["Idempotency-Key"], json.loads(body)))
        time.sleep(0.5)  # a slow receiver: the other replica's sender polls meanwhile and sees the delivery due
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def sse_alerts(url: str, headers: dict[str, str], seen: list[dict], ready: threading.Event) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(5, read=WAIT_S)) as client, \
            client.stream("GET", "/alerts/stream") as response:
        for line in response.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                return


def test_a_workers_alert_reaches_every_api_replica_and_its_webhook_is_sent_once(
        tmp_path: Path, eval_dir: Path, queue: RedisFrameQueue) -> None:
    data = tmp_path / "data"
    prepare(data)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    Receiver.received = []
    settings = settings_for(data, queue.url, outbound_allow=("127.0.0.1",))
    one, two = create_app(settings, FakePipeline()), create_app(settings, FakePipeline())
    worker = None
    try:
        with serving(one) as url_one, serving(two) as url_two:
            admin = auth_headers(one, "admin")  # both replicas share the accounts: one set of tokens
            with httpx.Client(base_url=url_one, headers=admin, timeout=30) as api:
                wid = api.post("/watchlists", json={"name": "any vehicle", "kind": "attribute"}).json()["id"]
                api.post(f"/watchlists/{wid}/entries", json={"conditions": {"kind": "vehicle"}, "reason": "test",
                                                             "created_by": "test"}).raise_for_status()
                api.post("/rules", json={"name": "vehicles", "watchlist_id": wid}).raise_for_status()
                hook = api.post("/webhooks", json={"url": f"http://127.0.0.1:{receiver.server_port}/hook"})
                assert hook.status_code == 201, hook.text
            seen: dict[str, list[dict]] = {url_one: [], url_two: []}
            listeners = []
            for url, got in seen.items():
                ready = threading.Event()
                t = threading.Thread(target=sse_alerts, args=(url, auth_headers(one, "viewer"), got, ready),
                                     daemon=True)
                t.start()
                assert ready.wait(30)
                listeners.append(t)
            worker = start_worker(data, queue.url, "worker-alerts")  # neither API process ingests the frame
            photo = image_files([eval_dir / "plates" / "full"])[0]
            queue.put([QueuedFrame(photo.name, photo.read_bytes(), CAMERA.id, datetime.now(timezone.utc))])
            for t in listeners:
                t.join(WAIT_S)
            assert [len(got) for got in seen.values()] == [1, 1], seen
            alert = seen[url_one][0]
            assert seen[url_two][0]["id"] == alert["id"] and alert["details"]["rule"] == "vehicles"
            store = one.state.system.alert_store
            wait_for(lambda: store.deliveries("delivered"), "the webhook delivery")
            time.sleep(1.5)  # both replicas' senders poll every 0.25 s: room for a second send, were there one
            assert [key for key, _ in Receiver.received] == [alert["id"]]
            with httpx.Client(base_url=url_two, headers=auth_headers(one, "investigator"), timeout=30) as api:
                health = api.get("/health").json()
                metrics = api.get("/metrics")
                # the worker kept no vector index: this replica's index catches up from the store before searching
                found = api.post("/search/image", files={"file": ("q.jpg", photo.read_bytes(), "image/jpeg")},
                                 data={"kind": "vehicle"})
            assert found.status_code == 200 and found.json()["results"][0]["sighting"]["id"] == alert["sighting_id"]
            assert health["queue"]["acked"] == 1 and health["queue"]["waiting"] == 0, health
            assert metrics.status_code == 200 and "sightline_queue_acked_total 1" in metrics.text
            assert "sightline_alerts 1" in metrics.text and 'sightline_webhook_deliveries{state="delivered"} 1' \
                in metrics.text
    finally:
        receiver.shutdown()
        if worker is not None:
            worker.terminate()
            worker.wait(30)


class Broken(FakePipeline):
    def process(self, frames):  # noqa: ANN001, ANN201 - FramePipeline.process
        raise RuntimeError("the model server is gone")


def test_a_frame_that_keeps_failing_goes_to_the_dead_letters_with_its_reason_after_max_tries(
        tmp_path: Path, eval_dir: Path, queue: RedisFrameQueue) -> None:
    data = tmp_path / "data"
    prepare(data)
    photo = image_files([eval_dir / "plates" / "full"])[0]
    queue.put([QueuedFrame(photo.name, photo.read_bytes(), CAMERA.id, datetime.now(timezone.utc))])
    queue.claim_ms, queue.max_tries = 0, 3  # a failed frame may be taken again at once
    with Sightline(settings_for(data, queue.url, vector_backend="store-only"), Broken()) as system:
        worker = Worker(queue, system.ingestor, "in-process")
        for attempt in range(1, 4):
            [taken] = queue.take("in-process", 4, block_ms=100)
            assert taken.tries == attempt
            worker.process([taken])
            assert queue.status().dead_letters == (attempt == 3)
        assert system.store.count() == 0
    [dead] = queue.dead_letters()
    assert dead["reason"] == "RuntimeError: the model server is gone" and dead["tries"] == "3"
    assert queue.status().pending == 0 and worker.counts.failed == 3 and worker.counts.dead == 1


@pytest.mark.parametrize("argv, message", [
    (["queue", "status", "--queue", "http://127.0.0.1:6379/0"], "redis://HOST:PORT/DB"),
    (["queue", "status", "--queue", "redis://127.0.0.1:notaport/0"], "not valid"),
    (["queue", "retry-dead", "--queue", "redis://127.0.0.1:6379/99"], "database"),
    (["worker"], "give --queue"),
    (["worker", "--queue", "redis://127.0.0.1:6379/0", "--batch", "0"], "--batch"),
])
def test_bad_queue_arguments_are_a_message_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGHTLINE_QUEUE", raising=False)
    assert main(["--data", str(tmp_path / "data"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sightline: ") and message in err and "Traceback" not in err


def test_an_unreachable_queue_is_a_message_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    for argv in (["queue", "status", "--queue", closed],
                 ["ingest", str(photo), "--camera", "c", "--time", "2026-11-02T08:00:00Z", "--queue", closed]):
        assert main(["--data", str(tmp_path / "data"), *argv]) == 2
        err = capsys.readouterr().err
        assert "cannot reach the queue" in err and "Traceback" not in err


@pytest.mark.models
def test_the_worker_command_reads_a_plate_from_the_queue_with_the_real_models_and_stops_on_sigterm(
        tmp_path: Path, eval_dir: Path, model_dir: Path, queue: RedisFrameQueue) -> None:
    data = tmp_path / "data"
    prepare(data)
    photo = eval_dir / "plates" / "full" / "0001.jpg"  # 皖AY766D (plates/full/labels.tsv)
    proc = subprocess.Popen([sys.executable, "-m", "services.cli.main", "--data", str(data), "--models",
                             str(model_dir), "worker", "--queue", queue.url, "--name", "cli-worker"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and '"ready"' in proc.stdout.readline()
        assert main(["--data", str(data), "ingest", str(photo), "--camera", CAMERA.id, "--time",
                     "2026-11-02T08:00:00+08:00", "--queue", queue.url]) == 0
        wait_for(lambda: queue.status().acked == 1, "the frame to be acknowledged")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and json.loads(out.strip().splitlines()[-1])["acked"] == 1
    assert [c.name for c in queue.status().consumers] == []  # a clean stop leaves the group
    with Sightline(Settings(data_dir=data, model_dir=model_dir, roads_geojson=None)) as s:
        plates = [getattr(x.attributes, "plate", None) for x in s.store.query(SightingQuery(kind="vehicle"))]
    assert "皖AY766D" in plates
