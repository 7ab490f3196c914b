"""Who may call what, over real HTTP: a test per route generated from the access table
(services/api/security.py ROUTES), case binding, and the web app's session with its CSRF token.

The table is the one place that says which role each route needs; these tests ask the running app (with the
fake pipeline, no weights) every route as nobody and as each role, so a route that is opened or closed by
mistake shows up here by name.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from models.accounts import Role
from services.api.app import create_app
from services.api.localserver import serving
from services.api.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    ROUTES,
    SESSION_COOKIE,
    Access,
    api_routes,
    check_table,
)
from services.settings import Settings
from tests.conftest import CASE, ROLES, auth_headers, tokens
from tests.fakes import FakePipeline

DUMMY = {"plate": "京A12345"}  # a path parameter's stand-in (every other one: an id that does not exist)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: DUMMY.get(m.group(1), f"no-such-{m.group(1).replace('_', '-')}"), path)


def route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


def app_for(tmp: Path, pipeline: FakePipeline) -> FastAPI:
    return create_app(Settings(data_dir=tmp / "data", model_dir=tmp / "no-models", roads_geojson=None), pipeline)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    """One app for the whole route-by-role matrix (the requests change nothing: ids that do not exist,
    bodies that are missing)."""
    app = app_for(tmp_path_factory.mktemp("access"), FakePipeline())
    with serving(app) as url:
        tokens(app)
        yield app, url


@pytest.fixture
def fresh(tmp_path: Path, fake_pipeline: FakePipeline) -> Iterator[tuple[FastAPI, str]]:
    """An app of its own, for tests that sign in and out, disable users and rotate tokens."""
    app = app_for(tmp_path, fake_pipeline)
    with serving(app) as url:
        yield app, url


def status_of(url: str, method: str, path: str, headers: dict[str, str]) -> int:
    """The status a request gets; its body is not read (the live alert stream never ends)."""
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client, \
            client.stream(method, path) as response:
        return response.status_code


@pytest.mark.parametrize("route", sorted(ROUTES), ids=route_id)
def test_each_route_admits_its_role_and_above_and_refuses_the_rest(served: tuple[FastAPI, str],
                                                                   route: tuple[str, str]) -> None:
    app, url = served
    method, template = route
    access: Access = ROUTES[route]
    path = concrete(template)
    got = {"anonymous": status_of(url, method, path, {})}
    for role in ROLES:
        got[role] = status_of(url, method, path, auth_headers(app, role, case=True))
    wrong = {}
    if access.role is None:
        wrong.update({who: s for who, s in got.items() if s in (401, 403)})
    else:
        if got["anonymous"] != 401:
            wrong["anonymous"] = got["anonymous"]
        for role in ROLES:
            allowed = Role.named(role) >= access.role
            if (allowed and got[role] in (401, 403)) or (not allowed and got[role] != 403):
                wrong[role] = got[role]
    assert wrong == {}, f"{route_id(route)} needs {access.role and access.role.label}: got {got}"


def test_the_table_covers_every_route_of_the_real_app(served: tuple[FastAPI, str]) -> None:
    app, _ = served
    check_table(app)
    assert set(api_routes(app.routes)) == set(ROUTES)
    extra = FastAPI()

    @extra.get("/undeclared")
    def undeclared() -> dict:
        return {}

    with pytest.raises(RuntimeError, match="undeclared"):
        check_table(extra)  # a route nobody declared: the app refuses to start, never open by omission


CASE_BOUND = sorted(route for route, access in ROUTES.items() if access.case)


@pytest.mark.parametrize("route", CASE_BOUND, ids=route_id)
def test_a_case_bound_route_without_a_case_and_reason_is_refused(served: tuple[FastAPI, str],
                                                                 route: tuple[str, str]) -> None:
    app, url = served
    method, template = route
    signed = auth_headers(app, "admin", case=False)
    for headers in (signed, {**signed, "X-Case": CASE["X-Case"]}, {**signed, "X-Reason": CASE["X-Reason"]},
                    {**signed, "X-Case": "", "X-Reason": ""}):
        with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
            r = client.request(method, concrete(template))
        assert r.status_code == 400 and "X-Case" in r.json()["detail"], (headers.keys(), r.text)


def test_a_malformed_case_or_reason_is_refused(served: tuple[FastAPI, str]) -> None:
    app, url = served
    signed = auth_headers(app, "investigator", case=False)
    with httpx.Client(base_url=url, timeout=30) as client:
        odd_case = client.get("/clones", headers={**signed, **CASE, "X-Case": "<script>"})
        long_reason = client.get("/clones", headers={**signed, **CASE, "X-Reason": "x" * 501})
        fine = client.get("/clones", headers={**signed, **CASE})
    assert odd_case.status_code == 400 and "X-Case" in odd_case.json()["detail"]
    assert long_reason.status_code == 400 and "X-Reason" in long_reason.json()["detail"]
    assert fine.status_code == 200


def test_anonymous_is_told_how_to_sign_in_and_a_low_role_what_it_lacks(served: tuple[FastAPI, str]) -> None:
    app, url = served
    with httpx.Client(base_url=url, timeout=30) as client:
        anonymous = client.get("/cameras")
        wrong_scheme = client.get("/cameras", headers={"Authorization": f"Basic {tokens(app)['admin']}"})
        forged = client.get("/cameras", headers={"Authorization": "Bearer sl_not-a-token"})
        viewer = client.get("/audit", headers=auth_headers(app, "viewer"))
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong_scheme.status_code == 401 and forged.status_code == 401
    assert viewer.status_code == 403 and "supervisor" in viewer.json()["detail"]


def _cookie_header(response: httpx.Response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def test_the_web_session_needs_its_csrf_token_on_changes_and_ends_at_logout(fresh: tuple[FastAPI, str]) -> None:
    app, url = fresh
    admin = tokens(app)["admin"]
    with httpx.Client(base_url=url, timeout=30) as browser:
        refused = browser.post("/auth/login", json={"token": "sl_wrong"})
        assert refused.status_code == 401 and SESSION_COOKIE not in browser.cookies
        login = browser.post("/auth/login", json={"token": admin})
        assert login.status_code == 200, login.text
        assert (login.json()["name"], login.json()["role"]) == ("test-admin", "admin")
        csrf = login.json()["csrf"]
        cookie = _cookie_header(login, SESSION_COOKIE).lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "httponly" not in _cookie_header(login, CSRF_COOKIE).lower()  # the page reads it to echo it back
        session = browser.cookies[SESSION_COOKIE]
        assert browser.cookies[CSRF_COOKIE] == csrf

        assert browser.get("/auth/me").json()["name"] == "test-admin"  # a read: the cookie is enough
        assert browser.get("/watchlists").status_code == 200
        change = {"name": "stolen", "kind": "plate", "created_by": "web"}
        assert browser.post("/watchlists", json=change).status_code == 401  # a change without its CSRF token
        assert browser.post("/watchlists", json=change, headers={CSRF_HEADER: "forged"}).status_code == 401
        assert browser.post("/watchlists", json=change, headers={CSRF_HEADER: csrf}).status_code == 201
        searched = browser.get("/clones", headers={**CASE})
        assert searched.status_code == 200  # case-bound queries work from the web app with the case headers

        assert browser.post("/auth/logout").status_code == 401  # logging out is a change too
        assert browser.post("/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
        assert SESSION_COOKIE not in browser.cookies
    with httpx.Client(base_url=url, timeout=30, cookies={SESSION_COOKIE: session}) as replay:
        assert replay.get("/auth/me").status_code == 401  # the session ended on the server, not only in the browser
    entries = app.state.system.audit.entries(action="POST /auth/login", actor="?")
    assert len(entries) == 1 and entries[0].status == 401


def _me(url: str, token: str | None = None, session: str | None = None) -> httpx.Response:
    """GET /auth/me with a Bearer token or a session cookie, from a client of its own."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=30, headers=headers,
                      cookies={SESSION_COOKIE: session} if session else None) as client:
        return client.get("/auth/me")


def _login(url: str, token: str) -> httpx.Response:
    return httpx.post(url + "/auth/login", json={"token": token}, timeout=30)


def test_a_disabled_user_and_a_rotated_token_are_refused_at_once(fresh: tuple[FastAPI, str]) -> None:
    app, url = fresh
    accounts = app.state.system.accounts
    user, token = accounts.add("officer", "investigator")
    assert _me(url, token).json() == {"name": "officer", "role": "investigator", "csrf": None}
    session = _login(url, token).cookies[SESSION_COOKIE]
    assert _me(url, session=session).status_code == 200

    accounts.disable("officer")
    assert _me(url, token).status_code == 401
    assert _me(url, session=session).status_code == 401  # its sessions end with it
    assert _login(url, token).status_code == 401
    accounts.disable("officer", False)
    assert _me(url, token).status_code == 200

    session = _login(url, token).cookies[SESSION_COOKIE]
    _, new = accounts.rotate("officer")
    assert new != token
    assert _me(url, token).status_code == 401  # the old token stops working at once
    assert _me(url, session=session).status_code == 401  # and so do the sessions opened with it
    assert _me(url, new).json()["name"] == user.name


def test_failed_sign_ins_are_limited_per_address_and_folded_on_the_log(fresh: tuple[FastAPI, str]) -> None:
    app, url = fresh
    _, token = app.state.system.accounts.add("officer", "investigator")
    audit = app.state.system.audit
    before = len(audit.entries(limit=10_000))
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        answers = [anonymous.post("/auth/login", json={"token": f"sl_guess{i}"}) for i in range(300)]
        assert [a.status_code for a in answers[:10]] == [401] * 10
        assert {a.status_code for a in answers[10:]} == {429}
        assert int(answers[-1].headers["Retry-After"]) > 0 and "too many failed sign-ins" in answers[-1].text
        assert anonymous.post("/auth/login", json={"token": token}).status_code == 429  # not even a right token
        with_bearer = anonymous.get("/cameras", headers={"Authorization": f"Bearer {token}"})
        assert with_bearer.status_code == 429  # the same address, by header
        assert anonymous.get("/cameras").status_code == 401  # no token offered: nothing to limit
    written = audit.entries(limit=10_000)[: len(audit.entries(limit=10_000)) - before]
    assert len(written) <= 5  # not 300: the first of each kind at once, the repeats folded
    assert {(e.action, e.status) for e in written} >= {("POST /auth/login", 401), ("POST /auth/login", 429),
                                                         ("GET /cameras", 429), ("GET /cameras", 401)}


def test_refused_requests_are_audited_with_who_asked(fresh: tuple[FastAPI, str]) -> None:
    app, url = fresh
    tokens(app)
    audit = app.state.system.audit
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/search/plates", params={"q": "京A12345"}).status_code == 401
    assert status_of(url, "GET", "/audit", auth_headers(app, "investigator", case=False)) == 403
    no_case = status_of(url, "GET", "/clones", auth_headers(app, "investigator", case=False))
    bad_reason = status_of(url, "GET", "/clones", {**auth_headers(app, "investigator", case=False),
                                                     "X-Case": "C-1", "X-Reason": "=HYPERLINK(x)\x7f"})
    assert no_case == 400 and bad_reason == 400
    got = [(e.actor, e.action, e.status, e.case_ref) for e in audit.entries(limit=10)]
    assert ("?", "GET /search/plates", 401, None) in got
    assert ("test-investigator", "GET /audit", 403, None) in got
    # the second refusal of the same caller, route and status is folded into a count, written when its window closes
    assert [g for g in got if g[1] == "GET /clones"] == [("test-investigator", "GET /clones", 400, None)]


def test_denials_fold_repeats_into_one_entry_with_their_count(fake_system) -> None:  # noqa: ANN001
    from services.api.security import Denials

    now = [0.0]
    denials = Denials(fake_system.audit, clock=lambda: now[0])
    for _ in range(50):
        denials.refused("?", "-", "POST /auth/login", "10.0.0.9", 401, {"path": "/auth/login"})
    denials.refused("?", "-", "POST /auth/login", "10.0.0.8", 401, {"path": "/auth/login"})  # another address
    assert len(fake_system.audit.entries(action="POST /auth/login")) == 2
    now[0] = Denials.FOLD_S + 1  # the window closes at the next refusal
    denials.refused("eve", "viewer", "GET /audit", "10.0.0.9", 403, {"path": "/audit"})
    folded = fake_system.audit.entries(action="POST /auth/login")
    assert len(folded) == 3 and folded[0].params["repeats"] == 49 and folded[0].source == "10.0.0.9"
    denials.flush()
    assert len(fake_system.audit.entries()) == 4  # nothing to fold for the others: no empty counts
