"""The stream gate: a live stream's decoder reaches the network only through it, and it goes only where the
outbound policy allows, at every hop.

Left to itself, FFmpeg follows HTTP redirects, HLS playlists (variants, segments, keys) and RTSP redirects to
wherever the camera points, and sends RTP over UDP to any `source=` the camera names, all after the one check
of the registered URL. So the decoder opens nothing itself:

- http(s): FFmpeg's `http_proxy` option sends every request it makes (redirects and playlist entries included)
  to the gate, plain http as an absolute-form request and https as `CONNECT host:port` (TLS stays end to end);
  the gate checks each target with the policy and connects only to an address it checked.
- rtsp(s): the decoder opens the gate's loopback address instead of the camera; the gate connects to the
  checked camera and relays the session, refusing a redirect (a 3xx reply or a REDIRECT request), which FFmpeg
  would follow on a connection of its own.
- the decoder options allow no other protocol (no file, udp, rtp, ...) and RTP only inside the RTSP
  connection; FFmpeg's `no_proxy` exemption is moved out of its way.
"""
from __future__ import annotations

import os
import re
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from models.records import InputError
from services.outbound import STREAM_SCHEMES, OutboundPolicy

CONNECT_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 60.0  # a camera silent this long is dropped (the decoder gives up sooner on its own)
MAX_HEAD = 64 * 1024  # bytes of one HTTP request head or RTSP message head
MAX_RTSP_BODY = 1024 * 1024  # an SDP or parameter body
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$")


class Refused(InputError):
    """A hop the gate did not take: a refused address, or a redirect the decoder would follow on its own."""


class StreamGate:
    """One stream connection's gate on a loopback port; `refused` says why it last turned a hop away."""

    def __init__(self, url: str, policy: OutboundPolicy):
        self.url, self.policy = url, policy
        self.scheme = urlsplit(url).scheme.lower()
        if self.scheme not in STREAM_SCHEMES:
            raise InputError(f"a stream URL must start with {', '.join(s + '://' for s in STREAM_SCHEMES)}")
        self.refused: str | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name=f"stream-gate-{self.port}").start()

    def decoder_source(self) -> tuple[str, str]:
        """The URL the decoder opens and the FFmpeg options that keep it behind this gate."""
        if self.scheme in ("rtsp", "rtsps"):
            parts = urlsplit(self.url)
            local = urlunsplit(("rtsp", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
            return local, "protocol_whitelist;rtsp,tcp|rtsp_transport;tcp"
        _keep_decoder_behind_proxy()
        return self.url, (f"protocol_whitelist;http,https,tls,tcp,httpproxy,crypto|http_persistent;0"
                          f"|http_proxy;http://127.0.0.1:{self.port}")

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = [self._listener, *self._sockets], set()
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> StreamGate:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            if self.scheme in ("rtsp", "rtsps"):
                self._relay(client, self._dial(self.url, (self.scheme,)), _RtspFilter(self))
            else:
                self._proxy(client)
        except (OSError, InputError, ValueError):
            pass  # the decoder sees the connection end; a refusal is in `refused`
        finally:
            _shut(client)
            with self._lock:  # forget the connections that ended
                self._sockets = {s for s in self._sockets if s.fileno() != -1}

    def _proxy(self, client: socket.socket) -> None:
        """One request of the decoder's, as an HTTP proxy: CONNECT for https, an absolute-form request for http."""
        client.settimeout(CONNECT_TIMEOUT_S)
        received = bytearray()
        while not (end := _HEAD_END.search(received)):
            data = client.recv(4096)
            if not data or len(received) > MAX_HEAD:
                return
            received += data
        line, _, headers = bytes(received[:end.end()]).partition(b"\n")
        method, target, version = line.decode("latin-1").strip().split(" ")
        try:
            if method == "CONNECT":
                upstream = self._dial(f"https://{target}/", ("https",))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = b""
            else:  # the server gets the usual origin-form request line; the Host header is the decoder's
                upstream = self._dial(target, ("http",))
                parts = urlsplit(target)
                path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
                first = f"{method} {path} {version}\r\n".encode("latin-1") + headers
        except Refused:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            raise
        client.settimeout(None)
        upstream.sendall(first + received[end.end():])
        self._relay(client, upstream)

    def _dial(self, url: str, schemes: tuple[str, ...]) -> socket.socket:
        """A connection to an address the policy allows for `url`, the one it checked (no second lookup)."""
        try:
            checked = self.policy.check(url, schemes, "stream")
        except InputError as exc:  # said before the decoder hears of it, so the worker reads it when the open fails
            self.refused = f"refused a hop of the stream (a redirect, a playlist entry or the URL itself): {exc}"
            raise Refused(self.refused) from None
        error: OSError = OSError(f"cannot connect to {checked.host}")
        for address in checked.addresses:
            try:
                sock = socket.create_connection((str(address), checked.port), timeout=CONNECT_TIMEOUT_S)
                break
            except OSError as exc:
                error = exc
        else:
            raise error
        if checked.scheme == "rtsps":  # TLS ends here, verified as FFmpeg would (the decoder speaks rtsp to the gate)
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=checked.host)
        sock.settimeout(IDLE_TIMEOUT_S)
        return self._track(sock)

    def _relay(self, client: socket.socket, upstream: socket.socket, rtsp: _RtspFilter | None = None) -> None:
        """Copy both ways until either side ends; RTSP passes `rtsp`'s checks on the way."""
        back = threading.Thread(target=_copy, args=(upstream, client, rtsp.from_camera if rtsp else None),
                                daemon=True)
        back.start()
        _copy(client, upstream, rtsp.from_decoder if rtsp else None)
        back.join()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock


class _RtspFilter:
    """Reads each direction of an RTSP session as FFmpeg does ('$'-framed interleaved RTP/RTCP, or a text head
    with a Content-Length body): the decoder's requests name the camera's URL, not the gate's; a redirect from
    the camera is refused."""

    def __init__(self, gate: StreamGate):
        parts = urlsplit(gate.url)
        self.gate, self.camera = gate, f"{parts.scheme}://{parts.netloc}".encode()
        self.local = re.compile(rb"rtsp://127\.0\.0\.1:%d(?!\d)" % gate.port)
        self.buffers = {True: bytearray(), False: bytearray()}

    def from_decoder(self, data: bytes) -> bytes:
        return b"".join(m if m[:1] == b"$" else self.local.sub(lambda _: self.camera, m, count=1)
                        for m in self._split(True, data))

    def from_camera(self, data: bytes) -> bytes:
        messages = self._split(False, data)
        for message in messages:
            words = message[:200].split(b"\n", 1)[0].upper().split()
            if message[:1] != b"$" and words and (words[0] == b"REDIRECT" or (
                    words[0].startswith(b"RTSP/") and len(words) > 1 and words[1].startswith(b"3"))):
                self.gate.refused = ("refused an RTSP redirect from the camera: the decoder would follow it past the "
                                     "outbound policy; register the URL it points to instead")
                raise ValueError("an RTSP redirect")
        return b"".join(messages)

    def _split(self, decoder: bool, data: bytes) -> list[bytes]:
        buffer = self.buffers[decoder]
        buffer += data
        messages = []
        while buffer:
            if buffer[:1] == b"$":  # '$', channel, 16-bit length, RTP or RTCP packet
                if len(buffer) < 4:
                    break
                end = 4 + int.from_bytes(buffer[2:4], "big")
            else:
                head = _HEAD_END.search(buffer)
                if head is None:
                    if len(buffer) > MAX_HEAD:
                        raise ValueError("an RTSP message head is too long")
                    break
                length = _CONTENT_LENGTH.search(buffer, 0, head.start() + 1)
                body = int(length.group(1)) if length else 0
                if body > MAX_RTSP_BODY:
                    raise ValueError("an RTSP message body is too long")
                end = head.end() + body
            if len(buffer) < end:
                break
            messages.append(bytes(buffer[:end]))
            del buffer[:end]
        return messages


def _copy(source: socket.socket, sink: socket.socket, change: Callable[[bytes], bytes] | None) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(change(data) if change else data)
    except (OSError, ValueError):
        pass
    finally:
        _shut(source)
        _shut(sink)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _keep_decoder_behind_proxy() -> None:
    """FFmpeg skips its proxy, hence the gate, for every host named in the lower-case `no_proxy` variable (it
    reads no other, at every request): the list moves to NO_PROXY, which Python's HTTP clients read as well."""
    bypass = os.environ.pop("no_proxy", None)
    if bypass:
        os.environ.setdefault("NO_PROXY", bypass)
