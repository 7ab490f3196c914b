"""Who may call what: one table of every route's role, case binding and audit, enforced in one place.

Every request passes `authorize` (a dependency of the whole app): it finds the caller (a Bearer token,
or the web app's session cookie with its CSRF header on changes), checks the role the table declares
for the route, and for case-bound routes the `X-Case` and `X-Reason` headers. `AuditMiddleware` then
appends one audit entry per audited request with its parameters, status and result count. A route
missing from the table is refused when the app is built, so nothing is ever open by omission.
"""
from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute

from models.accounts import Role, User
from services.accounts import Accounts
from services.audit import AuditLog

SESSION_COOKIE = "sightline_session"
CSRF_COOKIE = "sightline_csrf"
CSRF_HEADER = "X-CSRF-Token"
CASE_HEADER, REASON_HEADER = "X-Case", "X-Reason"
_CASE = re.compile(r"^[\w./:# -]{1,64}$")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Access:
    role: Role | None  # None: open to anyone (health, the login itself)
    case: bool = False  # must carry a case reference and a reason
    audit: bool = False  # appended to the audit log


PUBLIC = Access(None)
VIEW = Access(Role.VIEWER)
INVESTIGATE = Access(Role.INVESTIGATOR, case=True, audit=True)
SUPERVISE = Access(Role.SUPERVISOR, audit=True)
ADMINISTER = Access(Role.ADMIN, audit=True)

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): VIEW,  # counts only; Prometheus sends a viewer's bearer token
    ("POST", "/auth/login"): PUBLIC,  # audits itself: success and failure
    ("POST", "/auth/logout"): VIEW,
    ("GET", "/auth/me"): VIEW,
    ("GET", "/map/config"): VIEW,
    ("GET", "/map/roads"): VIEW,
    ("GET", "/cameras"): VIEW,
    ("GET", "/alerts"): VIEW,
    ("GET", "/alerts/stream"): VIEW,
    ("POST", "/alerts/{alert_id}/ack"): Access(Role.VIEWER, audit=True),
    ("GET", "/sightings/{sighting_id}/crop"): VIEW,  # one crop, as an alert shows it; bulk views are audited
    ("POST", "/frames"): Access(Role.INVESTIGATOR, audit=True),
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
    ("POST", "/streams"): SUPERVISE,
    ("DELETE", "/streams/{stream_id}"): SUPERVISE,
    ("POST", "/cameras"): SUPERVISE,
    ("GET", "/audit"): SUPERVISE,
    ("GET", "/audit/export"): SUPERVISE,
    ("GET", "/audit/summary"): SUPERVISE,
    ("GET", "/audit/verify"): SUPERVISE,
    ("DELETE", "/sightings"): ADMINISTER,
    ("DELETE", "/sightings/{sighting_id}"): ADMINISTER,
    # Cases: the route names the case, so reading, changing and exporting it are audited under its own number.
    ("GET", "/cases"): Access(Role.INVESTIGATOR),  # headers only (number, title, owner): the content is audited
    ("POST", "/cases"): Access(Role.INVESTIGATOR, audit=True),
    ("GET", "/cases/{case_id}"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/close"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/items"): Access(Role.INVESTIGATOR, audit=True),
    ("DELETE", "/cases/{case_id}/items/{item_id}"): Access(Role.INVESTIGATOR, audit=True),
    ("POST", "/cases/{case_id}/notes"): Access(Role.INVESTIGATOR, audit=True),
    ("GET", "/cases/{case_id}/export"): Access(Role.INVESTIGATOR, audit=True),
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


def authorizer(accounts: Accounts) -> Callable[[Request], Awaitable[None]]:
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
        user = caller_of(request, accounts)
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
    case_ref = (request.headers.get(CASE_HEADER) or "").strip()
    # Headers carry Latin-1 only: a reason in another script comes percent-encoded as UTF-8 (the web app's way).
    reason = unquote((request.headers.get(REASON_HEADER) or "").strip(), errors="replace")
    if not case_ref or not reason:
        raise HTTPException(400, f"this query must say which case it serves and why: send the headers "
                                 f"{CASE_HEADER} (a case reference) and {REASON_HEADER} (the reason)")
    if not _CASE.match(case_ref):
        raise HTTPException(400, f"{CASE_HEADER} is 1–64 letters, digits, spaces or . / : # _ -")
    if len(reason) > 500 or any(ord(c) < 32 for c in reason):
        raise HTTPException(400, f"{REASON_HEADER} is at most 500 characters of plain text")
    return case_ref, reason


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


class AuditMiddleware:
    """Appends an audit entry for each request the table marks audited, just before the last of its response is
    sent (so a caller holding the answer can find its entry), or when it failed without one (a 500)."""

    def __init__(self, app: Callable[..., Awaitable[None]], audit: AuditLog):
        self.app, self.audit = app, audit

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

    def _record(self, scope: Scope, caller: Caller, status: int, response: bytes, request_body: bytes) -> None:
        route = scope.get("route")
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
        try:
            count = result_count(json.loads(response)) if response and status < 400 else None
        except ValueError:
            count = None
        client = scope.get("client")
        action = f"{scope.get('method')} {route.path if isinstance(route, APIRoute) else scope.get('path')}"
        self.audit.record(caller.user.name, caller.user.role.label, action, client[0] if client else "",
                          caller.case_ref, caller.reason, params, count, status)
