"""Shared fixtures: the eval data, the model directory, one loaded pipeline per test session, and signing in
to the API (a user of each role, Bearer headers with a test case and reason)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from models.records import Camera
from services.settings import Settings
from services.system import Sightline
from tests.es_recorder import recorded  # noqa: F401 - a fixture of the Elasticsearch unit tests

if TYPE_CHECKING:
    from tests.fakes import FakePipeline

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
MODEL_DIR = Path(os.environ.get("SIGHTLINE_MODEL_DIR", REPO / "model_store")).resolve()


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    if not EVAL.is_dir():
        pytest.skip(f"the shared eval data is not at {EVAL}")
    return EVAL


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return MODEL_DIR


@pytest.fixture(scope="session")
def pipeline(model_dir: Path):  # noqa: ANN201
    """The real models, loaded once for the whole session (loading is the slow part)."""
    from models.pipeline import Pipeline

    return Pipeline(model_dir)


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_dir=model_dir)


@pytest.fixture
def system(settings: Settings, pipeline) -> Sightline:  # noqa: ANN001
    """A fresh data directory with the session's loaded pipeline."""
    opened = Sightline(settings, pipeline)
    yield opened
    opened.close()


@pytest.fixture
def fake_pipeline():  # noqa: ANN201
    """A FakePipeline (tests/fakes.py): scripted observations, pixel-derived vectors, no weights."""
    from tests.fakes import FakePipeline

    return FakePipeline()


@pytest.fixture
def fake_system(tmp_path: Path, model_dir: Path, fake_pipeline) -> Sightline:  # noqa: ANN001
    """A fresh data directory whose models are the fake pipeline: store, search and alert tests without weights."""
    settings = Settings(data_dir=tmp_path / "fake-data", model_dir=model_dir, roads_geojson=None)
    opened = Sightline(settings, fake_pipeline)
    yield opened
    opened.close()


@pytest.fixture
def fake_served(tmp_path: Path, fake_pipeline):  # noqa: ANN001, ANN201
    """The API on the fake pipeline in a fresh data folder, served on a free port: (app, base URL)."""
    from services.api.app import create_app
    from services.api.localserver import serving

    app = create_app(Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-models", roads_geojson=None),
                     fake_pipeline)
    with serving(app) as url:
        yield app, url


# Signing in -----------------------------------------------------------------------------------------------------
# The API refuses anonymous callers (services/api/security.py): tests sign in with a Bearer token of a user made
# for them, and send a case reference and reason, which case-bound routes (searches, trajectories...) require.

ROLES = ("viewer", "investigator", "supervisor", "admin")  # lowest first, as models.accounts.Role orders them
CASE = {"X-Case": "TEST-1", "X-Reason": "automated test"}


def tokens(app) -> dict[str, str]:  # noqa: ANN001 - a FastAPI app from services.api.app.create_app
    """One user of each role in the app's accounts (made once per app): role -> its Bearer token."""
    made = getattr(app.state, "test_tokens", None)
    if made is None:
        accounts = app.state.system.accounts
        made = {}
        for role in ROLES:
            name = f"test-{role}"
            exists = any(u.name == name for u in accounts.all())  # a data folder reopened by a restarted app
            made[role] = (accounts.rotate(name) if exists else accounts.add(name, role))[1]
        app.state.test_tokens = made
    return made


def auth_headers(app, role: str = "admin", case: bool = True) -> dict[str, str]:  # noqa: ANN001
    """Headers that sign in as the app's test user of `role`, with the test case and reason (`case`)."""
    return {"Authorization": f"Bearer {tokens(app)[role]}", **(CASE if case else {})}


def client(app, url: str, role: str = "admin", timeout: float = 60, case: bool = True) -> httpx.Client:  # noqa: ANN001
    """An httpx.Client on a served app's URL, signed in as `role` with the case headers by default."""
    return httpx.Client(base_url=url, timeout=timeout, headers=auth_headers(app, role, case))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, installed by scripts/test.sh


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    """Headless Chromium for the browser tests, driven by Playwright; the tests skip where it is missing."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield launched
        launched.close()


def fake_site(tmp: Path, eval_dir: Path, cameras: int = 10) -> tuple[FastAPI, FakePipeline, list[Camera]]:
    """A web app on the fake pipeline for the browser tests: its data in `tmp`, the real road network as the map,
    and `cameras` cameras on its intersections (each test then scripts and ingests what it needs)."""
    from services.api.app import create_app
    from services.cameras import from_roadnet
    from tests.fakes import FakePipeline

    pipeline = FakePipeline()
    roadnet = eval_dir / "roadnet" / "shanghai_intersections.geojson"
    app = create_app(Settings(data_dir=tmp / "data", model_dir=tmp / "no-models", roads_geojson=roadnet), pipeline)
    cams = from_roadnet(roadnet, limit=cameras)
    app.state.system.store.upsert_cameras(cams)
    return app, pipeline, cams


def signed_in_tab(browser, url: str, token: str, view: str, case: tuple[str, str], ready: str = "body[data-ready=true]",
                  **context_options: object):  # noqa: ANN001, ANN201 - Playwright's Browser; returns (context, page)
    """A browser tab in Shanghai's zone on the app's `view`, signed in with `token`, the case bar filled in."""
    context = browser.new_context(timezone_id="Asia/Shanghai", **context_options)
    opened = context.new_page()
    opened.goto(f"{url}/app/#{view}")
    opened.wait_for_selector("#login-form", state="visible", timeout=30_000)
    opened.fill("#login-token", token)
    opened.click("#login-submit")
    opened.wait_for_selector(ready, timeout=30_000)
    opened.fill("#case-ref", case[0])
    opened.fill("#case-reason", case[1])
    return context, opened
