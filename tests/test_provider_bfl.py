"""The BFL client against the BFL sandbox: every status, every error, limits, faults, resume."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from _hosted_helpers import get_model, photo_file, request
from portrait_studio.errors import (
    AuthenticationError,
    GenerationFailed,
    InsufficientCredits,
    Moderated,
    ProviderError,
    ProviderValidationError,
    RateLimited,
    ResultExpired,
    TaskNotFound,
)
from portrait_studio.providers.bfl import REGIONS, BflOptions, BflProvider
from portrait_studio.records import Ticket
from portrait_studio.testing.sandbox import SandboxHandle, start_sandbox

FAST = {"poll_interval_s": 0.05, "poll_backoff": 1.0, "rate_limit_wait_s": 0.05, "not_found_grace_s": 0.0,
        "retry_backoff_s": 0.02}


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox("bfl", latency=0.15, ultra_megapixels=1.0) as sb:
        yield sb


@pytest.fixture
async def bfl(sandbox: SandboxHandle) -> AsyncIterator[BflProvider]:
    provider = BflProvider(sandbox.key, BflOptions(base_url=sandbox.url, **FAST), models=get_model)
    yield provider
    await provider.aclose()


async def test_a_portrait_comes_back_as_a_decodable_sandbox_image_with_cost_and_seed(bfl, sandbox):
    tickets: list[Ticket] = []

    async def keep(ticket: Ticket) -> None:
        tickets.append(ticket)

    result = await bfl.submit(request(seed=42), keep)
    img = Image.open(io.BytesIO(result.image))
    assert img.size == (768, 1024) and result.media_type == "image/jpeg"
    assert result.sandbox and result.seed == 42
    assert result.cost.credits == 4 and result.cost.usd == pytest.approx(0.04)
    assert tickets and tickets[0].task_id == result.provider_task_id
    # the polling URL is on another host name and path, and was followed verbatim
    assert tickets[0].polling_url.startswith(f"http://localhost:{sandbox.port}/poll/")
    assert result.metadata["polling_host"] == "localhost"
    assert {"submit_s", "wait_s", "download_s", "total_s"} <= set(result.timings)
    assert sandbox.stats.paid == 1 and not sandbox.stats.unknown_fields


async def test_same_seed_gives_same_pixels_and_another_seed_differs(bfl):
    a = await bfl.submit(request(seed=1))
    b = await bfl.submit(request(seed=1))
    c = await bfl.submit(request(seed=2))
    assert a.image == b.image and a.image != c.image


@pytest.mark.parametrize(("fault", "error", "stage"), [
    ("moderate_request", Moderated, "request"),
    ("moderate_content", Moderated, "content"),
    ("fail", GenerationFailed, None),
    ("lose_task", TaskNotFound, None),
])
async def test_every_terminal_status_becomes_its_own_error(bfl, sandbox, fault, error, stage):
    sandbox.inject(fault)
    with pytest.raises(error) as caught:
        await bfl.submit(request())
    if stage:
        assert caught.value.stage == stage and caught.value.reasons
    assert sandbox.stats.paid == 1


async def test_out_of_range_fields_name_the_field(bfl, sandbox):
    with pytest.raises(ProviderValidationError) as caught:
        await bfl.submit(request(width=1000, height=2000))
    assert set(caught.value.fields) == {"width", "height"}
    assert "multiple of 32" in str(caught.value) and sandbox.stats.paid == 0


async def test_a_wrong_key_is_refused_and_never_printed(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "bfl_this-key-must-never-leak"
    provider = BflProvider(secret, BflOptions(base_url=sandbox.url, **FAST), models=get_model)
    with pytest.raises(AuthenticationError) as caught:
        await provider.submit(request())
    await provider.aclose()
    assert "BFL_API_KEY" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(provider), repr(provider.options), caplog.text):
        assert secret not in text


async def test_running_out_of_credits_stops_with_insufficient_credits(bfl, sandbox):
    sandbox.credits = 5
    await bfl.submit(request(seed=1))
    with pytest.raises(InsufficientCredits):
        await bfl.submit(request(seed=2))
    assert sandbox.stats.paid == 1 and sandbox.stats.rejected[402] == 1
    assert await bfl.credits() == 1


async def test_rate_limits_are_waited_out_and_paid_once(bfl, sandbox):
    sandbox.inject("rate_limit", count=3)
    result = await bfl.submit(request())
    assert result.image and sandbox.stats.rejected[429] == 3 and sandbox.stats.paid == 1


async def test_endless_rate_limits_give_up_with_retry_after(sandbox):
    provider = BflProvider(sandbox.key, BflOptions(base_url=sandbox.url, **{**FAST, "max_rate_limit_wait_s": 0.2}),
                           models=get_model)
    sandbox.inject("rate_limit", count=100)
    with pytest.raises(RateLimited) as caught:
        await provider.submit(request())
    await provider.aclose()
    assert caught.value.retry_after > 0 and sandbox.stats.paid == 0


async def test_never_more_than_24_active_tasks_and_6_for_kontext_max(tmp_path):
    sandbox = start_sandbox("bfl", latency=0.5)
    provider = BflProvider(sandbox.key, BflOptions(base_url=sandbox.url, **FAST), models=get_model)
    ref = photo_file(tmp_path, size=(128, 128))
    pro = [provider.submit(request(seed=i, width=256, height=256)) for i in range(30)]
    results = await asyncio.gather(*pro)
    assert len({r.provider_task_id for r in results}) == 30
    assert sandbox.stats.max_active == 24 and sandbox.stats.rejected[429] == 0
    sandbox.stats.max_active = 0
    kontext = [provider.submit(request("flux-kontext-max", mode="edit", images=(ref,), seed=i, width=None,
                                       height=None)) for i in range(8)]
    await asyncio.gather(*kontext)
    await provider.aclose()
    sandbox.stop()
    assert sandbox.stats.max_active == 6 and sandbox.stats.rejected[429] == 0
    assert not sandbox.stats.paid_twice


async def test_polls_survive_server_errors_and_dropped_connections(bfl, sandbox):
    sandbox.inject("poll_error", count=2)
    sandbox.inject("drop_poll", count=2)
    result = await bfl.submit(request())
    assert result.image and sandbox.stats.paid == 1


@pytest.mark.parametrize("fault", ["drop_submit", "drop_submit_early", "server_error"])
async def test_a_submission_whose_fate_is_unknown_is_never_sent_twice(bfl, sandbox, fault):
    sandbox.inject(fault)
    with pytest.raises(ProviderError) as caught:
        await bfl.submit(request())
    assert sandbox.stats.submissions == 1, "the client re-sent a submission that may have been charged"
    assert "not sent again" in str(caught.value) or "HTTP 500" in str(caught.value)


async def test_a_refused_connection_is_retried_because_nothing_was_sent(bfl, sandbox):
    sandbox.pause()
    job = asyncio.create_task(bfl.submit(request()))
    await asyncio.sleep(0.4)
    sandbox.resume()
    result = await job
    assert result.image and sandbox.stats.paid == 1


async def test_503_before_acceptance_is_retried(bfl, sandbox):
    sandbox.inject("unavailable", count=2)
    assert (await bfl.submit(request())).image and sandbox.stats.paid == 1


async def test_an_expired_result_url_is_reported_as_expired(bfl, sandbox):
    sandbox.inject("expire")
    with pytest.raises(ResultExpired):
        await bfl.submit(request())


async def test_results_expire_after_the_configured_ttl(tmp_path):
    with start_sandbox("bfl", latency=0.05, result_ttl=0.3) as sb:
        provider = BflProvider(sb.key, BflOptions(base_url=sb.url, **FAST), models=get_model)
        tickets: list[Ticket] = []

        async def keep(ticket: Ticket) -> None:
            tickets.append(ticket)
            raise asyncio.CancelledError  # the runner was interrupted right after recording the ticket

        with pytest.raises(asyncio.CancelledError):
            await provider.submit(request(), keep)
        await asyncio.sleep(0.15)
        assert (await provider.resume(tickets[0], request())).image  # still valid
        await asyncio.sleep(0.4)
        with pytest.raises(ResultExpired):
            await provider.resume(tickets[0], request())
        await provider.aclose()
        assert sb.stats.paid == 1


async def test_resume_collects_an_accepted_task_without_paying_again(bfl, sandbox):
    tickets: list[Ticket] = []

    async def crash(ticket: Ticket) -> None:
        tickets.append(ticket)
        raise KeyboardInterrupt

    req = request(seed=5)
    with pytest.raises(KeyboardInterrupt):
        await bfl.submit(req, crash)
    result = await bfl.resume(tickets[0], req)
    assert result.provider_task_id == tickets[0].task_id and result.seed == 5
    assert sandbox.stats.paid == 1 and sandbox.stats.submissions == 1


async def test_corrupt_and_dropped_downloads_are_fetched_again(bfl, sandbox):
    sandbox.inject("corrupt_image")
    sandbox.inject("drop_download")
    first = await bfl.submit(request(seed=1))
    second = await bfl.submit(request(seed=2))
    assert first.image and second.image and sandbox.stats.downloads >= 3 and sandbox.stats.paid == 2


async def test_a_slow_download_still_arrives(bfl, sandbox):
    sandbox.inject("slow_download", delay=0.5)
    started = time.monotonic()
    assert (await bfl.submit(request())).image
    assert time.monotonic() - started >= 0.5


async def test_each_family_maps_to_documented_bfl_fields(bfl, sandbox, tmp_path: Path):
    ref = photo_file(tmp_path, size=(640, 512))
    mask = photo_file(tmp_path, "mask.png", size=(640, 512), role="mask")
    cases: list[tuple[Any, dict[str, Any]]] = [
        (request("flux-1.1-pro-ultra", aspect_ratio="3:4", raw=True, images=(ref,), strength=0.3,
                 mode="reference"), {"aspect_ratio": "3:4", "raw": True, "image_prompt_strength": 0.3}),
        (request("flux-2-pro", images=(ref, ref), mode="reference", width=1024, height=1024),
         {"width": 1024, "height": 1024}),
        (request("flux-2-flex", steps=30, guidance=4.5, safety_tolerance=6),
         {"steps": 30, "guidance": 4.5, "safety_tolerance": 5}),
        (request("flux-kontext-pro", mode="edit", images=(ref,), width=None, height=None), {}),
        (request("flux-fill-pro", mode="inpaint", images=(ref.model_copy(update={"role": "init"}),), mask=mask,
                 steps=30, guidance=30, width=None, height=None), {"steps": 30, "guidance": 30}),
        (request("flux-1-dev", steps=28, guidance=3.0), {"steps": 28, "guidance": 3.0}),
    ]
    for req, expected in cases:
        result = await bfl.submit(req)
        body = sandbox.stats.bodies[-1]
        assert expected.items() <= body.items(), (req.model, body.keys())
        assert result.image
    assert "input_image_2" in sandbox.stats.bodies[1] and "image" in sandbox.stats.bodies[4]
    assert not sandbox.stats.unknown_fields


async def test_regional_hosts_and_finetunes_pick_the_documented_host():
    assert BflProvider("k", BflOptions(region="eu")).base_url == REGIONS["eu"] == "https://api.eu.bfl.ai"
    provider = BflProvider("k", BflOptions(region="us"), models=get_model)
    assert provider.host_for("flux-pro-1.1-ultra-finetuned") == "https://api.us1.bfl.ai"
    assert provider.endpoint(request("flux-1.1-pro-ultra", finetune_id="ft-1")) == "flux-pro-1.1-ultra-finetuned"
    await provider.aclose()
