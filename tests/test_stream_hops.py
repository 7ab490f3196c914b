"""Every hop of a live stream passes the outbound policy (issue #32): an HTTP redirect, HLS playlist entries
(segments, keys, variant playlists), an RTSP redirect and RTP over UDP never take the decoder to an address the
operator did not allow.

Real servers on loopback: the camera on 127.0.0.1, the one address allowed; the forbidden target on 127.0.0.2
(Linux routes all of 127/8 to lo) or [::1], which records every connection or datagram it gets.
"""
from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from models.records import Camera
from services.outbound import OutboundPolicy
from services.system import Sightline
from services.video import StreamManager, StreamStatus

Route = tuple[int, dict[str, str], bytes]  # status, headers, body


class Forbidden:
    """A listener on an address the policy refuses: it must never hear from the server."""

    def __init__(self, host: str = "127.0.0.2", udp: bool = False):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        self.got: list[bytes] = []
        if not udp:
            self.sock.listen(8)
        threading.Thread(target=self._record, args=(udp,), daemon=True).start()

    def _record(self, udp: bool) -> None:
        while True:
            try:
                if udp:
                    self.got.append(self.sock.recvfrom(4096)[0])
                else:
                    conn, _ = self.sock.accept()
                    conn.settimeout(1)
                    try:
                        self.got.append(conn.recv(4096) or b"(connected)")
                    except OSError:
                        self.got.append(b"(connected)")
                    conn.close()
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


class HttpCamera:
    """An HTTP camera on 127.0.0.1 answering each path from `routes`."""

    def __init__(self, routes: dict[str, Route]):
        self.routes, self.asked = routes, []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                camera.asked.append(self.path)
                status, headers, body = camera.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RtspCamera:
    """A small RTSP camera on 127.0.0.1: MPEG-TS over RTP (payload 33) interleaved in the RTSP connection, or
    `redirect` (DESCRIBE answered 302 to that URL), or `udp_source` (RTP over UDP only, from that address)."""

    SDP = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
           b"m=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:track1\r\n")

    def __init__(self, ts: bytes = b"", redirect: str = "", udp_source: Forbidden | None = None):
        self.ts, self.redirect, self.udp_source = ts, redirect, udp_source
        self.asked: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self.sock.getsockname()[1]}/cam"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                line, *fields = head.decode().split("\r\n")
                self.asked.append(line)
                headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
                self._answer(conn, line.split()[0], headers)
        except OSError:
            return

    def _answer(self, conn: socket.socket, method: str, headers: dict[str, str]) -> None:
        def reply(status: str, extra: str = "", body: bytes = b"") -> None:
            conn.sendall(f"RTSP/1.0 {status}\r\nCSeq: {headers.get('cseq', '0')}\r\n{extra}"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

        transport = headers.get("transport", "")
        if method == "DESCRIBE" and self.redirect:
            reply("302 Moved Temporarily", f"Location: {self.redirect}\r\n")
        elif method == "DESCRIBE":
            reply("200 OK", "Content-Type: application/sdp\r\n", self.SDP)
        elif method == "SETUP" and self.udp_source and "TCP" in transport:
            reply("461 Unsupported Transport")
        elif method == "SETUP" and self.udp_source:
            client = re.search(r"client_port=([\d-]+)", transport)
            port = self.udp_source.port
            reply("200 OK", f"Session: 1\r\nTransport: RTP/AVP;unicast;client_port={client and client[1]};"
                            f"server_port={port}-{port + 1};source=127.0.0.2\r\n")
        elif method == "SETUP":
            reply("200 OK", "Session: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        elif method == "PLAY":
            reply("200 OK", "Session: 1\r\n")
            if self.ts and not self.udp_source:
                threading.Thread(target=self._play, args=(conn,), daemon=True).start()
        else:
            reply("200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\nSession: 1\r\n")

    def _play(self, conn: socket.socket) -> None:
        """The segment over and over, seven TS packets to an RTP packet, '$'-framed on channel 0."""
        chunk, seq = 7 * 188, 0
        try:
            while True:
                for at in range(0, len(self.ts), chunk):
                    header = struct.pack("!BBHII", 0x80, 33, seq & 0xFFFF, seq * 900 & 0xFFFFFFFF, 1)
                    rtp = header + self.ts[at:at + chunk]
                    conn.sendall(b"$\x00" + struct.pack("!H", len(rtp)) + rtp)
                    seq += 1
                    time.sleep(0.002)
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two seconds of MPEG-TS video (10 fps), made here."""
    path = tmp_path_factory.mktemp("hls") / "segment.ts"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 12, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.fixture
def streams(fake_system: Sightline) -> Iterator[StreamManager]:
    """Streams that may reach 127.0.0.1 only."""
    fake_system.store.upsert_cameras([Camera("cam-s", "Stream camera", 121.29, 31.21, kind="surveillance")])
    manager = StreamManager(fake_system.ingestor, sample_fps=5.0, policy=OutboundPolicy(["127.0.0.1"]))
    yield manager
    manager.stop_all()


def _wait(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _refused(status: StreamStatus, forbidden: Forbidden, *why: str) -> None:
    """The first connection ended with a clear refusal, and the forbidden address heard nothing."""
    assert _wait(lambda: status.reconnects >= 1), status
    time.sleep(0.3)
    assert forbidden.got == []
    assert status.state == "reconnecting" and status.frames == 0
    for words in why:
        assert words in (status.last_error or ""), status.last_error


def _playlist(*lines: str) -> Route:
    """A media playlist, or a master playlist when it names variant streams."""
    media = not any(line.startswith("#EXT-X-STREAM-INF") for line in lines)
    text = "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", *["#EXT-X-TARGETDURATION:2"] * media, *lines]) + "\n"
    return 200, {"Content-Type": "application/vnd.apple.mpegurl"}, text.encode()


def test_an_http_redirect_to_a_refused_address_is_not_followed(streams: StreamManager,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.2")  # FFmpeg would skip its proxy (the gate) for these hosts
    forbidden = Forbidden()
    camera = HttpCamera({"/video": (302, {"Location": f"http://{forbidden.url}/video"}, b"")})
    try:
        status = streams.add(camera.url + "/video", "cam-s")
        _refused(status, forbidden, "refused", "127.0.0.2 is a loopback address")
        assert "/video" in camera.asked
    finally:
        camera.close()
        forbidden.close()


@pytest.mark.parametrize("entry", ["segment", "key", "variant playlist on [::1]"])
def test_hls_playlist_entries_on_a_refused_address_are_not_fetched(streams: StreamManager, segment: bytes,
                                                                   entry: str) -> None:
    forbidden = Forbidden("::1" if "::1" in entry else "127.0.0.2")
    playlist = {
        "segment": _playlist("#EXTINF:2,", f"http://{forbidden.url}/a.ts", "#EXT-X-ENDLIST"),
        "key": _playlist(f'#EXT-X-KEY:METHOD=AES-128,URI="http://{forbidden.url}/key"', "#EXTINF:2,", "/a.ts",
                         "#EXT-X-ENDLIST"),
        "variant playlist on [::1]": _playlist("#EXT-X-STREAM-INF:BANDWIDTH=100000", f"http://{forbidden.url}/v.m3u8"),
    }[entry]
    camera = HttpCamera({"/live.m3u8": playlist, "/a.ts": (200, {"Content-Type": "video/mp2t"}, segment)})
    try:
        status = streams.add(camera.url + "/live.m3u8", "cam-s")
        _refused(status, forbidden, "refused", "is a loopback address")
        assert "/live.m3u8" in camera.asked
    finally:
        camera.close()
        forbidden.close()


def test_an_rtsp_redirect_is_refused(streams: StreamManager) -> None:
    forbidden = Forbidden()
    camera = RtspCamera(redirect=f"rtsp://{forbidden.url}/cam")
    try:
        status = streams.add(camera.url, "cam-s")
        _refused(status, forbidden, "refused an RTSP redirect")
        assert any(line.startswith("DESCRIBE rtsp://127.0.0.1:") for line in camera.asked)
    finally:
        camera.close()
        forbidden.close()


def test_rtp_never_goes_over_udp_to_an_address_the_camera_names(streams: StreamManager) -> None:
    """A camera refusing RTP inside the RTSP connection offers UDP from `source=127.0.0.2`: FFmpeg would send its
    NAT-opening packets there. Streams take RTP over the checked TCP connection only."""
    forbidden = Forbidden(udp=True)
    camera = RtspCamera(udp_source=forbidden)
    try:
        status = streams.add(camera.url, "cam-s")
        _refused(status, forbidden, "cannot open video")
        assert any(line.startswith("SETUP") for line in camera.asked)
        assert not any(line.startswith("PLAY") for line in camera.asked)
    finally:
        camera.close()
        forbidden.close()


@pytest.mark.parametrize("kind", ["hls behind an allowed redirect", "rtsp"])
def test_allowed_streams_still_play_through_the_gate(streams: StreamManager, segment: bytes, kind: str) -> None:
    if kind == "rtsp":
        camera: HttpCamera | RtspCamera = RtspCamera(ts=segment)
        url = camera.url
    else:
        camera = HttpCamera({"/cam": (302, {"Location": "/live.m3u8"}, b""),
                             "/a.ts": (200, {"Content-Type": "video/mp2t"}, segment)})
        camera.routes["/live.m3u8"] = _playlist(*["#EXTINF:2,", "/a.ts", "#EXTINF:2,", f"{camera.url}/a.ts"] * 4,
                                                "#EXT-X-ENDLIST")
        url = camera.url + "/cam"
    try:
        status = streams.add(url, "cam-s")
        assert _wait(lambda: status.frames >= 5), status
        assert status.last_error is None or "refused" not in status.last_error
    finally:
        camera.close()

