"""The Analytics page in a real browser (Debian's Chromium, Playwright) against the app served on localhost:
co-travel with both cars' crops per shared pass and both routes on the map, areas "A then B" drawn with the
drawing tool (with an undo) that find the car which went from A to B, and the cloned-plate scan with a time
filter and progress. The pages must fit a laptop and a phone.

The frames are real eval photos; what the models see in them is scripted (tests/fakes.py), because recognition
is not under test here — the analytics page is. Screenshots go to the test's tmp folder."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.api.localserver import serving
from services.ingest import PhotoJob
from tests.conftest import CHROMIUM, fake_site, signed_in_tab
from tests.fakes import vehicle

START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
TARGET, COMPANION, AHEAD, REVERSE = "皖AY766D", "苏E12345", "浙C67890", "沪B55555"
CLONE_1, CLONE_2 = "京A00001", "京A00002"
CASE, REASON = "2026/0414", "analytics test 测试"


@pytest.fixture(scope="module")
def site(tmp_path_factory, eval_dir: Path):  # noqa: ANN001, ANN201
    """Ten cameras on real intersections (0–2 within 1.2 km of each other, 3, 4 and 9 far apart). The target passes
    cameras 0, 1, 2 five minutes apart, one companion 20 s behind it each time and another 30 s ahead; a fourth car
    goes the other way (camera 2, then 0, an hour earlier). Two cloned plates, each read twice a minute apart
    16–22 km apart, on two different days."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    tmp = tmp_path_factory.mktemp("web-analytics")
    app, pipeline, cams = fake_site(tmp, eval_dir)
    system = app.state.system
    photos = [p.read_bytes() for p in sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:8]]
    # One photo per car (the fake pipeline reads a frame by its pixels); a trailing byte, which JPEG decoders
    # ignore, gives each pass its own frame hash.
    cars = (TARGET, COMPANION, REVERSE, CLONE_1, CLONE_1, CLONE_2, CLONE_2, AHEAD)
    for photo, plate in zip(photos, cars, strict=True):
        pipeline.script(photo, [vehicle(plate=plate, plate_score=0.95, vehicle_color="white", vehicle_type="car")])
    passes = [(0, i, START + timedelta(minutes=5 * i)) for i in range(3)]  # target: photo, camera, time
    passes += [(1, i, START + timedelta(minutes=5 * i, seconds=20)) for i in range(3)]  # companion, 20 s behind
    passes += [(7, i, START + timedelta(minutes=5 * i, seconds=-30)) for i in range(3)]  # another, 30 s ahead
    passes += [(2, 2, START - timedelta(minutes=60)), (2, 0, START - timedelta(minutes=30))]  # the other way
    day = timedelta(days=1)
    passes += [(3, 3, START + day + timedelta(hours=1)), (4, 9, START + day + timedelta(hours=1, minutes=1)),
               (5, 4, START + 2 * day + timedelta(hours=1)), (6, 9, START + 2 * day + timedelta(hours=1, minutes=1))]
    system.ingestor.ingest([PhotoJob(f"pass-{n}.jpg", photos[photo] + b"\0" * n, cams[camera].id, ts)
                            for n, (photo, camera, ts) in enumerate(passes)])
    _, token = system.accounts.add("web-analytics", "investigator")
    with serving(app) as url:
        yield url, token, cams


def open_analytics(browser, url: str, token: str, width: int = 1366, height: int = 768):  # noqa: ANN001, ANN201
    """A tab in Shanghai's zone (US English dates), signed in, on the Analytics page with the case bar filled."""
    return signed_in_tab(browser, url, token, "analytics", (CASE, REASON),
                         viewport={"width": width, "height": height}, locale="en-US")


@pytest.fixture()
def page(browser, site):  # noqa: ANN001, ANN201
    url, token, _ = site
    context, opened = open_analytics(browser, url, token)
    yield opened
    context.close()


def crops_loaded(page, scope: str) -> None:  # noqa: ANN001
    page.wait_for_function(f"[...document.querySelectorAll('{scope} img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def route_colours(page) -> list[str]:  # noqa: ANN001
    return page.evaluate("routeLayer.getLayers().filter(l => l instanceof L.Polyline && !(l instanceof L.CircleMarker))"
                         ".map(l => l.options.color)")


def find_co_travellers(page) -> None:  # noqa: ANN001
    page.fill("#cotravel-plate", TARGET)
    page.click("#cotravel-form button[type=submit]")
    page.wait_for_selector("body[data-routes]")


def test_co_travel_lists_both_crops_per_shared_pass_and_draws_both_routes(page, site, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, cams = site
    find_co_travellers(page)
    rows = page.locator("#analytics-results li.companion")
    plates = rows.evaluate_all("rows => rows.map(r => r.dataset.plate)")
    assert sorted(plates) == sorted([COMPANION, AHEAD])  # not the car that went the other way
    companion = page.locator(f"#analytics-results li.companion[data-plate='{COMPANION}']")
    passes = companion.locator("li.pass")
    assert passes.count() == 3
    crops_loaded(page, "#analytics-results")
    first = passes.first
    assert first.locator("figure").count() == 2  # the target's crop beside the companion's
    captions = first.locator("figcaption").all_inner_texts()
    assert TARGET in captions[0] and COMPANION in captions[1]
    assert "8:00:00 AM" in captions[0] and "8:00:20 AM" in captions[1]
    assert "GMT+8" in captions[1]  # times with their zone
    assert cams[0].name in first.inner_text() and cams[0].id not in first.inner_text()  # the camera by name
    assert "8:04:30 AM" in page.locator(f"li.companion[data-plate='{AHEAD}'] li.pass").nth(1).inner_text()
    # The first companion is chosen: both routes over the co-travel window, in two colours, its passes highlighted.
    chosen = rows.first.get_attribute("data-plate")
    assert page.get_attribute("body", "data-route-companion") == chosen
    assert page.get_attribute("body", "data-routes") == "3,3"
    assert sorted(route_colours(page)) == sorted(["#d33", "#2563a8"])
    assert page.evaluate("passLayer.getLayers().length") == 3
    # Choosing the other one moves the highlight, its passes and its route.
    other = AHEAD if chosen == COMPANION else COMPANION
    page.click(f"li.companion[data-plate='{other}'] button.select")
    page.wait_for_selector(f"body[data-route-companion='{other}']")
    assert page.inner_text("#cotravel-chosen") == other  # the legend names whose route is drawn
    picked = page.locator(f"li.companion[data-plate='{other}']")
    assert "current" in (picked.get_attribute("class") or "")
    assert picked.locator("button.select").get_attribute("aria-pressed") == "true"
    assert page.locator("#analytics-results li.companion.current").count() == 1
    assert page.locator(f"li.companion[data-plate='{chosen}'] button.select").get_attribute("aria-pressed") == "false"
    tips = page.evaluate("passLayer.getLayers().map(l => l.getTooltip().getContent()(l).textContent)")
    assert len(tips) == 3 and all(t.startswith(f"{other} with {TARGET}") for t in tips)
    assert sorted(route_colours(page)) == sorted(["#d33", "#2563a8"])
    page.locator(f"li.companion[data-plate='{other}']").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "co-travel.png"))
    # The routes and passes stay with the Analytics page.
    page.click("nav a[data-view=map]")  # views change on the hashchange a click causes: wait for each
    page.wait_for_function("!map.hasLayer(routeLayer)", timeout=10_000)
    page.click("nav a[data-view=analytics]")
    page.wait_for_function("map.hasLayer(routeLayer)", timeout=10_000)


def click_around(page, lat: float, lon: float, offsets: list[tuple[int, int]]) -> None:  # noqa: ANN001
    """Clicks on the map at pixel offsets from a point (the map is first centred on it)."""
    page.evaluate(f"void map.setView([{lat}, {lon}], 16, {{ animate: false }})")
    x, y = page.evaluate(f"Object.values(map.latLngToContainerPoint([{lat}, {lon}]))")
    box = page.locator("#map").bounding_box()
    for dx, dy in offsets:
        page.mouse.click(box["x"] + x + dx, box["y"] + y + dy)


SQUARE = [(-40, -40), (40, -40), (40, 40), (-40, 40)]


def test_areas_drawn_in_order_with_undo_find_the_cars_that_went_from_a_to_b(page, site, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, cams = site
    a, b = cams[0], cams[2]
    # Not drawing: a map click adds nothing.
    click_around(page, a.lat, a.lon, [(-40, -40)])
    assert page.get_attribute("body", "data-drawing") == "off" and page.get_attribute("body", "data-areas") == "0"
    # Searching with no area says so beside the button.
    page.click("#area-form button[type=submit]")
    page.wait_for_selector("#message:not([hidden])")
    assert "Draw an area first" in page.inner_text("#message")
    assert page.evaluate("document.getElementById('message').closest('#area-form') !== null")
    # Area A around camera 0, with a stray point taken back by the undo.
    page.click("#area-draw")
    click_around(page, a.lat, a.lon, [*SQUARE, (200, 150)])
    assert page.get_attribute("body", "data-drawing") == "5"
    page.click("#area-undo")
    assert page.get_attribute("body", "data-drawing") == "4"
    page.click("#area-finish")
    assert page.get_attribute("body", "data-areas") == "1"
    assert "1 camera(s)" in page.inner_text("#area-list li[data-area=A]")
    # A third area drawn and deleted again; then B around camera 2 (a two-point area cannot be finished).
    page.click("#area-draw")
    click_around(page, cams[1].lat, cams[1].lon, SQUARE)
    page.click("#area-finish")
    page.click("#area-list li[data-area=B] button")
    assert page.get_attribute("body", "data-areas") == "1"
    page.click("#area-draw")
    assert page.inner_text("#area-finish") == "Finish area B"
    click_around(page, b.lat, b.lon, SQUARE[:2])
    page.click("#area-finish")
    assert "at least 3 points" in page.inner_text("#message") and page.get_attribute("body", "data-drawing") == "2"
    click_around(page, b.lat, b.lon, SQUARE[2:])
    page.click("#area-finish")
    assert page.get_attribute("body", "data-areas") == "2"
    assert page.evaluate("areaLayer.getLayers().filter(l => l instanceof L.Polygon).length") == 2  # both areas plotted
    # A then B, in that order: the target and its companions; the car that went B then A is left out.
    page.click("#area-form button[type=submit]")
    page.wait_for_selector("body[data-analytics]")
    listed = page.locator("#analytics-results li.area-match")
    assert sorted(listed.evaluate_all("rows => rows.map(r => r.dataset.plate)")) == sorted([TARGET, COMPANION, AHEAD])
    assert "not in this order" in page.inner_text("#message")
    crops_loaded(page, "#analytics-results")
    row = page.locator(f"#analytics-results li[data-plate='{TARGET}'] figcaption").all_inner_texts()
    assert row[0].startswith(f"A: {a.name}") and "8:00:00 AM" in row[0]
    assert row[1].startswith(f"B: {b.name}") and "8:10:00 AM" in row[1]
    assert page.evaluate("analyticsLayer.getLayers().length") == 6  # each car's passes in A and B on the map
    page.screenshot(path=str(tmp_path / "areas.png"))
    # Area B's own window (before 08:00): only the car that went the other way was in B then, and not after A.
    page.fill("#area-B-end", "2026-11-02T07:45")
    page.click("#area-form button[type=submit]")
    page.wait_for_selector("#message.info:has-text('No vehicle was seen in A then B')")
    # Without the order, it is found.
    page.uncheck("#area-ordered")
    page.click("#area-form button[type=submit]")
    page.wait_for_selector(f"#analytics-results li[data-plate='{REVERSE}']")
    assert page.locator("#analytics-results li.area-match").count() == 1


def test_clone_scan_shows_progress_and_filters_by_time(page, site, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, cams = site
    held = []
    page.route(re.compile(r"/clones\?"), lambda route: held.append(route))  # a slow scan: held, never answered
    button = page.locator("#clones-form button[type=submit]")
    button.click()
    page.wait_for_selector("#clones-form .busy:not([hidden]) .spinner")
    assert button.is_disabled()
    page.click("#clones-form .busy button.cancel")
    page.wait_for_selector("#message.info:has-text('Cancelled')")
    assert button.is_enabled() and len(held) == 1
    page.unroute(re.compile(r"/clones\?"))
    # Every day: both cloned plates.
    button.click()
    page.wait_for_selector("body[data-analytics='2']")
    # Only 3 November (Shanghai time): the first one, with camera names in its captions.
    page.fill("#clones-start", "2026-11-03T00:00")
    page.fill("#clones-end", "2026-11-04T00:00")
    button.click()
    page.wait_for_selector("body[data-analytics='1']")
    row = page.locator("#analytics-results li[data-plate]")
    assert row.get_attribute("data-plate") == CLONE_1
    crops_loaded(page, "#analytics-results")
    captions = row.locator("figcaption").all_inner_texts()
    assert captions[0].startswith(f"A: {cams[3].name}") and captions[1].startswith(f"B: {cams[9].name}")
    assert not any(c.id in row.inner_text() for c in (cams[3], cams[9]))
    page.screenshot(path=str(tmp_path / "clones.png"))
    # A day with none says so, and that the time range may be why.
    page.fill("#clones-start", "2026-11-05T00:00")
    page.fill("#clones-end", "2026-11-06T00:00")
    button.click()
    page.wait_for_selector("#message.info:has-text('No cloned plates found between')")
    assert "time range may have excluded" in page.inner_text("#message")
    assert page.locator("#analytics-results li").count() == 0


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_analytics_page_fits_without_horizontal_overflow(browser, site, tmp_path: Path,  # noqa: ANN001
                                                         width: int, height: int) -> None:
    url, token, _ = site
    context, page = open_analytics(browser, url, token, width, height)
    try:
        find_co_travellers(page)
        crops_loaded(page, "#analytics-results")
        page.click("#area-draw")  # the drawing tools shown
        page.locator("#analytics-results li.pass").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"analytics-{width}.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.evaluate("(p => p.scrollWidth <= p.clientWidth)(document.getElementById('panel'))")
    finally:
        context.close()
