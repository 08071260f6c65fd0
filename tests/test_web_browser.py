"""The web studio in a real browser: Debian's Chromium driven by Playwright.

Build a brief, shoot through the BFL sandbox and watch the images arrive, compare models
side by side, pick an image, run a fix. Screenshots go to test-artifacts/screenshots/; with
PORTRAIT_UPDATE_DOCS=1 the brief builder, gallery and compare view are also written, small,
to docs/images/ for the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from _engine_helpers import starter
from portrait_studio.config import Studio
from portrait_studio.web import create_app
from portrait_studio.web.server import ServerThread

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (apt install chromium)"),
]

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "images"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    studio = Studio(tmp_path_factory.mktemp("studio"), environ={})  # no keys: every shoot uses the sandbox
    with ServerThread(create_app(studio, start_sandbox=starter(latency=0.05))) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: ServerThread):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def shot(page, name: str, docs: bool = False) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs and os.environ.get("PORTRAIT_UPDATE_DOCS"):
        from PIL import Image

        DOCS.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            small = im.convert("RGB").resize((im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.LANCZOS)
            small.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(DOCS / f"{name}.png", optimize=True)
    assert path.stat().st_size > 10_000


def open_builder(page, example: str = "rembrandt-studio-headshot") -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.wait_for_selector("body[data-ready='true']")
    page.select_option("select[name='_example']", example)
    page.wait_for_function("document.querySelector('input[name=\"subject.description\"]').value !== ''")


def tick_models(page, models: list[str]) -> None:  # type: ignore[no-untyped-def]
    for box in page.query_selector_all("input[name='models']"):
        if box.is_checked():
            box.uncheck()
    for model in models:
        page.check(f"input[name='models'][value='{model}']")


def test_build_a_brief_and_watch_the_prompt_and_cost_follow(page) -> None:  # type: ignore[no-untyped-def]
    open_builder(page)
    prompt = page.locator(".model-preview[data-model='flux-1.1-pro'] pre.prompt")
    prompt.wait_for()
    assert "Rembrandt" in prompt.inner_text()

    page.fill("input[name='subject.description']", "a silver-haired architect in her sixties")
    page.wait_for_function("document.querySelector('.model-preview pre')?.textContent.includes('silver-haired')")
    page.check("input[name='hands.visible']")
    page.fill("input[name='hands.pose']", "hand resting on chin")
    page.locator(".warnings li", has_text="hands visible").first.wait_for()

    four = ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra", "flux-2-max"]
    tick_models(page, four)
    fifth = page.locator("input[name='models'][value='flux-2-flex']")
    assert fifth.is_disabled()  # the fifth model is refused in the page too
    page.locator("#models-note", has_text="4 models chosen").wait_for()
    page.wait_for_function("document.querySelectorAll('.model-preview').length === 4")
    assert page.inner_text("#estimate").startswith("Estimated $")

    page.fill("input[name='subject.age']", "16")
    page.locator("#brief-error", has_text="18 or older").wait_for()
    page.fill("input[name='subject.age']", "64")
    page.wait_for_function("document.querySelector('#brief-error').textContent === ''")
    page.locator(".model-preview").first.scroll_into_view_if_needed()
    shot(page, "brief-builder", docs=True)

    page.fill("#save-name", "architect")
    page.click("#save-brief")
    page.locator("#save-result", has_text="architect.yaml").wait_for()


def test_shoot_in_the_sandbox_see_images_arrive_pick_one_and_fix_it(page) -> None:  # type: ignore[no-untyped-def]
    open_builder(page)
    tick_models(page, ["flux-1.1-pro"])
    page.fill("#shoot-seeds", "3")
    page.click("#shoot")
    page.wait_for_url("**/runs/run_*")
    page.locator("#run-grid .tile").nth(2).wait_for()  # the images arrive on the open page
    page.wait_for_selector("body[data-run-finished='true']", timeout=40_000)
    assert "3 of 3 done" in page.inner_text("#run-status")
    page.locator("#run-grid .tile .badge.check-unchecked").first.wait_for(state="detached")  # checklist badges in
    shot(page, "run-live")

    page.goto("/gallery")
    tiles = page.locator("#gallery-grid .tile")
    assert tiles.count() == 3
    assert page.locator(".tile .badge.sandbox").count() == 3
    page.keyboard.press("j")
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.dataset.id")
    assert focused == tiles.nth(1).get_attribute("data-id")
    shot(page, "gallery", docs=True)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/images/{focused}")

    page.click("#pick")
    page.locator("#pick", has_text="Picked").wait_for()
    page.check("#show-overlay")
    assert page.locator("#overlay .box").count() > 0
    page.select_option("#fix select[name='region']", "eyes")
    page.click("#fix button")
    status = page.locator("#job-status")
    page.wait_for_function("['done', 'failed'].includes(document.querySelector('#job-status').dataset.status)")
    text = status.inner_text()
    assert "fix eyes" in text
    assert "done" in text, text
    page.click("#job-status a")
    page.locator("text=fix").first.wait_for()
    shot(page, "detail")

    page.goto("/gallery?picked=true")
    assert page.locator("#gallery-grid .tile").count() == 1


def test_compare_models_side_by_side_with_the_price_table(page) -> None:  # type: ignore[no-untyped-def]
    open_builder(page, "clamshell-beauty")
    models = ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra"]
    tick_models(page, models)
    page.fill("#shoot-seed", "1234")
    page.click("#compare")
    page.wait_for_url("**/runs/run_*")
    page.wait_for_selector("body[data-run-finished='true']", timeout=40_000)
    page.click("#compare-link")
    page.wait_for_url("**/compare")
    cells = page.locator(".compare-row .cell img")
    assert cells.count() == 3
    page.wait_for_function("Array.from(document.querySelectorAll('.cell img')).every(i => i.complete && i.naturalWidth > 0)")
    def scales() -> list[float]:  # shown size over pixel size: the same for every model's image
        return page.evaluate("Array.from(document.querySelectorAll('.cell img'))"
                             ".map(i => i.getBoundingClientRect().width / i.naturalWidth)")

    fitted = scales()
    assert max(fitted) - min(fitted) < 0.005
    page.fill("#zoom", "0.2")
    page.dispatch_event("#zoom", "input")
    assert all(abs(s - 0.2) < 0.005 for s in scales())
    page.fill("#zoom", f"{fitted[0]:.2f}")
    page.dispatch_event("#zoom", "input")
    rows = page.locator("#features tbody tr")
    assert rows.count() == 3
    assert "$" in page.inner_text("#features")
    shot(page, "compare", docs=True)


def test_a_missing_image_shows_a_friendly_error_page(page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto("/images/img_missing")
    assert response.status == 404
    assert "Fix:" in page.inner_text("main")



def test_the_seed_count_starts_at_the_policy_default(page) -> None:  # type: ignore[no-untyped-def]
    from portrait_studio.seeds import EXPLORE_DEFAULT as default

    open_builder(page)
    tick_models(page, ["flux-1.1-pro"])
    assert page.input_value("#shoot-seeds") == str(default) == "3"  # like `portrait shoot` without --seeds
    page.locator("#estimate", has_text=f"for {default} images").wait_for()
    page.fill("#shoot-seeds", "")  # an empty field means the default, not 1 image
    page.dispatch_event("#shoot-seeds", "input")
    page.locator("#estimate", has_text=f"for {default} images").wait_for()


def test_model_names_with_brackets_are_shown_verbatim(page) -> None:  # type: ignore[no-untyped-def]
    open_builder(page)
    tick_models(page, ["flux-1.1-pro", "flux-2-max"])
    assert "FLUX1.1 [pro]" in page.inner_text(".models")
    page.locator(".model-preview[data-model='flux-2-max'] h3", has_text="FLUX.2 [max]").wait_for()
    assert "FLUX1.1 [pro]" in page.inner_text(".model-preview[data-model='flux-1.1-pro'] h3")


def test_a_long_prompt_wraps_on_the_detail_page_instead_of_overflowing(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from _web_helpers import BRIEF, shoot_into_ledger

    studio = Studio(tmp_path / "studio", environ={})
    long = BRIEF.model_copy(update={"subject": BRIEF.subject.model_copy(update={
        "description": "a woman wearing a " + "very-" * 60 + "long-hyphenated-jacket, photographed " + "x" * 300})})
    _, (made,) = shoot_into_ledger(studio, ["flux-1.1-pro"], [7], brief=long)
    with ServerThread(create_app(studio, checker=None)) as server:
        for width in (1360, 900, 420):
            context = browser.new_context(viewport={"width": width, "height": 900}, base_url=server.url)
            tab = context.new_page()
            tab.goto(f"/images/{made.id}")
            assert "x" * 300 in tab.inner_text("dd.prompt").replace("\n", "")
            sideways = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth,"
                                    " document.querySelector('dd.prompt').scrollWidth, document.querySelector('dd.prompt').clientWidth]")
            wide = tab.evaluate("Array.from(document.querySelectorAll('.facts *')).filter(e => e.scrollWidth > e.clientWidth + 1)"
                                ".map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth)")
            context.close()
            assert sideways[0] <= sideways[1] and sideways[2] <= sideways[3], (width, sideways, wide)
