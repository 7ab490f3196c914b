"""Cases in a real browser (Debian's Chromium, Playwright) against the app served on localhost: sign in, open a
case, find a plate, add the sighting to the case, note it, export the evidence package and check the ZIP.

The frames are real eval photos; what the models see in them is scripted (tests/fakes.py), because recognition
is not under test here — the case workflow is. Screenshots go to artifacts/screenshots/."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.api.localserver import serving
from services.evidence import CJK_FONTS
from services.ingest import PhotoJob
from tests.conftest import CHROMIUM, fake_site
from tests.fakes import vehicle

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
PLATE, CASE, TITLE, REASON = "皖AY766D", "2026/0412", "stolen white car", "theft enquiry 盗窃"


@pytest.fixture(scope="module")
def site(tmp_path_factory, eval_dir: Path):  # noqa: ANN001, ANN201
    """Cameras on real intersections; one car (scripted plate) seen at three of them in real eval photos."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    if not any(p.is_file() for p in CJK_FONTS):
        pytest.skip("no CJK font for the evidence report (scripts/test.sh installs fonts-wqy-zenhei)")
    tmp = tmp_path_factory.mktemp("web-cases")
    app, pipeline, cams = fake_site(tmp, eval_dir)
    system = app.state.system
    photos = sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:3]
    jobs = []
    for i, photo in enumerate(photos):
        data = photo.read_bytes()
        pipeline.script(data, [vehicle(plate=PLATE, plate_score=0.96, vehicle_color="white")])
        jobs.append(PhotoJob(photo.name, data, cams[3 * i].id, START + timedelta(minutes=10 * i)))
    system.ingestor.ingest(jobs)
    _, token = system.accounts.add("web-investigator", "investigator")
    with serving(app) as url:
        yield url, app, token, {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}


def sign_in(page, url: str, token: str, view: str) -> None:  # noqa: ANN001
    page.goto(f"{url}/app/#{view}")
    page.wait_for_selector("#login-form", state="visible", timeout=30_000)
    page.fill("#login-token", token)
    page.click("#login-submit")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


def fits(page) -> bool:  # noqa: ANN001
    """No horizontal overflow of the page."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def in_view(page, selector: str) -> bool:  # noqa: ANN001
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and size is not None and 0 <= box["y"] and box["y"] + box["height"] <= size["height"]


def shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_open_a_case_find_a_plate_add_it_and_export_the_evidence_package(browser, site) -> None:  # noqa: ANN001
    from pypdf import PdfReader

    url, app, token, frame_hashes = site
    # an investigator in Shanghai: the case takes the browser's zone, and the report prints its times there
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True,
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        sign_in(page, url, token, "search")
        # A case typed by hand (not registered) still runs searches; adding to it says why it cannot, beside the button.
        page.fill("#case-ref", "CLI-7")
        page.fill("#case-reason", "typed by hand")
        page.fill("#plate-q", PLATE)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("#search-results li .add-to-case")
        page.locator("#search-results li .add-to-case").first.click()
        error = page.locator("#search-results li .inline-error").first
        error.wait_for(state="visible")
        assert "Open a registered case" in error.inner_text()
        assert in_view(page, "#search-results li .inline-error")

        # Open a case: it becomes the case of every search.
        page.click("nav a[data-view=cases]")
        page.fill("#case-new-ref", CASE)
        page.fill("#case-new-title", TITLE)
        page.fill("#case-new-reason", REASON)
        page.click("#case-new-form button[type=submit]")
        page.wait_for_selector(f'body[data-open-case="{CASE}"]')
        page.wait_for_selector("#case-page:not([hidden]) #case-title")
        assert page.input_value("#case-ref") == CASE and page.input_value("#case-reason") == REASON
        page.click("#case-back")  # the same number again is refused, said under the form
        page.fill("#case-new-ref", CASE)
        page.fill("#case-new-title", "again")
        page.fill("#case-new-reason", "again")
        page.click("#case-new-form button[type=submit]")
        page.wait_for_selector("#case-new-error:not([hidden])")
        assert "exists" in page.inner_text("#case-new-error") and in_view(page, "#case-new-error")
        assert page.locator(f'#case-list li[data-case="{CASE}"]').count() == 1

        # Find the plate and add its sighting (with the query that found it) and the search itself.
        page.click("nav a[data-view=search]")
        page.fill("#plate-q", PLATE)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("#search-results li .add-to-case:not(.done)")
        page.locator("#search-results li .add-to-case").first.click()
        page.wait_for_selector(f"#search-results li .add-to-case.done:has-text('{CASE}')")
        page.click("#search-save-button")
        page.wait_for_selector("#search-save-button.done")
        page.locator("#search-results li button:has-text('Trajectory')").first.click()  # and its route
        page.wait_for_selector("body[data-trajectory='3']")
        page.click("#traj-add")
        page.wait_for_selector("#traj-add.done")

        # The case page: the finding with its crop and query; a note.
        page.click("#case-open")
        page.wait_for_selector("body[data-case-items='3']")
        finding = page.locator("#case-items li[data-item=sighting]")
        assert PLATE in finding.inner_text() and f'plate search "{PLATE}"' in finding.inner_text()
        assert finding.locator("img").count() == 1
        assert PLATE in page.inner_text("#case-items li[data-item=trajectory]")
        page.fill("#case-note-text", "车主 07:40 报案")
        page.click("#case-note-form button[type=submit]")
        page.wait_for_selector("#case-notes li:has-text('车主 07:40 报案')")
        assert fits(page)
        shot(page, "case-1366")

        with page.expect_download() as downloaded:
            page.click("#case-export")
        package = Path(downloaded.value.path()).read_bytes()
        assert downloaded.value.suggested_filename == "case-2026-0412-evidence.zip"

        page.set_viewport_size({"width": 390, "height": 844})
        assert fits(page)
        shot(page, "case-390")
        page.click("#case-back")
        page.wait_for_selector(f'#case-list li[data-case="{CASE}"]')
        assert fits(page)
        shot(page, "cases-390")
        page.click("nav a[data-view=search]")
        page.fill("#plate-q", PLATE)
        page.click("#plate-search-form button[type=submit]")
        page.wait_for_selector("#search-results li .add-to-case")
        assert fits(page)
        shot(page, "search-add-to-case-390")
    finally:
        context.close()

    archive = zipfile.ZipFile(io.BytesIO(package))
    pdf = archive.read("report.pdf")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert CASE in text and PLATE in text and TITLE in text and "车主 07:40 报案" in text
    manifest = json.loads(archive.read("manifest.json"))
    hashes = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert hashes["report.pdf"] == hashlib.sha256(pdf).hexdigest()
    system = app.state.system
    sighting_item = next(i for i in system.cases.file(system.cases.by_ref(CASE).id).items
                         if i.kind.value == "sighting")
    sighting = system.store.get_sighting(sighting_item.sighting_ids[0])
    shanghai = ZoneInfo("Asia/Shanghai")
    assert system.cases.by_ref(CASE).zone == "Asia/Shanghai" and "Asia/Shanghai" in text
    flat = " ".join(text.split())  # a time may be wrapped at one of its spaces
    assert sighting.ts.astimezone(shanghai).strftime("%Y-%m-%d %H:%M:%S UTC+08:00") in flat  # its capture time there
    assert hashes[f"crops/{sighting.id}.jpg"] == hashlib.sha256(system.blobs.get(sighting.crop)).hexdigest()
    assert {f["sha256"] for f in manifest["original_frames"]["frames"]} <= frame_hashes
    assert sighting.frame_sha256 in {f["sha256"] for f in manifest["original_frames"]["frames"]}
    exports = system.audit.entries(case_ref=CASE, action="POST /cases/{case_id}/exports")  # built in the background
    assert len(exports) == 1 and exports[0].actor == "web-investigator" and exports[0].params["lang"] == "en"
    (downloaded_file,) = system.audit.entries(case_ref=CASE, action="GET /cases/{case_id}/exports/{export_id}/file")
    assert downloaded_file.actor == "web-investigator"


def test_in_chinese_the_app_exports_the_report_in_chinese(browser, site) -> None:  # noqa: ANN001
    from pypdf import PdfReader

    from indexer.store import SightingQuery
    from models.accounts import Role, User
    from services.cases import NewItem

    url, app, token, _ = site
    system = app.state.system
    owner = User("-", "web-investigator", Role.INVESTIGATOR)
    case = system.cases.create("ZH-1", "白色轿车被盗", "盗窃案", owner.name, zone="Asia/Shanghai")
    first = system.store.query(SightingQuery(limit=1))[0]
    system.cases.add_item(case.id, NewItem("sighting", sighting_ids=[first.id]), owner)
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        sign_in(page, url, token, "cases")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.click('#case-list li[data-case="ZH-1"] button')
        page.wait_for_selector("body[data-case-items='1']")
        with page.expect_download() as downloaded:
            page.click("#case-export")
        package = Path(downloaded.value.path()).read_bytes()
    finally:
        context.close()
    archive = zipfile.ZipFile(io.BytesIO(package))
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(archive.read("report.pdf"))).pages).split())
    assert "证据包 — 案件 ZH-1" in text and "事由：盗窃案" in text and "Evidence package" not in text
    assert first.ts.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S UTC+08:00") in text
    assert json.loads(archive.read("manifest.json"))["report_language"] == "zh"
