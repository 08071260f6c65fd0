"""The BFL client against the BFL sandbox: real HTTP on loopback, BFL's documented contract."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.errors import (
    AuthenticationError,
    GenerationFailed,
    InsufficientCredits,
    Moderated,
    ProviderError,
    ProviderValidationError,
    ResultExpired,
    TaskNotFound,
    UncertainSubmission,
)
from portrait_studio.prompting import compile_brief
from portrait_studio.providers.bfl import BflOptions, BflProvider, request_body
from portrait_studio.records import Request, Ticket
from portrait_studio.testing.sandbox import start_sandbox

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
FAST = {"poll_interval": 0.05, "max_poll_interval": 0.2}


@pytest.fixture
def sandbox():
    with start_sandbox("bfl", latency=0.15) as sb:
        yield sb


def provider_for(sb, **opts) -> BflProvider:  # type: ignore[no-untyped-def]
    return BflProvider.for_sandbox(sb, **{**FAST, **opts})


def request(model: str = "flux-1.1-pro", seed: int = 1, **changes: object) -> Request:
    return compile_brief(BRIEF, model, seed=seed).model_copy(update=changes)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _submit(p: BflProvider, req: Request, tickets: list[Ticket] | None = None):  # type: ignore[no-untyped-def]
    async def accepted(t: Ticket) -> None:
        if tickets is not None:
            tickets.append(t)

    try:
        return await p.submit(req, on_accepted=accepted)
    finally:
        await p.aclose()


def test_a_portrait_comes_back_decoded_with_id_cost_seed_and_timings(sandbox) -> None:
    tickets: list[Ticket] = []
    result = run(_submit(provider_for(sandbox), request(seed=42), tickets))
    with Image.open(__import__("io").BytesIO(result.image)) as im:
        assert im.size == (768, 1024)
    assert result.seed == 42 and result.cost.credits == 4 and result.cost.usd == pytest.approx(0.04)
    assert result.provider_task_id == tickets[0].task_id and result.sandbox
    assert {"submit_s", "poll_s", "download_s", "total_s"} <= result.timings.keys()
    # the polling URL was followed verbatim, on another host name than the submit host
    assert result.metadata["polling_host"] != "127.0.0.1"
    assert sandbox.stats.paid == 1


def test_same_seed_gives_the_same_pixels(sandbox) -> None:
    a = run(_submit(provider_for(sandbox), request(seed=7)))
    b = run(_submit(provider_for(sandbox), request(seed=7)))
    c = run(_submit(provider_for(sandbox), request(seed=8)))
    assert a.sha256 == b.sha256 != c.sha256


@pytest.mark.parametrize("model", ["flux-1.1-pro-ultra", "flux-2-pro", "flux-2-flex", "flux-kontext-pro", "flux-1-dev"])
def test_every_catalog_family_is_accepted_by_the_documented_schema(sandbox, model: str) -> None:
    result = run(_submit(provider_for(sandbox), request(model)))
    assert result.image and not sandbox.stats.unknown_fields


def test_ultra_sends_aspect_ratio_raw_and_image_prompt_strength(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "ref.png")
    refs = [{"path": str(tmp_path / "ref.png"), "weight": 0.3, "rights": {"who": "a", "source": "b", "permission": "c"}}]
    brief = BRIEF.model_copy(update={"references": load_brief(example_brief_path("rembrandt-studio-headshot")).references})
    from portrait_studio.brief import parse_brief

    data = brief.model_dump(mode="python")
    data["references"], data["output"]["raw"] = refs, True
    endpoint, body = request_body(compile_brief(parse_brief(data), "flux-1.1-pro-ultra", seed=3))
    assert endpoint == "flux-pro-1.1-ultra"
    assert body["aspect_ratio"] == "3:4" and body["raw"] is True and body["image_prompt_strength"] == 0.3
    assert "width" not in body and "negative_prompt" not in body


def test_validation_error_names_the_field(sandbox) -> None:
    with pytest.raises(ProviderValidationError) as err:
        run(_submit(provider_for(sandbox), request(width=1000)))
    assert "width" in err.value.fields and sandbox.stats.paid == 0


def test_wrong_key_says_which_env_var_fixes_it(sandbox) -> None:
    p = BflProvider("bfl_wrong", BflOptions(base_url=sandbox.url, **FAST))
    with pytest.raises(AuthenticationError, match="BFL_API_KEY"):
        run(_submit(p, request()))
    assert "bfl_wrong" not in repr(p)


def test_out_of_credits_is_insufficient_credits(sandbox) -> None:
    sandbox.credits = 1
    with pytest.raises(InsufficientCredits):
        run(_submit(provider_for(sandbox), request()))


@pytest.mark.parametrize(("fault", "error", "stage"), [
    ("fail", GenerationFailed, None),
    ("moderate_request", Moderated, "request"),
    ("moderate_content", Moderated, "content"),
    ("lose_task", TaskNotFound, None),
    ("expire", ResultExpired, None),
])
def test_every_terminal_status_becomes_its_error(sandbox, fault: str, error: type, stage: str | None) -> None:
    sandbox.inject(fault)
    with pytest.raises(error) as err:
        run(_submit(provider_for(sandbox), request()))
    if stage:
        assert err.value.stage == stage  # type: ignore[attr-defined]
    assert sandbox.stats.paid == 1


@pytest.mark.parametrize("fault", ["rate_limit", "unavailable", "poll_error", "drop_poll",
                                   "corrupt_image", "drop_download", "slow_download"])
def test_transient_faults_are_survived_without_paying_twice(sandbox, fault: str) -> None:
    sandbox.inject(fault, count=2 if fault != "slow_download" else 1, delay=0.3)
    result = run(_submit(provider_for(sandbox), request()))
    with Image.open(__import__("io").BytesIO(result.image)) as im:
        im.load()
    assert sandbox.stats.paid == 1 and not sandbox.stats.paid_twice


def test_a_500_on_submit_is_not_retried_blindly(sandbox) -> None:
    sandbox.inject("server_error")
    with pytest.raises(ProviderError, match="500"):
        run(_submit(provider_for(sandbox), request()))
    assert sandbox.stats.submissions == 1


@pytest.mark.parametrize(("fault", "paid"), [("drop_submit", 1), ("drop_submit_early", 0)])
def test_a_connection_dropped_after_sending_is_never_resent_automatically(sandbox, fault: str, paid: int) -> None:
    """From the client's side the two look the same: it cannot know, so it does not guess."""
    sandbox.inject(fault)
    with pytest.raises(UncertainSubmission, match="not re-sent"):
        run(_submit(provider_for(sandbox), request()))
    assert sandbox.stats.paid == paid and sandbox.stats.submissions == 1


def test_connection_refused_is_known_unsent_and_retried(sandbox) -> None:
    sandbox.pause()

    async def go():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(_submit(provider_for(sandbox), request()))
        await asyncio.sleep(0.3)
        sandbox.resume()
        return await task

    assert run(go()).image and sandbox.stats.paid == 1


def test_resume_finishes_an_accepted_task_without_a_new_submission(sandbox) -> None:
    p = provider_for(sandbox)
    req = request(seed=5)
    tickets: list[Ticket] = []

    async def accept_then_die() -> None:
        async def accepted(t: Ticket) -> None:
            tickets.append(t)
            raise KeyboardInterrupt  # the process is interrupted right after acceptance

        try:
            await p.submit(req, on_accepted=accepted)
        finally:
            await p.aclose()

    with pytest.raises(KeyboardInterrupt):
        run(accept_then_die())
    result = run(provider_for(sandbox).resume(tickets[0], req))
    assert result.provider_task_id == tickets[0].task_id
    assert sandbox.stats.submissions == 1 and sandbox.stats.paid == 1


def test_never_more_than_the_active_task_limit_at_once() -> None:
    with start_sandbox("bfl", latency=0.4, max_active=4) as sb:
        p = BflProvider(sb.key, BflOptions(base_url=sb.url, **FAST))
        p.max_concurrency = lambda model: 4  # type: ignore[method-assign]

        async def many() -> None:
            try:
                await asyncio.gather(*(p.submit(request(seed=s)) for s in range(10)))
            finally:
                await p.aclose()

        run(many())
        assert sb.stats.max_active <= 4 and sb.stats.paid == 10 and sb.stats.rejected[429] == 0


def test_kill_9_half_way_then_resume_pays_exactly_once_per_image(tmp_path: Path) -> None:
    """The issue's acceptance test: a real `portrait shoot` process killed with SIGKILL."""
    home = tmp_path / "home"
    home.mkdir()
    with start_sandbox("bfl", latency=1.5) as sb:
        (home / "config.toml").write_text(f'bfl_host = "{sb.url}"\n[providers.bfl]\npoll_interval = 0.1\n')
        env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(home), "BFL_API_KEY": sb.key}
        brief = example_brief_path("rembrandt-studio-headshot")
        cmd = [sys.executable, "-m", "portrait_studio", "shoot", str(brief), "-m", "flux-1.1-pro", "--seeds", "6",
               "--sandbox", "never", "--json"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:  # kill once every task is accepted (recorded) and none is done
            time.sleep(0.05)
            if (home / "ledger.db").exists():
                try:
                    states = [r[0] for r in sqlite3.connect(home / "ledger.db").execute("SELECT status FROM requests")]
                except sqlite3.OperationalError:
                    continue
                if len(states) == 6 and set(states) == {"accepted"}:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        db = sqlite3.connect(home / "ledger.db")
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        before = [r[0] for r in db.execute("SELECT status FROM requests")]
        assert "done" not in before and before.count("accepted") >= 1  # killed half-way through
        resumed = subprocess.run([sys.executable, "-m", "portrait_studio", "resume", run_id, "--sandbox", "never",
                                  "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert len(report["images"]) == 6 and not report["failed"]
        assert sb.stats.paid == 6 and not sb.stats.paid_twice
        assert [r[0] for r in db.execute("SELECT status FROM requests")] == ["done"] * 6
