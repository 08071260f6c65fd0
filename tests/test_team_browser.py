"""Two people of one team in two Chromium windows (Playwright, Debian's /usr/bin/chromium) at the same time:
a producer shoots while a reviewer approves and rejects, each seeing the other's work as it lands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _engine_helpers import starter
from _team_helpers import PASSWORD, make_team, team_shoot
from portrait_studio.config import Studio
from portrait_studio.ledger import Ledger
from portrait_studio.web import create_app
from portrait_studio.web.server import ServerThread

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (apt install chromium)"),
]

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def window(browser: Any, url: str, errors: list[str]) -> Any:
    """A separate browser context (its own cookies: its own person)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=url)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def sign_in(page: Any, email: str) -> None:
    page.goto("/gallery")
    page.wait_for_url("**/login?next=/gallery")
    page.fill("input[name='email']", email)
    page.fill("input[name='password']", PASSWORD)
    page.click("#login button[type='submit']")
    page.wait_for_url("**/gallery")


def test_a_producer_shoots_while_a_reviewer_approves_in_another_window(chromium: Any, tmp_path: Path) -> None:
    studio = Studio(tmp_path / "studio", environ={})  # no keys: shoots use the sandbox
    with Ledger(studio.ledger_path) as ledger:
        team = make_team(ledger, "Acme", roles=("producer", "reviewer"))
    _, earlier = team_shoot(studio, team.people["producer"], [5])
    errors: list[str] = []
    with ServerThread(create_app(studio, checker=None, start_sandbox=starter(latency=4.0))) as server:
        ana = window(chromium, server.url, errors)   # the producer
        ben = window(chromium, server.url, errors)   # the reviewer
        sign_in(ana, team.email("producer"))
        sign_in(ben, team.email("reviewer"))
        assert "producer · Acme" in ana.inner_text("#who") and "reviewer · Acme" in ben.inner_text("#who")

        # Ana starts a shoot of two images ...
        ana.goto("/")
        ana.wait_for_selector("body[data-ready='true']")
        ana.select_option("select[name='_example']", "rembrandt-studio-headshot")
        ana.wait_for_function("document.querySelector('input[name=\"subject.description\"]').value !== ''")
        for box in ana.query_selector_all("input[name='models']"):
            if box.is_checked():
                box.uncheck()
        ana.check("input[name='models'][value='flux-1.1-pro']")
        ana.fill("#shoot-seeds", "2")
        ana.click("#shoot")
        ana.wait_for_url("**/runs/run_*")
        run_id = ana.url.rstrip("/").split("/")[-1]

        # ... and while the provider works on it, Ben approves her earlier image with a comment
        ben.goto(f"/images/{earlier[0].id}")
        ben.fill("#review-form input[name='comment']", "lovely light, ship it")
        ben.click("#review-form button[value='approved']")
        ben.locator("#review-state", has_text="approved").wait_for()
        assert ana.get_attribute("body", "data-run-finished") != "true"  # her shoot is still going
        with Ledger(studio.ledger_path) as ledger:
            assert ledger.job_for_run(run_id).status in ("queued", "running")  # type: ignore[union-attr]

        # her images arrive on her page; Ben finds them among the unreviewed and rejects one
        ana.locator("#run-grid .tile").nth(1).wait_for()
        ana.wait_for_selector("body[data-run-finished='true']", timeout=60_000)
        ben.goto(f"/gallery?review=unreviewed&run={run_id}")
        tiles = ben.locator("#gallery-grid .tile")
        assert tiles.count() == 2
        new_id = tiles.first.get_attribute("data-id")
        tiles.first.click()
        ben.wait_for_url(f"**/images/{new_id}")
        ben.fill("#review-form input[name='comment']", "eyes are soft: fix them")
        ben.click("#review-form button[value='rejected']")
        ben.locator("#review-state", has_text="rejected").wait_for()

        # Ana sees the decision and the comment, and cannot decide herself
        ana.goto(f"/images/{new_id}")
        assert ana.inner_text("#review-state") == "rejected"
        assert "eyes are soft: fix them" in ana.inner_text("#review")
        assert ana.locator("#review-form").count() == 0
        refused = ana.evaluate(
            """async (id) => (await fetch(`/api/images/${id}/review`, {method: 'POST',
                 headers: {'Content-Type': 'application/json',
                           'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content},
                 body: JSON.stringify({decision: 'approved'})})).status""", new_id)
        assert refused == 403
        SHOTS.mkdir(parents=True, exist_ok=True)
        ana.screenshot(path=str(SHOTS / "team-producer-sees-review.png"))

        ben.goto("/gallery?review=approved")
        assert [t.get_attribute("data-id") for t in ben.locator("#gallery-grid .tile").all()] == [earlier[0].id]
        ben.screenshot(path=str(SHOTS / "team-reviewer-approved.png"))
        ana.context.close()
        ben.context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    with Ledger(studio.ledger_path) as ledger:
        reviews = ledger.reviews(new_id)  # type: ignore[arg-type]
        assert [(r.decision, r.reviewer) for r in reviews] == [("rejected", team.email("reviewer"))]
        assert ledger.run(run_id).created_by == team.people["producer"].user_id
