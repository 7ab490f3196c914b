"""The web app in a real browser: Debian's headless Chromium driven by Playwright, against the app served on
localhost with real ingested eval photos. Each page signs in with a token through the login form and sets a
case and reason in the case bar, as an investigator would. Screenshots of each page go to artifacts/screenshots/."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from indexer.store import SightingQuery
from services.api.app import create_app
from services.api.localserver import serving
from services.cameras import from_roadnet
from services.ingest import PhotoJob, image_files, jobs_from_files
from services.settings import Settings
from tests.conftest import CHROMIUM

pytestmark = pytest.mark.models
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
CASE, REASON = "2026/0412", "stolen car enquiry"


@pytest.fixture(scope="module")
def site(tmp_path_factory, pipeline, eval_dir: Path, model_dir: Path):  # noqa: ANN001, ANN201
    """The app with cameras on real intersections and the eval plate photos ingested along a route."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    settings = Settings(data_dir=tmp_path_factory.mktemp("web") / "data", model_dir=model_dir)
    app = create_app(settings, pipeline)
    system = app.state.system
    cams = from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson", limit=30)
    system.store.upsert_cameras(cams)
    photos = image_files([eval_dir / "plates" / "full"])
    rows = [(p, cams[i % len(cams)].id, START + timedelta(minutes=3 * i)) for i, p in enumerate(photos)]
    ingestor = system.ingestor
    ingestor.ingest(jobs_from_files(rows))
    # The car of 0001.jpg seen again at four more cameras, ten minutes apart: a trajectory to draw. The photo
    # is the same, so a trailing byte (ignored by JPEG decoders) makes each frame's sha256 its own.
    car = (eval_dir / "plates" / "full" / "0001.jpg").read_bytes()
    ingestor.ingest([PhotoJob(f"route-{i}.jpg", car + b"\0" * i, cams[3 * i].id, START + timedelta(minutes=60 + 10 * i))
                     for i in range(1, 5)])
    with serving(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def tokens(site) -> dict[str, str]:  # noqa: ANN001
    """One user per role the tests sign in as: a supervisor (searches, watchlists, rules) and a viewer."""
    _, app = site
    accounts = app.state.system.accounts
    return {role: accounts.add(f"web-{role}", role)[1] for role in ("supervisor", "viewer")}


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    """Headers for a camera's own upload (POST /frames) outside the browser."""
    return {"Authorization": f"Bearer {tokens['supervisor']}"}


def sign_in(page, token: str, case: tuple[str, str] | None = (CASE, REASON)) -> None:  # noqa: ANN001
    """Through the login form (the page is on the sign-in view), then the case bar."""
    page.wait_for_selector("#login-form", state="visible", timeout=30_000)
    page.fill("#login-token", token)
    page.click("#login-submit")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    if case:
        page.fill("#case-ref", case[0])
        page.fill("#case-reason", case[1])


def open_app(browser, url: str, token: str, view: str = "map", viewport: tuple[int, int] = (1280, 800),  # noqa: ANN001, ANN201
             case: tuple[str, str] | None = (CASE, REASON)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    opened = context.new_page()
    opened.goto(f"{url}/app/#{view}")
    sign_in(opened, token, case)
    return context, opened


@pytest.fixture
def page(browser, site, tokens):  # noqa: ANN001, ANN201
    url, _ = site
    context, opened = open_app(browser, url, tokens["supervisor"])
    yield opened
    context.close()


def shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_map_shows_every_camera_on_the_offline_road_network(page, site) -> None:  # noqa: ANN001
    url, app = site
    cameras = len(app.state.system.store.list_cameras())
    assert page.get_attribute("body", "data-cameras") == str(cameras)
    assert page.locator(".leaflet-overlay-pane canvas, .leaflet-overlay-pane svg path").count() >= 1
    shot(page, "map")


def test_plate_search_then_trajectory_is_drawn(page) -> None:  # noqa: ANN001
    page.fill("#traj-plate", "皖AY766D")
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("body[data-trajectory]", timeout=15_000)
    assert int(page.get_attribute("body", "data-trajectory")) == 5  # the car's five passes, in time order
    assert page.locator("#trajectory-list li").count() == 5
    assert page.locator(".stop-label").count() >= 1
    shot(page, "trajectory")


def test_photo_search_shows_ranked_results_and_jumps_to_the_trajectory(page, eval_dir: Path) -> None:  # noqa: ANN001
    page.click("nav a[data-view=search]")
    page.set_input_files("#image-file", str(eval_dir / "plates" / "full" / "0001.jpg"))
    page.click("#image-search-form button[type=submit]")
    page.wait_for_selector("#search-results li", timeout=60_000)
    first = page.locator("#search-results li").first
    assert "皖AY766D" in first.inner_text() and "score" in first.inner_text()
    assert page.locator("#search-results li img").count() >= 1
    shot(page, "search-photo")
    first.locator("button:has-text('Trajectory')").click()
    page.wait_for_selector("body[data-trajectory]", timeout=15_000)
    assert int(page.get_attribute("body", "data-trajectory")) == 5


def test_white_car_in_free_text_finds_the_silver_white_demo_car(page, site) -> None:  # noqa: ANN001
    """皖AY766D is silver-white in every crop (the camera tints it blue): the learned heads store it as white or
    silver, and "white" finds silver unless the investigator asks for exactly one colour."""
    _, app = site
    stored = app.state.system.store.query(SightingQuery(plate="皖AY766D", limit=10))
    assert stored and all(s.attributes.vehicle_color in ("white", "silver") for s in stored)
    assert all(s.model_versions.get("attributes", "").startswith("vehicle-heads-") for s in stored)
    page.click("nav a[data-view=search]")
    page.fill("#freetext-q", "white car 皖A")
    page.press("#freetext-q", "Enter")
    page.wait_for_selector("body[data-parsed]")
    assert page.input_value("#attr-color") == "white"
    page.click("#freetext-run")
    page.wait_for_selector("body[data-results]")
    listed = page.locator("#search-results li[data-sighting]").all_inner_texts()
    assert sum("皖AY766D" in t for t in listed) == 5, listed  # the photo and its four passes along the route
    shot(page, "search-white-car")


def test_plate_search_form_lists_fuzzy_matches(page) -> None:  # noqa: ANN001
    page.click("nav a[data-view=search]")
    page.fill("#plate-q", "皖AY7G6D")  # one character misread
    page.select_option("#plate-mode", "fuzzy")
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("#search-results li", timeout=15_000)
    assert "皖AY766D" in page.inner_text("#search-results")
    page.fill("#plate-q", "皖A$$")
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("#message:not([hidden])", timeout=15_000)
    assert "not a plate pattern" in page.inner_text("#message") and "400" not in page.inner_text("#message")


def test_analytics_pages_answer_clones_co_travel_and_drawn_areas(page) -> None:  # noqa: ANN001
    page.click("nav a[data-view=analytics]")
    page.click("#clones-form button[type=submit]")
    page.wait_for_selector("#message.info", timeout=15_000)  # the eval photos hold no cloned plate
    assert "No cloned plates" in page.inner_text("#message")
    page.fill("#cotravel-plate", "皖AY766D")
    page.click("#cotravel-form button[type=submit]")
    page.wait_for_function("document.getElementById('message').innerText.includes('Nobody travels with')",
                           timeout=15_000)
    box = page.locator("#map").bounding_box()
    page.click("#area-draw")  # map clicks add corners only in drawing mode
    for dx, dy in ((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)):  # an area around most of the cameras
        page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
    page.click("#area-finish")
    page.click("#area-form button[type=submit]")
    page.wait_for_selector("#analytics-results li", timeout=15_000)
    assert "皖AY766D" in page.inner_text("#analytics-results")
    shot(page, "analytics-area")


def test_a_cloned_plate_is_shown_with_both_cars(page, site, tokens, eval_dir: Path) -> None:  # noqa: ANN001
    url, _ = site
    cams = from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson", limit=30)  # as the site placed them
    # The route's car seen at cams[3] (route-1, START+70 min); its plate one minute later ~23 km away: a clone.
    far = max(cams, key=lambda c: (c.lon - cams[3].lon) ** 2 + (c.lat - cams[3].lat) ** 2)
    car = (eval_dir / "plates" / "full" / "0001.jpg").read_bytes() + b"\0" * 9
    posted = httpx.post(f"{url}/frames", files={"file": ("twin.jpg", car, "image/jpeg")}, timeout=120,
                        headers=bearer(tokens),
                        data={"camera_id": far.id, "captured_at": (START + timedelta(minutes=71)).isoformat()})
    assert posted.status_code == 201, posted.text
    page.click("nav a[data-view=analytics]")
    page.click("#clones-form button[type=submit]")
    page.wait_for_selector("#analytics-results li", timeout=15_000)
    text = page.inner_text("#analytics-results")
    assert "皖AY766D" in text and "km/h implied" in text and "confidence" in text
    page.wait_for_function("[...document.querySelectorAll('#analytics-results img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=15_000)  # both cars' evidence crops
    assert page.locator("#analytics-results img").count() == 2
    shot(page, "analytics-clone")


def test_errors_from_the_api_are_shown_as_messages(page) -> None:  # noqa: ANN001
    page.fill("#traj-plate", "NOSUCHPLATE")
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("#message:not([hidden])", timeout=15_000)
    assert page.inner_text("#message")


def test_a_live_alert_arrives_as_a_toast_and_can_be_acknowledged(page, site, tokens, eval_dir: Path) -> None:  # noqa: ANN001
    url, app = site
    page.click("nav a[data-view=alerts]")
    page.wait_for_selector("body[data-stream=open]", timeout=15_000)
    page.fill("#wl-name", "stolen-web")
    page.fill("#wl-by", "duty officer")
    page.click("#watchlist-form button[type=submit]")
    page.wait_for_selector("#entry-list option", state="attached", timeout=10_000)
    page.select_option("#entry-list", label="stolen-web")
    page.fill("#entry-value", "皖AYL375")
    page.fill("#entry-reason", "reported stolen")
    page.fill("#entry-by", "duty officer")
    page.click("#entry-form button[type=submit]")
    page.wait_for_selector("#message.info", timeout=10_000)
    camera_record = app.state.system.store.list_cameras()[5]
    camera = camera_record.id
    photo = (eval_dir / "plates" / "full" / "0000.jpg").read_bytes()

    def upload() -> None:  # a camera posts a frame from elsewhere, while the page is open
        httpx.post(url + "/frames", files={"file": ("0000-again.jpg", photo + b"\0", "image/jpeg")},
                   headers=bearer(tokens), data={"camera_id": camera, "captured_at": "2026-11-02T12:00:00+08:00"},
                   timeout=60)

    threading.Thread(target=upload).start()
    page.wait_for_selector(".toast", timeout=30_000)
    assert "皖AYL375" in page.inner_text(".toast")
    item = page.locator("#alert-list li").first
    assert "entry 皖AYL375 (reported stolen)" in item.inner_text()  # the alert names the watchlist entry it matched
    item.locator("button").click()  # acknowledged in the signed-in user's name
    page.wait_for_selector("#alert-list li button:has-text('acknowledged by web-supervisor')", timeout=10_000)
    shot(page, "alerts")
    page.reload()  # the alerts loaded with the page name their camera as the live ones do
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    listed = page.locator("#alert-list li").first.inner_text()
    assert camera_record.name in listed and camera not in listed.replace(camera_record.name, "")


def test_pages_fit_a_laptop_and_forms_work_from_the_keyboard(browser, site, tokens) -> None:  # noqa: ANN001
    url, _ = site
    context = browser.new_context(viewport={"width": 1024, "height": 700})
    page = context.new_page()
    page.goto(url + "/app/#search")
    page.wait_for_selector("#login-token:focus", timeout=30_000)  # the sign-in form takes the keyboard at once
    page.keyboard.type(tokens["supervisor"])
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.focus("#case-ref")
    page.keyboard.type(CASE)
    page.keyboard.press("Tab")
    page.keyboard.type(REASON)
    assert page.evaluate("document.activeElement.id") == "case-reason"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.focus("#plate-q")
    page.keyboard.type("皖AY766D")
    page.keyboard.press("Enter")  # submits the form without a mouse
    page.wait_for_function("document.body.dataset.results !== undefined || !document.getElementById('message').hidden",
                           timeout=15_000)
    for view in ("search", "analytics"):
        page.goto(url + f"/app/#{view}")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        shot(page, view)
    context.close()


def test_an_anonymous_visitor_gets_the_sign_in_page_and_a_bad_token_is_refused(browser, site, tokens) -> None:  # noqa: ANN001
    url, app = site
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url))
    page.goto(url + "/app/#search")
    page.wait_for_selector("#login-form", state="visible", timeout=30_000)
    for hidden in ("nav", "#case-bar", "#map", "#panel", "#sign-out"):
        assert not page.is_visible(hidden), hidden
    assert page.evaluate("document.activeElement.id") == "login-token"
    assert not [c for c in calls if "/cameras" in c or "/alerts" in c or "/search" in c]  # nothing asked before sign-in
    shot(page, "login")
    page.fill("#login-token", "sl_not-a-token")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])", timeout=10_000)
    assert "not valid" in page.inner_text("#login-error")
    assert page.is_visible("#login-form") and not page.is_visible("#map")
    assert page.context.cookies() == [] or all(c["name"] != "sightline_session" for c in page.context.cookies())
    assert any(e.action == "POST /auth/login" and e.status == 401 for e in app.state.system.audit.entries(limit=50))
    # The right token signs in; the header names the user and role; signing out returns to the sign-in page.
    sign_in(page, tokens["supervisor"])
    assert page.inner_text("#who-name") == "web-supervisor" and page.inner_text("#who-role") == "supervisor"
    page.click("#sign-out")
    page.wait_for_selector("#login-form", state="visible", timeout=10_000)
    assert all(c["name"] != "sightline_session" for c in page.context.cookies())
    assert page.input_value("#case-ref") == ""  # the case is forgotten with the session
    context.close()


def test_a_viewer_sees_the_map_and_alerts_but_not_searches(browser, site, tokens) -> None:  # noqa: ANN001
    url, app = site
    context, page = open_app(browser, url, tokens["viewer"], case=None)
    assert page.inner_text("#who-role") == "viewer"
    assert page.get_attribute("body", "data-cameras") == str(len(app.state.system.store.list_cameras()))
    page.click("nav a[data-view=alerts]")
    page.wait_for_selector("body[data-stream=open]", timeout=15_000)  # the live feed, through the session cookie
    assert not page.is_visible("#watchlist-form") and not page.is_visible("#entry-form")  # a supervisor's forms
    # No search form, page or case bar for a viewer (each would only be refused): the map page says what is theirs.
    assert not page.is_visible("nav a[data-view=search]") and not page.is_visible("#case-bar")
    page.evaluate("location.hash = '#search'")
    page.wait_for_function("location.hash === '#map'")
    assert not page.is_visible("#plate-search-form") and not page.is_visible("#trajectory-form")
    assert "investigator role" in page.inner_text("#viewer-note")
    context.close()


def test_a_search_without_a_case_is_not_sent_and_the_case_bar_says_why(browser, site, tokens) -> None:  # noqa: ANN001
    url, app = site
    context, page = open_app(browser, url, tokens["supervisor"], case=None)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    page.fill("#traj-plate", "皖AY766D")
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("#case-note.missing", timeout=5_000)
    assert "case number" in page.inner_text("#case-note")
    assert page.evaluate("document.activeElement.id") == "case-ref"  # the first empty field takes the focus
    page.fill("#case-ref", CASE)
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_function("document.getElementById('case-note').innerText.includes('reason')", timeout=5_000)
    assert not [u for u in sent if "/trajectories/" in u or "/search/" in u]
    page.fill("#case-reason", REASON)
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("body[data-trajectory]", timeout=15_000)
    assert "recorded under this case" in page.inner_text("#case-note")
    deadline = time.time() + 5  # the audit entry is appended once the response has gone out

    def audited() -> bool:
        found = app.state.system.audit.entries(actor="web-supervisor", case_ref=CASE, limit=50)
        return any(e.reason == REASON and e.action.startswith("GET /trajectories/") for e in found)

    while not audited() and time.time() < deadline:
        time.sleep(0.05)
    assert audited()
    # The case bar is remembered for this tab: a reload keeps it.
    page.reload()
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    assert page.input_value("#case-ref") == CASE and page.input_value("#case-reason") == REASON
    context.close()
