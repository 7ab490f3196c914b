"""Who may call what: one table of every route's role, case binding and audit, enforced in one place.

Every request passes `authorize` (a dependency of the whole app): it finds the caller (a Bearer token,
or the web app's session cookie with its CSRF header on changes), checks the role the table declares
for the route, and for case-bound routes the `X-Case` and `X-Reason` headers. `AuditMiddleware` then
appends one audit entry per audited request with its parameters, status and result count, and one per refused
request (401, 403, 429, and any 4xx on an audited route), repeats folded (`Denials`). A token that fails to sign
in counts against its source address (`SignInGuard`). A route missing from the table is refused when the app is
built, so nothing is ever open by omission.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute

from models.accounts import Role, User
from models.records import InputError
from services.accounts import Accounts
from services.audit import AuditLog
from services.cases import query_purpose

SESSION_COOKIE = "sightline_session"
CSRF_COOKIE = "sightline_csrf"
CSRF_HEADER = "X-CSRF-Token"
CASE_HEADER, REASON_HEADER = "X-Case", "X-Reason"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Access:
    role: Role | None  # None: open to anyone (health, the login itself)
    case: bool = False  # must carry a case reference and a reason
    audit: bool = False  # appended to the audit log
    # stores evidence that must never exist unaudited: an entry `begun <route>` is appended before the work, so a
    # process killed between its commit and its answer still leaves the act on the log (the outcome follows)
    ahead: bool = False


PUBLIC = Access(None)
VIEW = Access(Role.VIEWER)
INVESTIGATE = Access(Role.INVESTIGATOR, case=True, audit=True)
SUPERVISE = Access(Role.SUPERVISOR, audit=True)
ADMINISTER = Access(Role.ADMIN, audit=True)

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): VIEW,  # counts only; Prometheus sends a viewer's bearer token
    ("POST", "/auth/login"): PUBLIC,  # audits its successes; failures are refusals (AuditMiddleware)
    ("POST", "/auth/logout"): VIEW,
    ("GET", "/auth/me"): VIEW,
    ("GET", "/map/config"): VIEW,
    ("GET", "/map/roads"): VIEW,
    ("GET", "/cameras"): VIEW,
    ("GET", "/alerts"): VIEW,
    ("GET", "/alerts/stream"): VIEW,
    ("POST", "/alerts/{alert_id}/ack"): Access(Role.VIEWER, audit=True),
    ("GET", "/sightings/{sighting_id}/crop"): VIEW,  # one crop, as an alert shows it; bulk views are audited
    ("POST", "/frames"): Access(Role.INVESTIGATOR, audit=True, ahead=True),
    ("GET", "/sightings"): INVESTIGATE,
    ("GET", "/sightings/{sighting_id}"): INVESTIGATE,
    ("GET", "/search/vocabulary"): Access(Role.INVESTIGATOR),  # the form's words: no data, no case
    ("GET", "/search/parse"): Access(Role.INVESTIGATOR),  # reads the query, not the sightings: no case
    ("GET", "/search/plates"): INVESTIGATE,
    ("POST", "/search/attributes"): INVESTIGATE,
    ("POST", "/search/image"): INVESTIGATE,
    ("POST", "/search/face"): INVESTIGATE,
    ("POST", "/search/areas"): INVESTIGATE,
    ("GET", "/trajectories/{plate}"): INVESTIGATE,
    ("GET", "/trajectories/by-sighting/{sighting_id}"): INVESTIGATE,
    ("GET", "/stays/{plate}"): INVESTIGATE,
    ("GET", "/clones"): INVESTIGATE,
    ("GET", "/co-travel/{plate}"): INVESTIGATE,
    ("GET", "/watchlists"): Access(Role.INVESTIGATOR),
    ("GET", "/watchlists/{watchlist_id}/entries"): Access(Role.INVESTIGATOR),
    ("GET", "/watchlists/{watchlist_id}/export"): Access(Role.SUPERVISOR, case=True, audit=True),
    ("POST", "/watchlists"): SUPERVISE,
    ("DELETE", "/watchlists/{watchlist_id}"): SUPERVISE,
    ("POST", "/watchlists/{watchlist_id}/entries"): SUPERVISE,
    ("DELETE", "/watchlists/{watchlist_id}/entries/{entry_id}"): SUPERVISE,
    ("POST", "/watchlists/{watchlist_id}/faces"): SUPERVISE,
    ("POST", "/watchlists/{watchlist_id}/import"): SUPERVISE,
    ("GET", "/rules"): Access(Role.SUPERVISOR),
    ("POST", "/rules"): SUPERVISE,
    ("DELETE", "/rules/{rule_id}"): SUPERVISE,
    ("GET", "/webhooks"): Access(Role.SUPERVISOR),
    ("POST", "/webhooks"): SUPERVISE,
    ("DELETE", "/webhooks/{webhook_id}"): SUPERVISE,
    ("POST", "/webhooks/retry-dead"): SUPERVISE,
    ("GET", "/streams"): Access(Role.SUPERVISOR),
    ("GET", "/sources"): Access(Role.SUPERVISOR),
    ("POST", "/streams"): SUPERVISE,
    ("DELETE", "/streams/{stream_id}"): SUPERVISE,
    ("POST", "/cameras"): SUPERVISE,
    ("GET", "/audit"): SUPERVISE,
    ("GET", "/audit/export"): SUPERVISE,
    ("GET", "/audit/summary"): SUPERVISE,
    ("GET", "/audit/verify"): SUPERVISE,
    ("DELETE", "/sightings"): Access(Role.ADMIN, audit=True, ahead=True),
    ("DELETE", "/sightings/{sighting_id}"): Access(Role.ADMIN, audit=True, ahead=True),
    # Cases: the route names the case, so reading, changing and exporting it are audited under its own number.
    ("GET", "/cases"): Access(Role.INVESTIGATOR),  # headers only (number, title, owner): the content is audited
    ("POST", "/cases"): Access(Role.INVESTIGATOR, audit=True),
    ("GET", "/cases/{case_id}"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/close"): Access(Role.INVESTIGATOR, audit=True),
    ("PUT", "/cases/{case_id}/collaborators"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/items"): Access(Role.INVESTIGATOR, audit=True),
    ("DELETE", "/cases/{case_id}/items/{item_id}"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/notes"): Access(Role.INVESTIGATOR, audit=True),
    ("GET", "/cases/{case_id}/export"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/exports"): Access(Role.INVESTIGATOR, audit=True),
    ("GET", "/cases/{case_id}/exports/{export_id}"): Access(Role.INVESTIGATOR),  # progress only: no content
    ("GET", "/cases/{case_id}/exports/{export_id}/file"): Access(Role.INVESTIGATOR, audit=True),
}


def api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every API route, including those of included routers."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out += [(method, prefix + route.path) for method in sorted(route.methods or ()) if method != "HEAD"]
        elif hasattr(route, "original_router"):  # FastAPI keeps an included router whole, with its prefix
            context = getattr(route, "include_context", None)
            out += api_routes(route.original_router.routes, prefix + (getattr(context, "prefix", "") or ""))
    return out


def check_table(app: FastAPI) -> None:
    """Every API route has its line in ROUTES (and no line names a route that does not exist)."""
    keys = set(api_routes(app.routes))
    missing, stale = sorted(keys - set(ROUTES)), sorted(set(ROUTES) - keys)
    if missing or stale:
        raise RuntimeError(f"services/api/security.py ROUTES is out of date: missing {missing}, stale {stale}")


@dataclass
class Caller:
    user: User
    access: Access
    case_ref: str | None = None
    reason: str | None = None


class SignInGuard:
    """Failed sign-ins (a wrong token at /auth/login or in a Bearer header) counted per source address over a
    sliding minute; past the limit, that address's tokens are not even looked at until the minute has passed.
    A token names no account until it matches one, so there is no per-account count to keep; the limit bounds
    guessing and log floods per address, per process. Bounded memory: the oldest addresses are forgotten first."""

    WINDOW_S, MAX_SOURCES = 60.0, 10_000

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self.limit, self.clock = limit, clock
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.lock = threading.Lock()

    def wait_s(self, source: str) -> float:
        """How long this address must wait before its next try (0: it may try now)."""
        with self.lock:
            times = self.failures.get(source)
            if not times:
                return 0.0
            now = self.clock()
            while times and times[0] <= now - self.WINDOW_S:
                times.popleft()
            return times[0] + self.WINDOW_S - now if len(times) >= self.limit else 0.0

    def check(self, source: str) -> None:
        if (wait := self.wait_s(source)) > 0:
            raise HTTPException(429, f"too many failed sign-ins from {source}: try again in {wait:.0f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})

    def failed(self, source: str) -> None:
        with self.lock:
            times = self.failures.pop(source, None) or deque(maxlen=self.limit)
            times.append(self.clock())
            self.failures[source] = times  # most recent last
            while len(self.failures) > self.MAX_SOURCES:
                self.failures.popitem(last=False)


def source_of(request: Request) -> str:
    return request.client.host if request.client else ""


def authorizer(accounts: Accounts, guard: SignInGuard, audit: AuditLog) -> Callable[[Request], Awaitable[None]]:
    async def authorize(request: Request) -> None:
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):
            return
        method = "GET" if request.method == "HEAD" else request.method
        access = ROUTES.get((method, route.path))
        if access is None:
            raise HTTPException(403, "this route is not in the access table")
        if access.role is None:
            return
        bearer = bool(request.headers.get("authorization"))
        if bearer:
            guard.check(source_of(request))
        user = caller_of(request, accounts)
        if user is None and bearer:
            guard.failed(source_of(request))
        request.state.identity = user  # who was refused, if it comes to that (the audit names them)
        if user is None:
            raise HTTPException(401, "sign in: send Authorization: Bearer <token>, or log in to the web app",
                                headers={"WWW-Authenticate": "Bearer"})
        if user.role < access.role:
            raise HTTPException(403, f"{route.path} needs the {access.role.label} role; {user.name} is "
                                     f"{user.role.label}")
        caller = Caller(user, access)
        if access.case:
            caller.case_ref, caller.reason = case_of(request)
        request.state.caller = caller
        if access.ahead:
            audit.record(user.name, user.role.label, f"begun {_action(request.scope)}", source_of(request),
                         caller.case_ref, caller.reason, {"path": request.url.path})
    return authorize


def caller_of(request: Request, accounts: Accounts) -> User | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return accounts.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        return accounts.session_user(session, request.headers.get(CSRF_HEADER),
                                     needs_csrf=request.method not in SAFE_METHODS)
    return None


def case_of(request: Request) -> tuple[str, str]:
    """The case and reason headers, checked as the CLI checks its flags (services/cases.query_purpose)."""
    # Headers carry Latin-1 only: a case number or reason in another script comes percent-encoded as UTF-8 (the
    # web app's way); an escape that is not UTF-8 is refused, not guessed.
    try:
        case_ref, reason = (unquote((request.headers.get(name) or "").strip(), errors="strict")
                            for name in (CASE_HEADER, REASON_HEADER))
        return query_purpose(case_ref, reason, (CASE_HEADER, REASON_HEADER))
    except UnicodeDecodeError:
        raise HTTPException(400, f"{CASE_HEADER} and {REASON_HEADER} are text, percent-encoded as UTF-8") from None
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None


def result_count(body: Any) -> int | None:  # noqa: ANN401 - any JSON body
    """How much a response found, from the shapes the API's response models have."""
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        if isinstance(body.get("count"), int):
            return int(body["count"])
        for key in ("results", "sightings", "cases", "companions", "points", "stays", "entries"):
            if isinstance(body.get(key), list):
                return len(body[key])
        if type(body.get("sightings")) is int:  # a purge: how many sightings it deleted
            return int(body["sightings"])
    return None


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
MAX_AUDITED_BODY = 4096


DENIED = {401, 403, 429}  # refusals audited on every route; other 4xx only on audited routes


class Denials:
    """Refused requests on the audit log without flooding it: the first of a kind (who, from where, which route,
    which status) is appended at once; its repeats within FOLD_S are counted, and appended as one entry with the
    count (`repeats`) when the window closes: at the next refusal after it, or at `flush` (shutdown). Bounded
    memory: past MAX_OPEN open windows the oldest is closed early."""

    FOLD_S, MAX_OPEN = 60.0, 10_000

    def __init__(self, audit: AuditLog, clock: Callable[[], float] = time.monotonic):
        self.audit, self.clock = audit, clock
        # (actor, role, action, source, status) -> [repeats, first seen (monotonic), first and last (wall time)]
        self.open: OrderedDict[tuple[str, str, str, str, int], list[Any]] = OrderedDict()
        self.lock = threading.Lock()

    def refused(self, actor: str, role: str, action: str, source: str, status: int, params: dict[str, object],
                case: tuple[str | None, str | None] = (None, None)) -> None:
        key = (actor, role, action, source, status)
        now, wall = self.clock(), datetime.now(timezone.utc)
        with self.lock:
            self._close(lambda opened: opened <= now - self.FOLD_S)
            held = self.open.get(key)
            if held is not None:
                held[0] += 1
                held[3] = wall
                return
            self.open[key] = [0, now, wall, wall]
            while len(self.open) > self.MAX_OPEN:
                self._write(*self.open.popitem(last=False))
        self.audit.record(actor, role, action, source, case[0], case[1], params, None, status)

    def flush(self) -> None:
        with self.lock:
            self._close(lambda opened: True)

    def _close(self, due: Callable[[float], bool]) -> None:
        """Write the count of every window that is due (the oldest first; called under the lock)."""
        while self.open:
            key, held = next(iter(self.open.items()))
            if not due(held[1]):
                return
            del self.open[key]
            self._write(key, held)

    def _write(self, key: tuple[str, str, str, str, int], held: list[Any]) -> None:
        if held[0]:
            actor, role, action, source, status = key
            self.audit.record(actor, role, action, source, params={
                "repeats": held[0], "first": held[2].isoformat(), "last": held[3].isoformat()}, status=status)


class AuditMiddleware:
    """Appends an audit entry for each request the table marks audited, just before the last of its response is
    sent (so a caller holding the answer can find its entry), or when it failed without one (a 500); and one for
    each refused request, through `Denials`."""

    def __init__(self, app: Callable[..., Awaitable[None]], audit: AuditLog, denials: Denials):
        self.app, self.audit, self.denials = app, audit, denials

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [0]
        chunks: list[bytes] = []
        body_seen: list[bytes] = []
        json_response = [False]
        recorded = [False]
        sent: list[int] = [0]  # the response's bytes so far
        expected: list[int | None] = [None]  # its Content-Length

        def finish(status_code: int) -> None:
            if recorded[0]:
                return
            recorded[0] = True
            caller = (scope.get("state") or {}).get("caller")
            if isinstance(caller, Caller) and caller.access.audit:
                self._record(scope, caller, status_code, b"".join(chunks), b"".join(body_seen))
            elif status_code in DENIED or (status_code >= 400 and _audited(scope)):
                self._refused(scope, status_code)

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, body_seen)) < MAX_AUDITED_BODY:
                body_seen.append(message.get("body", b"")[:MAX_AUDITED_BODY])
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = dict(message.get("headers") or [])
                json_response[0] = headers.get(b"content-type", b"").startswith(b"application/json")
                length = headers.get(b"content-length", b"")
                expected[0] = int(length) if length.isdigit() else None
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if json_response[0]:
                    chunks.append(body)
                sent[0] += len(body)
                if not message.get("more_body", False) or (expected[0] is not None and sent[0] >= expected[0]):
                    finish(status[0])  # written before the caller has the whole answer
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:  # a request that failed with an unhandled error (a 500) was still made: it is recorded too
            finish(status[0] or 500)

    def _refused(self, scope: Scope, status: int) -> None:
        """A request refused before it was served: who it was, if the credential named anyone."""
        state = scope.get("state") or {}
        caller, user = state.get("caller"), state.get("identity")
        if isinstance(caller, Caller):
            user = caller.user
        client = scope.get("client")
        headers = dict(scope.get("headers") or [])
        case = (_printable(headers.get(CASE_HEADER.lower().encode(), b""), 64),
                _printable(headers.get(REASON_HEADER.lower().encode(), b""), 500))
        self.denials.refused(user.name if isinstance(user, User) else "?",
                             user.role.label if isinstance(user, User) else "-", _action(scope),
                             client[0] if client else "", status, {"path": scope.get("path", "")}, case)

    def _record(self, scope: Scope, caller: Caller, status: int, response: bytes, request_body: bytes) -> None:
        params: dict[str, object] = {"path": scope.get("path", "")}
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            before = params.get(key)  # a repeated parameter (camera_id=a&camera_id=b) keeps every value
            params[key] = value if key not in params else [*(before if isinstance(before, list) else [before]), value]
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").startswith(b"application/json") and request_body:
            try:
                params["body"] = json.loads(request_body)
            except ValueError:
                params["body"] = request_body[:MAX_AUDITED_BODY].decode("utf-8", "replace")
        elif request_body:
            params["upload_bytes"] = int(headers.get(b"content-length", b"0") or 0)
        params.update((scope.get("state") or {}).get("audit_extra") or {})
        try:
            count = result_count(json.loads(response)) if response and status < 400 else None
        except ValueError:
            count = None
        client = scope.get("client")
        self.audit.record(caller.user.name, caller.user.role.label, _action(scope), client[0] if client else "",
                          caller.case_ref, caller.reason, params, count, status)


def audited_upload(request: Request, data: bytes) -> bytes:
    """The uploaded file, its SHA-256 noted for the request's audit entry: which photo was searched or stored,
    not only how big the upload was."""
    extra = getattr(request.state, "audit_extra", None) or {}
    extra["upload_sha256"] = hashlib.sha256(data).hexdigest()
    request.state.audit_extra = extra
    return data


def _printable(raw: bytes, limit: int) -> str | None:
    """A case or reason header as the log may keep it even when it was refused: decoded as the app sends it
    (percent-encoded UTF-8), printable, bounded."""
    text = unquote(raw.decode("latin-1"), errors="replace")
    return "".join(c for c in text if c.isprintable())[:limit] or None


def _action(scope: Scope) -> str:
    route = scope.get("route")
    return f"{scope.get('method')} {route.path if isinstance(route, APIRoute) else scope.get('path')}"


def _audited(scope: Scope) -> bool:
    route = scope.get("route")
    if not isinstance(route, APIRoute):
        return False
    access = ROUTES.get(("GET" if scope.get("method") == "HEAD" else str(scope.get("method")), route.path))
    return access is not None and (access.audit or access.case)
