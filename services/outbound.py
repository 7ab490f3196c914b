"""The one outbound URL policy: where the service may send a request because a caller named a URL.

Webhooks and live streams make the server open connections a caller chose. What they may reach is the
operator's choice: a URL is a plain http(s) (streams also rtsp/rtsps) URL without whitespace, control
characters or credentials, and every address its host resolves to is public — loopback, private,
link-local, reserved, multicast and cloud-metadata addresses are refused unless the operator names the
host, the address or its network in `Settings.outbound_allow` (SIGHTLINE_OUTBOUND_ALLOW). Local files are
never a URL: they are ingested with the CLI (`sightline ingest`).

The check runs when a URL is registered and again before every request (DNS may have changed since);
`http_client` also checks each address it connects to, so a name that resolves differently between the
check and the connection (DNS rebinding) cannot reach a refused address, and each redirect a caller
follows is checked like a new URL.
"""
from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from models.records import InputError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], list[str]]

WEBHOOK_SCHEMES = ("http", "https")
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}
MAX_URL = 2048
ALLOW_ENV = "SIGHTLINE_OUTBOUND_ALLOW"
# Cloud instance-metadata services: refused even inside an allowed network unless named one by one.
METADATA = frozenset(ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
_NAT64 = ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class Unresolvable(InputError):
    """The host did not resolve: a registration is refused, a delivery is retried later."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the policy, with the addresses its host resolved to when it was checked."""

    url: str
    scheme: str
    host: str  # lower case, IDNA (ASCII)
    port: int
    addresses: tuple[IPAddress, ...]

    def __str__(self) -> str:
        return self.url


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (getaddrinfo), as text."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class OutboundPolicy:
    """Checks URLs a caller names against the operator's allow-list (host names, addresses, networks)."""

    def __init__(self, allow: Iterable[str] = (), resolver: Resolver = system_resolver):
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in allow:
            text = entry.strip().lower().rstrip(".")
            if not text:
                continue
            try:
                networks.append(ip_network(text.removeprefix("[").removesuffix("]"), strict=False))
                continue
            except ValueError:
                pass
            try:
                name = text.encode("idna").decode("ascii")
            except UnicodeError:
                name = ""
            if not _HOST_NAME.match(name):
                raise InputError(f"{ALLOW_ENV}: {entry!r} is not a host name, an IP address or a network (CIDR)")
            hosts.add(name)
        self.hosts, self.networks, self.resolver = frozenset(hosts), tuple(networks), resolver

    def check(self, url: object, schemes: Iterable[str] = WEBHOOK_SCHEMES, what: str = "webhook") -> CheckedURL:
        """The URL, checked and resolved; anything else is an InputError that says why (never echoing it whole)."""
        schemes = tuple(schemes)
        if not isinstance(url, str) or not url.strip():
            raise InputError(f"the {what} URL is empty")
        if len(url) > MAX_URL:
            raise InputError(f"the {what} URL is longer than {MAX_URL} characters")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise InputError(f"the {what} URL contains whitespace or control characters (such as CR/LF); "
                             f"percent-encode them")
        if "\\" in url:
            raise InputError(f"the {what} URL contains a backslash; percent-encode it")
        allowed = ", ".join(f"{s}://" for s in schemes)
        try:
            parts = urlsplit(url)
        except ValueError:
            raise InputError(f"the {what} URL cannot be parsed") from None
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            local = scheme in ("", "file") or len(scheme) == 1  # a path, file://, or C:/...
            raise InputError(f"a {what} URL must start with {allowed}" + (
                "; local files are not read through the API, ingest them with the CLI (sightline ingest)"
                if local else f", not {scheme}:"))
        if not url[len(scheme) + 1:].startswith("//"):
            raise InputError(f"the {what} URL names no host: write {scheme}://host/...")
        if "@" in parts.netloc:
            raise InputError(f"a {what} URL may not carry credentials (user:password@host); they would be stored "
                             f"and shown in clear")
        try:
            port = parts.port
        except ValueError:
            raise InputError(f"the {what} URL's port is not a number from 1 to 65535") from None
        if port == 0:
            raise InputError(f"the {what} URL's port is not a number from 1 to 65535")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise InputError(f"the {what} URL names no host")
        try:
            host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            raise InputError(f"the {what} URL's host is not a valid host name") from None
        port = port or DEFAULT_PORTS[scheme]
        return CheckedURL(url, scheme, host, port, self.addresses(host, port, what))

    def addresses(self, host: str, port: int, what: str = "outbound") -> tuple[IPAddress, ...]:
        """The addresses `host` resolves to, when each may be reached; else an InputError naming the first refused."""
        host = host.lower().removeprefix("[").removesuffix("]").rstrip(".")
        try:
            found = list(dict.fromkeys(ip_address(a) for a in self.resolver(host, port)))
        except (OSError, UnicodeError, ValueError) as exc:
            raise Unresolvable(f"the {what} host {host} does not resolve ({_reason(exc)})") from None
        if not found:
            raise Unresolvable(f"the {what} host {host} does not resolve")
        if host in self.hosts:  # the operator named this host: wherever it points is theirs to choose
            return tuple(found)
        for address in found:
            kind = refused_kind(address)
            if kind and not self._allows(address):
                shown = host if _is_literal(host) else f"{host} resolves to {address}, which"
                raise InputError(f"the {what} host {shown} is {kind}: requests to loopback, private, link-local, "
                                 f"reserved and cloud-metadata addresses are refused unless the operator allows the "
                                 f"host in {ALLOW_ENV}")
        return tuple(found)

    def _allows(self, address: IPAddress) -> bool:
        candidates = {address, _embedded(address)}
        if address in METADATA or _embedded(address) in METADATA:  # only an entry for exactly that address
            return any(n.num_addresses == 1 and n.network_address in candidates for n in self.networks)
        return any(a in n for a in candidates for n in self.networks if a.version == n.version)


def refused_kind(address: IPAddress) -> str | None:
    """What makes an address off limits without an allow-list entry ('a loopback address', ...), or None."""
    ip = _embedded(address)
    if ip in METADATA:
        return "a cloud metadata address"
    for test, kind in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                       ("is_unspecified", "an unspecified address"), ("is_multicast", "a multicast address"),
                       ("is_private", "a private address"), ("is_reserved", "a reserved address")):
        if getattr(ip, test):
            return kind
    return None if ip.is_global else "not a public address"


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address (else the address itself)."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _is_literal(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


class _CheckedBackend(httpcore.SyncBackend):
    """Opens each TCP connection only to an address the policy allows, the one it checked (no second lookup)."""

    def __init__(self, policy: OutboundPolicy):
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self.policy.addresses(host, port):
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"cannot connect to {host}")


def http_client(policy: OutboundPolicy, timeout_s: float) -> httpx.Client:
    """An HTTP client whose direct connections go only where `policy` allows (TLS still verifies the host name).

    It never follows redirects itself: a caller checks each Location with `policy.check` first.
    """
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), max_connections=100,
                                              max_keepalive_connections=20, keepalive_expiry=5.0,
                                              network_backend=_CheckedBackend(policy))
    return httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False)
