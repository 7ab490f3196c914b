"""The investigator's workbench in a real browser (Debian's Chromium, Playwright) against the app served on
localhost: free-text search read into chips, the full attribute form, photo search with the query shown and the
"same vehicle" cut-off, errors beside the action that caused them, a camera's recent sightings, the activity
histogram, and pages that fit a laptop and a phone.

The frames are real eval photos; what the models see in them is scripted (tests/fakes.py), because recognition
is not under test here — the workbench is. Screenshots go to the test's tmp folder."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.records import BBox
from services.api.localserver import serving
from services.ingest import PhotoJob
from tests.conftest import CHROMIUM, fake_site, signed_in_tab
from tests.fakes import person, vehicle

START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
PLATE, LOOKALIKE, OTHER = "皖AY766D", "皖AB1234", "苏E99999"
CASE, REASON = "2026/0413", "workbench test 测试"


@pytest.fixture(scope="module")
def site(tmp_path_factory, eval_dir: Path):  # noqa: ANN001, ANN201
    """Ten cameras on real intersections; a white car seen three times, a red car on a 皖A plate, a plate from
    elsewhere, and three people (two in black with a backpack, classified surely and unsurely)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    tmp = tmp_path_factory.mktemp("web-workbench")
    app, pipeline, cams = fake_site(tmp, eval_dir)
    system = app.state.system
    photos = sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:8]
    seen = [vehicle(plate=PLATE, plate_score=0.96, vehicle_color="white", vehicle_type="car")] * 3 + [
        [vehicle(plate=LOOKALIKE, plate_score=0.9, vehicle_color="red", vehicle_type="car")],
        [vehicle(plate=OTHER, plate_score=0.9, vehicle_color="white", vehicle_type="car")],
        [person(gender="male", gender_score=0.9, upper_color="black", upper_color_score=0.92, backpack=True,
                backpack_score=0.9)],
        [person(gender="male", gender_score=0.9, upper_color="black", upper_color_score=0.35, backpack=True,
                backpack_score=0.9)],
        [person(gender="female", gender_score=0.9, upper_color="red", upper_color_score=0.9, bag=True,
                bag_score=0.85)]]
    jobs = []
    for i, (photo, observed) in enumerate(zip(photos, seen, strict=True)):
        data = photo.read_bytes()
        pipeline.script(data, observed if isinstance(observed, list) else [observed])
        jobs.append(PhotoJob(photo.name, data, cams[i].id, START + timedelta(minutes=10 * i)))
    system.ingestor.ingest(jobs)
    # The query photo of the photo search: the white car (as stored) and a second, smaller vehicle beside it.
    query = photos[0].read_bytes()
    height, width = cv2.imdecode(np.frombuffer(query, np.uint8), cv2.IMREAD_COLOR).shape[:2]  # type: ignore[union-attr]
    pipeline.script(query, [vehicle(plate=PLATE, plate_score=0.96, vehicle_color="white", vehicle_type="car"),
                            vehicle(bbox=BBox(0, 0, width // 3, height // 3), vehicle_color="gray")])
    _, token = system.accounts.add("web-workbench", "investigator")
    _, supervisor = system.accounts.add("web-duty", "supervisor")
    app.state.supervisor_token = supervisor
    with serving(app) as url:
        yield url, app, token, photos[0], cams


def signed_in(browser, url: str, token: str):  # noqa: ANN001, ANN201
    """A 1366×768 tab in Shanghai's zone, signed in, with the case bar filled."""
    return signed_in_tab(browser, url, token, "search", (CASE, REASON), "body[data-ready=true][data-vocabulary=loaded]",
                         viewport={"width": 1366, "height": 768})


@pytest.fixture()
def page(browser, site):  # noqa: ANN001, ANN201
    url, _, token, _, _ = site
    context, opened = signed_in(browser, url, token)
    yield opened
    context.close()


@pytest.fixture()
def supervisor_page(browser, site):  # noqa: ANN001, ANN201
    url, app, _, _, _ = site
    context, opened = signed_in(browser, url, app.state.supervisor_token)
    yield opened
    context.close()


def in_view(page, selector: str) -> bool:  # noqa: ANN001
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and size is not None and 0 <= box["y"] and box["y"] + box["height"] <= size["height"]


def plates_listed(page) -> list[str]:  # noqa: ANN001
    labels = page.locator("#search-results li[data-sighting] > div:not(.actions) > div:first-child")
    return [t.split(" ·")[0].strip() for t in labels.all_inner_texts()]


def test_free_text_is_read_into_chips_that_fill_the_form_and_run_the_search(page) -> None:  # noqa: ANN001
    page.fill("#freetext-q", "白色SUV 皖A 火星路 frobnicate")
    page.press("#freetext-q", "Enter")
    page.wait_for_selector("body[data-parsed]")
    chips = page.locator("#freetext-chips .chip")
    texts = chips.all_inner_texts()
    assert all(any(word in t for t in texts) for word in ("皖A*", "white", "car")), texts
    place = page.locator("#freetext-chips .chip[data-field=place]")
    assert "not-applied" in (place.get_attribute("class") or "") and "no camera" in place.inner_text()
    assert "not understood: frobnicate" in page.inner_text("#freetext-ignored")
    # The chips filled the forms below, where they can be adjusted.
    assert page.input_value("#plate-q") == "皖A*" and page.input_value("#plate-mode") == "wildcard"
    assert page.input_value("#attr-color") == "white" and page.input_value("#attr-type") == "car"

    page.click("#freetext-run")
    page.wait_for_selector("body[data-results]")
    assert plates_listed(page) == [PLATE] * 3  # the red 皖A car is narrowed away by the colour chip
    assert "did not match the colour" in page.inner_text("#message")
    assert page.evaluate("document.getElementById('message').closest('#freetext-form') !== null")  # beside its action

    # Removing the colour chip lets the red car in; the form follows the chips.
    page.click("#freetext-chips .chip[data-field=vehicle_color] .chip-remove")
    assert page.input_value("#attr-color") == ""
    page.click("#freetext-run")
    page.wait_for_function("document.querySelectorAll('#search-results li[data-sighting]').length === 4")
    assert sorted(set(plates_listed(page))) == sorted({PLATE, LOOKALIKE})


def test_free_text_times_are_read_in_the_browsers_zone_and_places_pick_cameras(page, site) -> None:  # noqa: ANN001
    _, _, _, _, cams = site
    page.fill("#freetext-q", "白色SUV 昨天8点到10点 宝安公路")
    page.press("#freetext-q", "Enter")
    page.wait_for_selector("#freetext-chips .chip[data-field=time]")
    # The tab is in Asia/Shanghai: "8点" is 08:00 there, in the chip (with its zone) and in the form.
    assert page.input_value("#attr-start").endswith("T08:00") and page.input_value("#attr-end").endswith("T10:00")
    assert "GMT+8" in page.inner_text("#freetext-chips .chip[data-field=time]")
    chosen = page.eval_on_selector("#attr-cameras", "s => [...s.selectedOptions].map(o => o.value)")
    assert sorted(chosen) == sorted(c.id for c in cams if "宝安公路" in c.name)


def test_a_person_phrase_runs_the_attribute_search(page) -> None:  # noqa: ANN001
    page.fill("#freetext-q", "man in black with a backpack")
    page.press("#freetext-q", "Enter")
    page.wait_for_selector("body[data-parsed]")
    assert page.input_value("#attr-kind") == "person" and page.input_value("#attr-backpack") == "true"
    page.click("#freetext-run")
    page.wait_for_selector("body[data-results]")
    assert page.get_attribute("body", "data-results") == "2"
    assert all("backpack" in t for t in page.locator("#search-results li").all_inner_texts())


def test_attribute_form_filters_clothing_and_bag_and_minimum_confidence(page) -> None:  # noqa: ANN001
    page.select_option("#attr-kind", "person")
    assert page.is_visible("#attr-backpack") and not page.is_visible("#attr-color")
    options = page.locator("#attr-upper option").all_inner_texts()
    assert "purple" in options and "pink" in options  # the server's person colours
    page.select_option("#attr-upper", "black")
    page.select_option("#attr-backpack", "true")
    page.click("#attr-search-form button[type=submit]")
    page.wait_for_selector("body[data-results='2']")
    page.fill("#attr-confidence", "0.6")
    assert page.inner_text("#attr-confidence-value") == "60%"
    page.click("#attr-search-form button[type=submit]")
    page.wait_for_selector("body[data-results='1']")  # the unsure "black" is left out
    page.select_option("#attr-upper", "")
    page.select_option("#attr-backpack", "")
    page.select_option("#attr-bag", "true")
    page.click("#attr-search-form button[type=submit]")
    page.wait_for_selector("body[data-results='1']")
    assert "female" in page.inner_text("#search-results li")
    # Each result is on the map (a circle per sighting at its camera on the search page's layer).
    assert page.evaluate("searchLayer.getLayers().length") == 1


def test_photo_search_shows_the_query_its_objects_and_the_same_vehicle_cut_off(page, site, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, _, photo, _ = site
    page.set_input_files("#image-file", str(photo))
    page.click("#image-search-form button[type=submit]")
    page.wait_for_selector("#search-results li.cutoff")
    assert page.is_visible("#photo-img") and page.evaluate("document.getElementById('photo-img').naturalWidth > 0")
    assert page.locator("#photo-wrap .object-box").count() == 2
    assert page.get_attribute("#photo-wrap .object-box.picked", "data-index") == "0"
    first = page.locator("#search-results li[data-sighting]").first
    assert "same-vehicle" in (first.get_attribute("class") or "") and PLATE in first.inner_text()
    assert "appearance" in first.inner_text() and "local features" in first.inner_text()
    same = int(page.get_attribute("body", "data-same-vehicle") or "0")
    assert same >= 1
    # The cut-off line sits right after the likely matches; everything below it is a look-alike.
    items = page.locator("#search-results > li")
    assert "cutoff" in (items.nth(same).get_attribute("class") or "")
    listed = page.locator("#search-results li[data-sighting]").count()
    assert page.locator("#search-results li.look-alike").count() == listed - same
    assert page.evaluate("searchLayer.getLayers().length") >= 1  # results on the map
    page.locator("#photo-query").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "photo-search.png"))
    # Picking the other object searches for it instead.
    page.locator("#photo-wrap .object-box[data-index='1']").click()
    page.wait_for_selector("#photo-wrap .object-box.picked[data-index='1']")
    page.wait_for_selector("#search-results li.cutoff")


def test_errors_show_beside_their_action_and_exact_mode_offers_fuzzy(page, tmp_path: Path) -> None:  # noqa: ANN001
    page.fill("#plate-q", PLATE)
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("body[data-results='3']")
    page.fill("#plate-q", "皖A$$")
    page.select_option("#plate-mode", "fuzzy")
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("#message:not([hidden])")
    said = page.inner_text("#message")
    assert "not a plate pattern" in said and not said[:1].isdigit() and "400" not in said  # a sentence, no status code
    assert page.evaluate("document.getElementById('message').closest('#plate-search-form') !== null")
    assert in_view(page, "#message")
    assert page.locator("#search-results li").count() == 0  # the earlier results went with the failed search
    # A wildcard typed in exact mode is searched as one, and says so.
    page.select_option("#plate-mode", "exact")
    page.fill("#plate-q", "皖AY7*")
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("body[data-results='3']")
    assert "wildcard" in page.inner_text("#message") and page.input_value("#plate-mode") == "wildcard"
    # An exact plate with no match offers the fuzzy search, which finds the misread plate.
    page.select_option("#plate-mode", "exact")
    page.fill("#plate-q", "皖AY7G6D")
    page.click("#plate-search-form button[type=submit]")
    page.wait_for_selector("#try-fuzzy")
    page.screenshot(path=str(tmp_path / "try-fuzzy.png"))
    page.click("#try-fuzzy")
    page.wait_for_selector("body[data-results='3']")
    assert page.input_value("#plate-mode") == "fuzzy" and PLATE in page.inner_text("#search-results")


def test_a_slow_search_shows_progress_and_can_be_cancelled(page, site) -> None:  # noqa: ANN001
    _, _, _, photo, _ = site
    held = []
    page.route("**/search/image", lambda route: held.append(route))  # the server "takes long": held, never answered
    page.set_input_files("#image-file", str(photo))
    button = page.locator("#image-search-form button[type=submit]")
    button.click()
    page.wait_for_selector("#image-search-form .busy:not([hidden]) .spinner")  # shown past half a second
    assert button.is_disabled()
    page.click("#image-search-form .busy button.cancel")
    page.wait_for_selector("#message.info:has-text('Cancelled')")
    assert page.evaluate("document.getElementById('message').closest('#image-search-form') !== null")
    assert button.is_enabled() and page.is_hidden("#image-search-form .busy")
    assert page.locator("#search-results li").count() == 0 and len(held) == 1


def test_watchlists_one_rule_per_list_entries_deleted_imported_and_rule_settings(supervisor_page, site,  # noqa: ANN001
                                                                                tmp_path: Path) -> None:
    page = supervisor_page
    app = site[1]
    page.click("nav a[data-view=alerts]")
    page.fill("#wl-name", "stolen-workbench")
    page.click("#watchlist-form button[type=submit]")
    page.wait_for_selector("#entry-list option:has-text('stolen-workbench')", state="attached")
    page.select_option("#entry-list", label="stolen-workbench")
    for plate in (PLATE, LOOKALIKE):  # "alert on it" is ticked for both
        page.fill("#entry-value", plate)
        page.fill("#entry-reason", "reported stolen")
        page.click("#entry-form button[type=submit]")
        page.wait_for_selector(f"#watchlists li[data-entry='{plate}']")
    assert "already alerts on it" in page.inner_text("#message")  # the second entry made no second rule
    listed = page.locator("#watchlists li[data-watchlist='stolen-workbench']")
    assert listed.locator("li[data-rule]").count() == 1
    listed.locator(f"li[data-entry='{LOOKALIKE}'] button").click()
    page.wait_for_selector(f"#watchlists li[data-entry='{LOOKALIKE}']", state="detached")
    assert listed.locator("li[data-entry]").count() == 1
    # Entries from a CSV file.
    page.select_option("#import-list", label="stolen-workbench")
    csv = ("value,match,tolerance,reason,created_by\n"
           "沪A12345,exact,1,fleet check,duty\n沪B*,wildcard,1,fleet check,duty\n")
    page.set_input_files("#import-file", files=[{"name": "plates.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#watchlists li[data-entry='沪B*']")
    assert "2 entries imported" in page.inner_text("#message") and listed.locator("li[data-entry]").count() == 3
    # A rule with its settings: severity, minimum confidence, a night window, one camera.
    page.select_option("#rule-list", label="stolen-workbench")
    page.select_option("#rule-severity", "critical")
    page.fill("#rule-confidence", "0.8")
    page.fill("#rule-from", "22:00")
    page.fill("#rule-to", "06:00")
    page.select_option("#rule-cameras", index=0)
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#watchlists li[data-watchlist='stolen-workbench'] li[data-rule]:has-text('critical')")
    rules = [r for r in app.state.system.watchlists.rules() if r.severity == "critical"]
    assert len(rules) == 1 and rules[0].min_confidence == 0.8 and len(rules[0].camera_ids) == 1
    assert str(rules[0].time_from)[:5] == "22:00" and rules[0].tz == "Asia/Shanghai"
    page.screenshot(path=str(tmp_path / "watchlists.png"), full_page=True)
    assert page.evaluate("(p => p.scrollWidth <= p.clientWidth)(document.getElementById('panel'))")


def test_a_camera_click_lists_its_recent_sightings(page, site, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, _, _, cams = site
    page.click("nav a[data-view=map]")
    camera = cams[0]
    page.evaluate(f"void map.setView([{camera.lat}, {camera.lon}], 17, {{ animate: false }})")
    point = page.evaluate(f"Object.values(map.latLngToContainerPoint([{camera.lat}, {camera.lon}]))")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + point[0], box["y"] + point[1])
    popup = page.locator(f".camera-popup[data-camera='{camera.id}'][data-loaded=true]")
    popup.wait_for()
    assert camera.name in popup.inner_text()
    page.screenshot(path=str(tmp_path / "camera-popup.png"))
    assert popup.locator("li[data-sighting]").count() == 1 and PLATE in popup.inner_text()


def test_a_trajectory_replays_and_goes_when_the_page_is_left(page) -> None:  # noqa: ANN001
    page.click("nav a[data-view=map]")
    page.fill("#traj-plate", PLATE)
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("body[data-trajectory='3']")
    page.fill("#replay-slider", "2")
    assert page.get_attribute("#trajectory-list li.current", "data-stop") == "2"
    assert "CST" in page.inner_text("#replay-time") or "GMT+8" in page.inner_text("#replay-time")  # the zone shown
    page.click("#replay-play")
    page.wait_for_selector("#trajectory-list li.current[data-stop='2']")  # a replay from the start reaches the end
    page.wait_for_selector("#replay-play[aria-pressed=false]")
    assert page.evaluate("map.hasLayer(trajectoryLayer)")
    page.click("nav a[data-view=search]")
    # the trajectory stays with its page (the view changes on the hashchange the click causes: wait for it)
    page.wait_for_function("!map.hasLayer(trajectoryLayer)", timeout=10_000)
    # An empty time range leaves no stale replay position.
    page.click("nav a[data-view=map]")
    page.fill("#traj-start", "2020-01-01T00:00")
    page.fill("#traj-end", "2020-01-02T00:00")
    page.click("#trajectory-form button[type=submit]")
    page.wait_for_selector("body[data-trajectory='0']")
    assert page.is_hidden("#replay") and page.inner_text("#replay-time") == ""


def test_activity_histogram_brushes_the_time_range_and_paints_a_heatmap(page, tmp_path: Path) -> None:  # noqa: ANN001
    page.click("#activity-load")
    page.wait_for_selector("body[data-activity='5']")  # the form's kind: vehicles
    assert page.get_attribute("body", "data-heat") == "5"  # the cameras that saw them
    box = page.locator("#activity-chart").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    page.mouse.up()
    page.wait_for_selector("body[data-brushed]")
    page.screenshot(path=str(tmp_path / "activity.png"))
    assert page.input_value("#attr-start") == "2026-11-02T08:00" and page.input_value("#attr-end") == "2026-11-02T09:00"


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_every_page_fits_without_horizontal_overflow(browser, site, tmp_path: Path, width: int, height: int) -> None:  # noqa: ANN001
    url, _, token, _, _ = site
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(f"{url}/app/#search")
        page.fill("#login-token", token)
        page.click("#login-submit")
        page.wait_for_selector("body[data-ready=true][data-vocabulary=loaded]", timeout=30_000)
        page.fill("#case-ref", CASE)
        page.fill("#case-reason", REASON)
        page.fill("#freetext-q", "白色SUV 皖A 宝安公路")
        page.press("#freetext-q", "Enter")
        page.wait_for_selector("body[data-parsed]")
        for view in ("search", "map", "analytics", "cases", "alerts"):
            page.click(f"nav a[data-view={view}]")
            page.wait_for_selector(f"#view-{view}:not([hidden])")
            page.screenshot(path=str(tmp_path / f"{view}-{width}.png"))
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), view
            assert page.evaluate("(p => p.scrollWidth <= p.clientWidth)(document.getElementById('panel'))"), view
        assert (tmp_path / f"search-{width}.png").stat().st_size > 0
    finally:
        context.close()
