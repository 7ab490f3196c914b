"""What the web app shows each user, in a real browser (Debian's Chromium, Playwright) against the app served on
localhost (issue #32): after every kind of search its results and their count are in view, at 1366×768 and on a
390 px phone; an empty result names what constrained it (the time range only when one was given); a viewer gets
no search forms but what a viewer can use; no search is sent while the user types; errors are sentences without
status codes; a supervisor's Audit page lists, filters, pages and verifies the log; the whole app in Chinese (the
browser's language, or the switch, remembered), and a Chinese case number sent percent-encoded.

What the models see in the synthetic photos is scripted (tests/fakes.py): recognition is not under test here."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from models.records import BBox
from models.spaces import SPACES
from services.api.localserver import serving
from services.ingest import PhotoJob
from tests.conftest import CHROMIUM, fake_site, signed_in_tab
from tests.fakes import face, jpeg, person, unit, vehicle

START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
TARGET, COMPANION, CLONE = "皖AY766D", "苏E12345", "京A00001"
CASE, REASON = "2026/0415", "reach test 测试"
CN_CASE = "沪公(2026)0412号"
READY = "body[data-ready=true][data-vocabulary=loaded]"
CASE_BOUND = re.compile(r"/(search/(?!vocabulary|parse)|trajectories/|stays/|clones|co-travel/|sightings(\?|$))")


@pytest.fixture(scope="module")
def site(tmp_path_factory, eval_dir: Path):  # noqa: ANN001, ANN201
    """Ten cameras on real intersections (0–2 near each other, 3 and 9 far apart). A white car passes cameras
    0, 1, 2 five minutes apart with a red one 20 s behind it; a plate read at cameras 3 and 9 a minute apart (a
    clone); a man whose face was seen at camera 4. One user of each role."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    app, pipeline, cams = fake_site(tmp_path_factory.mktemp("web-reach"), eval_dir)
    system = app.state.system
    someone = unit(np.random.default_rng(5).standard_normal(SPACES["face"]))
    car, companion, clone, scene, probe = jpeg(101), jpeg(102), jpeg(103), jpeg(104), jpeg(105)
    pipeline.script(car, [vehicle(plate=TARGET, plate_score=0.96, vehicle_color="white", vehicle_type="car")])
    pipeline.script(companion, [vehicle(plate=COMPANION, plate_score=0.95, vehicle_color="red", vehicle_type="car")])
    pipeline.script(clone, [vehicle(plate=CLONE, plate_score=0.95, vehicle_color="black", vehicle_type="car")])
    pipeline.script(scene, [person(BBox(10, 0, 110, 96), gender="male"),
                            face(BBox(40, 5, 80, 45), vector=someone, parent=0)])
    pipeline.script(probe, [face(BBox(20, 20, 60, 60), vector=someone)])
    passes = [(car, i, START + timedelta(minutes=5 * i)) for i in range(3)]
    passes += [(companion, i, START + timedelta(minutes=5 * i, seconds=20)) for i in range(3)]
    passes += [(clone, 3, START + timedelta(hours=1)), (clone, 9, START + timedelta(hours=1, minutes=1)),
               (scene, 4, START + timedelta(hours=2))]
    system.ingestor.ingest([PhotoJob(f"pass-{n}.jpg", photo + b"\0" * n, cams[camera].id, ts)  # each its own hash
                            for n, (photo, camera, ts) in enumerate(passes)])
    tokens = {role: system.accounts.add(f"web-reach-{role}", role)[1]
              for role in ("viewer", "investigator", "supervisor")}
    photos = tmp_path_factory.mktemp("photos")
    (photos / "car.jpg").write_bytes(car)
    (photos / "face.jpg").write_bytes(probe)
    with serving(app) as url:
        yield url, app, tokens, cams, photos


def open_tab(browser, site, role: str = "investigator", view: str = "search", size: tuple[int, int] = (1366, 768),  # noqa: ANN001, ANN201
             locale: str = "en-US", case: tuple[str, str] | None = (CASE, REASON), ready: str = READY):
    """A tab in Shanghai's zone in `locale`, signed in as `role` on `view`, the case bar filled (`case`)."""
    url, _, tokens, _, _ = site
    if case:
        return signed_in_tab(browser, url, tokens[role], view, case, ready, locale=locale,
                             viewport={"width": size[0], "height": size[1]})
    context = browser.new_context(timezone_id="Asia/Shanghai", locale=locale,
                                  viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(f"{url}/app/#{view}")
    page.fill("#login-token", tokens[role])
    page.click("#login-submit")
    page.wait_for_selector(ready)
    return context, page


def shown(page, selector: str) -> bool:  # noqa: ANN001
    """The element's top is inside the viewport and not clipped by a scrolled panel: what is at that point is it."""
    return page.evaluate("""(selector) => {
      const node = document.querySelector(selector);
      if (!node) return false;
      const r = node.getBoundingClientRect();
      if (!r.width || !r.height || r.top < 0 || r.left < 0) return false;
      if (r.top >= innerHeight || r.right > innerWidth) return false;
      const hit = document.elementFromPoint(r.left + Math.min(10, r.width / 2), r.top + Math.min(8, r.height / 2));
      return !!hit && node.contains(hit);
    }""", selector)


def count_in_view(page, count: str, first: str) -> str:  # noqa: ANN001
    """The count wholly in the viewport (element box against it), the first result's top in view too."""
    box, size = page.locator(count).bounding_box(), page.viewport_size
    assert box and size and 0 <= box["y"] and box["y"] + box["height"] <= size["height"], (count, box)
    assert shown(page, count) and shown(page, first), (count, first)
    return page.inner_text(count)


@pytest.mark.parametrize("size", [(1366, 768), (390, 844)])
def test_every_search_brings_its_results_and_their_count_into_view(browser, site, size, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, _, cams, photos = site
    context, page = open_tab(browser, site, size=size)
    try:
        first = "#search-results li[data-sighting]"
        page.fill("#plate-q", TARGET)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='3']")
        assert count_in_view(page, "#search-count", first) == "3 results"

        page.select_option("#attr-color", "red")
        page.click("#attr-search-form button[type=submit]")
        page.wait_for_function(f"document.getElementById('search-results').textContent.includes('{COMPANION}')")
        assert count_in_view(page, "#search-count", first) == "3 results"

        page.fill("#freetext-q", "白色 皖AY766D")
        page.press("#freetext-q", "Enter")
        page.wait_for_selector("body[data-parsed]")
        page.click("#freetext-run")
        page.wait_for_function("document.getElementById('search-query').textContent.includes('白色 皖AY766D')")
        page.wait_for_selector("body[data-results='3']")
        assert count_in_view(page, "#search-count", first) == "3 results"

        page.set_input_files("#image-file", str(photos / "car.jpg"))
        page.click("#image-search-form button[type=submit]")
        page.wait_for_selector("#search-results li.cutoff")
        assert re.fullmatch(r"\d+ results?", count_in_view(page, "#search-count", first))
        page.screenshot(path=str(tmp_path / f"photo-{size[0]}.png"))

        page.set_input_files("#face-file", str(photos / "face.jpg"))
        page.click("#face-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='1']")
        assert count_in_view(page, "#search-count", first) == "1 result"

        page.click("nav a[data-view=map]")
        page.fill("#traj-plate", TARGET)
        page.click("#trajectory-form button[type=submit]")
        page.wait_for_selector("body[data-trajectory='3']")
        assert count_in_view(page, "#trajectory-count", "#trajectory-list li") == "3 sightings in 1 trip"

        page.click("nav a[data-view=analytics]")
        page.click("#clones-form button[type=submit]")
        page.wait_for_selector("body[data-analytics='1']")
        assert count_in_view(page, "#analytics-count", "#analytics-results li") == "1 cloned plate"
        page.fill("#cotravel-plate", TARGET)
        page.click("#cotravel-form button[type=submit]")
        page.wait_for_selector("body[data-routes]")
        assert count_in_view(page, "#analytics-count", "#analytics-results li") == "1 companion"
        # An area around cameras 0–2 (as if drawn), then "who went there?".
        lats, lons = [c.lat for c in cams[:3]], [c.lon for c in cams[:3]]
        s, n, w, e = min(lats) - 0.002, max(lats) + 0.002, min(lons) - 0.002, max(lons) + 0.002
        corners = [[s, w], [s, e], [n, e], [n, w]]
        page.evaluate("points => { drawnAreas.push({ points, start: '', end: '' }); showAreas(); }", corners)
        page.click("#area-form button[type=submit]")
        page.wait_for_selector("body[data-analytics='2']")
        assert count_in_view(page, "#analytics-count", "#analytics-results li") == "2 vehicles"
        page.screenshot(path=str(tmp_path / f"areas-{size[0]}.png"))
    finally:
        context.close()


def test_an_empty_result_names_the_time_range_only_when_one_was_given(browser, site) -> None:  # noqa: ANN001
    context, page = open_tab(browser, site)
    try:
        page.fill("#plate-q", "皖Z*")
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='0']")
        said = page.inner_text("#message")
        assert "No plate matches “皖Z*”" in said and "time" not in said, said
        assert page.inner_text("#search-count") == "0 results" and shown(page, "#message")
        # The same pattern that matches, in a time range that holds none of its sightings: the range is named.
        page.fill("#attr-start", "2020-01-01T00:00")
        page.fill("#attr-end", "2020-01-02T00:00")
        page.fill("#plate-q", "皖A*")
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_function("document.getElementById('message').innerText.includes('皖A*')")
        said = page.inner_text("#message")
        assert "between" in said and "2020" in said and "time range may have excluded" in said, said
        # A trajectory: no range given, none named; a range given, it is named.
        page.click("nav a[data-view=map]")
        page.fill("#traj-plate", "皖Q00000")
        page.click("#trajectory-form button[type=submit]")
        page.wait_for_selector("body[data-trajectory='0']")
        said = page.inner_text("#message")
        assert "No sightings of 皖Q00000" in said and "time" not in said, said
        page.fill("#traj-plate", TARGET)
        page.fill("#traj-start", "2020-01-01T00:00")
        page.fill("#traj-end", "2020-01-02T00:00")
        page.click("#trajectory-form button[type=submit]")
        page.wait_for_function(f"document.getElementById('message').innerText.includes('{TARGET}')")
        assert "time range may have excluded" in page.inner_text("#message")
    finally:
        context.close()


def test_a_viewer_gets_no_search_forms_but_what_a_viewer_can_use(browser, site) -> None:  # noqa: ANN001
    context, page = open_tab(browser, site, "viewer", case=None, ready="body[data-ready=true]")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    try:
        assert page.evaluate("location.hash") == "#map"  # asked for #search: shown the map instead
        forms = ("#trajectory-form", "#freetext-form", "#plate-search-form", "#attr-search-form", "#image-search-form",
                 "#face-search-form", "#clones-form", "#cotravel-form", "#area-form", "#case-new-form", "#audit-form",
                 "#case-bar")
        assert not [f for f in forms if page.is_visible(f)]
        links = page.locator("nav a:visible").evaluate_all("links => links.map(a => a.dataset.view)")
        assert links == ["map", "alerts"]
        assert page.is_visible("#viewer-note") and "investigator role" in page.inner_text("#viewer-note")
        page.evaluate("location.hash = '#analytics'")
        page.wait_for_function("location.hash === '#map'")
        assert not page.is_visible("#clones-form")
        page.click("nav a[data-view=alerts]")
        page.wait_for_selector("body[data-stream=open]")
        assert page.is_visible("#h-alerts") and not page.is_visible("#watchlist-form")
        assert not [u for u in sent if CASE_BOUND.search(u)]
    finally:
        context.close()


def test_typing_sends_no_search(browser, site) -> None:  # noqa: ANN001
    """Every query is audited as the user's act: typing into any field of the search, map and analytics pages
    sends no case-bound request (only a submit or a button does)."""
    context, page = open_tab(browser, site, view="map")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    try:
        for view in ("map", "search", "analytics"):
            page.click(f"nav a[data-view={view}]")
            page.wait_for_selector(f"#view-{view}:not([hidden])")
            fields = page.locator(f"#view-{view} input:visible:is([type=text], :not([type]), [type=search])")
            for i in range(fields.count()):
                fields.nth(i).press_sequentially("皖AY76", delay=20)
        page.wait_for_timeout(600)  # past any debounce
        assert not [u for u in sent if CASE_BOUND.search(u)], sent
    finally:
        context.close()


def test_errors_are_sentences_and_the_case_bar_says_what_to_fill_in(browser, site) -> None:  # noqa: ANN001
    context, page = open_tab(browser, site, case=None)
    try:
        page.fill("#plate-q", TARGET)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("#case-note.missing")
        said = page.inner_text("#message")
        assert "case number" in said and "reason" in said and "case bar" in said and "X-Case" not in said, said
        # The server's refusal of a case number it cannot take reads as a sentence about the case bar.
        page.route(re.compile(r"/search/plates\?"), lambda route: route.fulfill(
            status=400, content_type="application/json",
            body='{"detail": "X-Case is 1–64 letters, digits, spaces or . / : # _ - ( ) [ ], with a letter or digit"}'))
        page.fill("#case-ref", CASE)
        page.fill("#case-reason", REASON)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_function("document.getElementById('message').innerText.includes('case bar')")
        said = page.inner_text("#message")
        assert "X-Case" not in said and "400" not in said and "header" not in said, said
    finally:
        context.close()


def test_the_audit_page_lists_filters_pages_and_verifies_the_log(browser, site, tmp_path: Path) -> None:  # noqa: ANN001
    url, app, _, _, _ = site
    investigator, page = open_tab(browser, site)
    try:  # a search to find in the log, and no Audit page for an investigator
        page.fill("#plate-q", TARGET)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='3']")
        assert not page.is_visible("nav a[data-view=audit]")
    finally:
        investigator.close()
    deadline = time.time() + 5  # the entry is appended once the response has gone out
    while not app.state.system.audit.entries(actor="web-reach-investigator", limit=5) and time.time() < deadline:
        time.sleep(0.05)
    context, page = open_tab(browser, site, "supervisor", view="audit", ready="body[data-ready=true][data-audit]")
    try:
        assert page.locator("#audit-rows tr").count() >= 2
        page.fill("#audit-user", "web-reach-investigator")
        page.select_option("#audit-limit", "50")
        page.click("#audit-form button[type=submit]")
        page.wait_for_function("[...document.querySelectorAll('#audit-rows tr')].length > 0 && "
                               "[...document.querySelectorAll('#audit-rows tr td:nth-child(2)')]"
                               ".every(td => td.firstChild.textContent === 'web-reach-investigator')")
        row = page.locator("#audit-rows tr", has_text="GET /search/plates").first
        cells = row.locator("td").all_inner_texts()
        assert "GMT+8" in cells[0] and cells[2] == "GET /search/plates" and cells[3] == CASE, cells  # the zone shown
        assert cells[4] == REASON and cells[5] == "200" and cells[6] == "1", cells  # one plate found
        assert "Entries 1–" in page.inner_text("#audit-count") and page.is_disabled("#audit-newer")
        href = page.get_attribute("#audit-export", "href") or ""
        assert href.startswith("/audit/export?") and "user=web-reach-investigator" in href
        exported = page.request.get(f"{url}{href}")
        assert exported.status == 200 and "web-reach-investigator" in exported.text()
        assert "web-reach-supervisor" not in exported.text()
        page.click("#audit-verify")
        page.wait_for_selector("#audit-verdict[data-ok=true]")
        assert "intact" in page.inner_text("#audit-verdict")
        page.screenshot(path=str(tmp_path / "audit-1366.png"))
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: the table scrolls sideways, the page not
        page.screenshot(path=str(tmp_path / "audit-390.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        assert page.evaluate("(p => p.scrollWidth <= p.clientWidth)(document.getElementById('panel'))")
        page.fill("#audit-user", "nobody-here")
        page.click("#audit-form button[type=submit]")
        page.wait_for_selector("body[data-audit='0']")
        assert "No entries" in page.inner_text("#audit-count")
    finally:
        context.close()


# The texts of the main pages checked in Chinese: none may keep its English text.
KEY_TEXTS = ("nav a[data-view=map]", "nav a[data-view=search]", "nav a[data-view=alerts] span", "#sign-out",
             "label[for=case-ref]", "label[for=case-reason]", "#h-traj", "#trajectory-form button", "#h-search",
             "#freetext-form legend", "#plate-search-form legend", "#plate-search-form button[type=submit]",
             "#attr-search-form legend", "label[for=attr-color]", "#attr-search-form button[type=submit]",
             "#image-search-form legend", "#face-search-form legend", "#h-analytics", "#clones-form legend",
             "#cotravel-form legend", "#area-form legend", "#area-draw", "#h-cases", "#h-alerts", "#h-audit",
             "#case-note")

# Visible texts (and placeholders, labels, titles) holding an English word: plates, camera names and dates have none.
VISIBLE_ENGLISH = """() => {
  const out = [], allowed = /^(Sightline|English)$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim(), parent = node.parentElement;
    if (!text || allowed.test(text) || !parent || !parent.checkVisibility()) continue;
    if (parent.closest("script, style, code, #who-name, .leaflet-control-attribution")) continue;  // data, code
    if (/\\b[a-z]{3,}\\b/.test(text)) out.push(text);
  }
  for (const node of document.querySelectorAll("[placeholder], [aria-label], [title]")) {
    if (!node.checkVisibility()) continue;
    for (const attr of ["placeholder", "aria-label", "title"]) {
      const text = node.getAttribute(attr);
      if (text && /\\b[a-z]{3,}\\b/.test(text) && !node.closest(".leaflet-control")) out.push(`${attr}: ${text}`);
    }
  }
  return out;
}"""


def test_the_app_in_chinese_by_the_switch_remembered_and_from_the_browser(browser, site, tmp_path: Path) -> None:  # noqa: ANN001
    context, page = open_tab(browser, site, "supervisor", view="map")
    try:
        english = {}
        for selector in KEY_TEXTS:
            english[selector] = page.locator(selector).first.text_content()
        assert page.get_attribute("html", "lang") == "en"
        page.select_option("#lang", "zh")
        page.wait_for_function("document.documentElement.lang === 'zh-CN' && document.body.dataset.ready === 'true'")
        for selector, before in english.items():
            now = page.locator(selector).first.text_content() or ""
            assert now != before and re.search(r"[\u4e00-\u9fff]", now), (selector, before, now)
        for view in ("map", "search", "analytics", "cases", "alerts", "audit"):
            page.click(f"nav a[data-view={view}]")
            page.wait_for_selector(f"#view-{view}:not([hidden])")
            if view == "audit":
                page.wait_for_selector("body[data-audit]")
                continue  # its rows are the log's own words (actions are routes)
            left = page.evaluate(VISIBLE_ENGLISH)
            assert not left, (view, left)
            page.screenshot(path=str(tmp_path / f"zh-{view}.png"))
        # What the app says is in Chinese too: a count, an empty result, a chip.
        page.click("nav a[data-view=search]")
        page.fill("#plate-q", TARGET)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='3']")
        assert page.inner_text("#search-count") == "3 条结果"
        assert "2026/11/2" in page.inner_text("#search-results li")  # dates as Chinese readers write them
        page.fill("#plate-q", "皖Z*")
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='0']")
        assert "没有与“皖Z*”" in page.inner_text("#message")
        assert not page.evaluate(VISIBLE_ENGLISH)
        # Remembered across a reload.
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.get_attribute("html", "lang") == "zh-CN" and page.inner_text("nav a[data-view=search]") == "检索"
    finally:
        context.close()
    # A browser in Chinese gets Chinese with nothing chosen.
    context, page = open_tab(browser, site, view="map", locale="zh-CN", ready="body[data-ready=true]")
    try:
        assert page.get_attribute("html", "lang") == "zh-CN" and page.input_value("#lang") == "zh"
        assert page.inner_text("#h-traj") == "轨迹"
    finally:
        context.close()


def test_a_chinese_case_number_is_sent_percent_encoded(browser, site) -> None:  # noqa: ANN001
    _, app, _, _, _ = site
    context, page = open_tab(browser, site, case=(CN_CASE, REASON))
    headers: list[dict[str, str]] = []
    page.on("request", lambda r: headers.append(r.headers) if "/search/plates" in r.url else None)
    try:
        assert not page.evaluate("caseProblem()")  # the case bar takes it
        page.fill("#plate-q", TARGET)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("body[data-results='3']")
        assert headers and headers[0]["x-case"] == quote(CN_CASE, safe="-_.!~*'()")  # encodeURIComponent
        assert headers[0]["x-reason"] == quote(REASON, safe="-_.!~*'()")
        deadline = time.time() + 5
        while not app.state.system.audit.entries(case_ref=CN_CASE, limit=5) and time.time() < deadline:
            time.sleep(0.05)
        assert app.state.system.audit.entries(case_ref=CN_CASE, limit=5)  # the server read it back whole
    finally:
        context.close()
