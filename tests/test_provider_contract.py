"""One contract, three providers: the same story must hold for BFL, fal and Replicate."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from _hosted_helpers import photo_file, request
from portrait_studio.errors import (
    GenerationFailed,
    Moderated,
    ProviderValidationError,
    ResultExpired,
    TaskNotFound,
    UncertainSubmission,
)
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.providers.fal import FalProvider
from portrait_studio.providers.replicate import ReplicateProvider
from portrait_studio.records import Ticket
from portrait_studio.testing.sandbox import SandboxHandle, start_sandbox

PROVIDERS = {"bfl": BflProvider, "fal": FalProvider, "replicate": ReplicateProvider}
FAST = {"poll_interval_s": 0.05, "poll_backoff": 1.0, "rate_limit_wait_s": 0.05, "retry_backoff_s": 0.02}
FAST_BY_PROVIDER: dict[str, dict[str, Any]] = {
    "bfl": {"poll_interval": 0.05, "max_poll_interval": 0.1},
    "fal": FAST,
    "replicate": FAST,
}


@pytest.fixture(params=list(PROVIDERS))
async def hosted(request: Any) -> AsyncIterator[tuple[Any, SandboxHandle]]:
    name = request.param
    with start_sandbox(name, latency=0.15, ultra_megapixels=1.0) if name == "bfl" else \
            start_sandbox(name, latency=0.15) as sb:
        provider = PROVIDERS[name].for_sandbox(sb, **FAST_BY_PROVIDER[name])
        yield provider, sb
        await provider.aclose()


def _req(provider: Any, **fields: Any) -> Any:
    return request(provider=provider.provider_id, **fields)


async def test_every_provider_returns_a_real_decodable_portrait_and_a_ticket_first(hosted):
    provider, sb = hosted
    events: list[str] = []

    async def accepted(ticket: Ticket) -> None:
        # accepted at once; charged at once only where the provider bills on acceptance (Replicate's
        # `Prefer: wait` answers once the prediction has succeeded, so it is paid by then)
        assert sb.stats.accepted == 1 and ticket.provider == provider.provider_id
        assert sb.stats.paid == (0 if provider.provider_id == "fal" else 1)
        events.append("accepted")

    result = await provider.submit(_req(provider, seed=11), accepted)
    events.append("result")
    img = Image.open(io.BytesIO(result.image))
    img.load()
    assert events == ["accepted", "result"]
    assert result.sandbox and result.seed == 11 and img.width > 0
    assert sb.stats.paid == 1 and not sb.stats.paid_twice and not sb.stats.unknown_fields


async def test_every_provider_resumes_without_paying_again(hosted):
    provider, sb = hosted
    tickets: list[Ticket] = []

    async def crash(ticket: Ticket) -> None:
        tickets.append(ticket)
        raise KeyboardInterrupt

    req = _req(provider, seed=3)
    with pytest.raises(KeyboardInterrupt):
        await provider.submit(req, crash)
    result = await provider.resume(tickets[0], req)
    assert result.provider_task_id == tickets[0].task_id and sb.stats.paid == 1 and sb.stats.submissions == 1


async def test_every_provider_reports_bad_fields_by_name(hosted):
    provider, sb = hosted
    with pytest.raises(ProviderValidationError) as caught:
        await provider.submit(_req(provider, width=20000, height=1024))
    assert any(f.endswith("width") for f in caught.value.fields) and sb.stats.paid == 0


# What each provider's documented billing charges for an accepted task that ends badly.
CHARGED = {
    "bfl": {"fail": True, "moderate_content": True, "moderate_request": True, "lose_task": True, "expire": True},
    "fal": {"fail": False, "moderate_content": True, "moderate_request": True, "lose_task": True, "expire": True},
    "replicate": {"fail": False, "moderate_content": False, "moderate_request": False, "lose_task": True,
                  "expire": True},
}
ERRORS = {"fail": GenerationFailed, "moderate_content": Moderated, "moderate_request": Moderated,
          "lose_task": TaskNotFound, "expire": ResultExpired}


@pytest.mark.parametrize("fault", list(ERRORS))
async def test_every_failure_after_acceptance_carries_its_ticket_and_what_the_provider_charged(hosted, fault):
    provider, sb = hosted
    if provider.provider_id == "replicate":  # poll instead of Prefer: wait, so a lost prediction is seen
        await provider.aclose()
        provider = ReplicateProvider.for_sandbox(sb, wait_s=None, **FAST)
    tickets: list[Ticket] = []

    async def accepted(ticket: Ticket) -> None:
        tickets.append(ticket)

    sb.inject(fault)
    with pytest.raises(ERRORS[fault]) as caught:
        await provider.submit(_req(provider), accepted)
    charged = CHARGED[provider.provider_id][fault]
    assert caught.value.ticket == tickets[0] and caught.value.charged is charged
    assert sb.stats.accepted == 1 and sb.stats.paid == int(charged)  # the sandbox bills by the same rule
    if provider.provider_id == "bfl":
        assert tickets[0].cost is not None and tickets[0].cost.credits == sb.stats.credits_spent
    if provider.provider_id == "replicate":
        await provider.aclose()


async def test_errors_before_acceptance_carry_no_ticket(hosted):
    provider, sb = hosted
    with pytest.raises(ProviderValidationError) as caught:
        await provider.submit(_req(provider, width=20000, height=1024))
    assert caught.value.ticket is None and caught.value.charged is None and sb.stats.accepted == 0


async def test_every_provider_survives_flaky_polls_and_bad_downloads(hosted):
    provider, sb = hosted
    sb.inject("poll_error")
    sb.inject("drop_poll")
    sb.inject("corrupt_image")
    result = await provider.submit(_req(provider))
    assert result.image and sb.stats.paid == 1


async def test_every_provider_refuses_to_resend_a_dropped_submission(hosted):
    provider, sb = hosted
    sb.inject("drop_submit")
    with pytest.raises(UncertainSubmission) as caught:
        await provider.submit(_req(provider))
    assert caught.value.ticket is None  # nobody knows the task id: the engine keeps it 'uncertain'
    assert sb.stats.submissions == 1 and sb.stats.accepted == 1


async def test_every_provider_waits_out_rate_limits(hosted):
    provider, sb = hosted
    sb.inject("rate_limit", count=2)
    assert (await provider.submit(_req(provider))).image and sb.stats.paid == 1


@pytest.mark.parametrize("model", ["flux-1.1-pro-ultra", "flux-2-pro", "flux-kontext-pro", "flux-1-dev"])
async def test_every_provider_accepts_its_own_mapping_of_each_family(hosted, model, tmp_path):
    provider, sb = hosted
    ref = photo_file(tmp_path, size=(256, 320))
    fields: dict[str, Any] = {"model": model}
    if model == "flux-kontext-pro":
        fields.update(mode="edit", images=(ref,), width=None, height=None)
    if model == "flux-2-pro":
        fields.update(mode="reference", images=(ref, ref), width=512, height=640)
    if model == "flux-1.1-pro-ultra":
        fields.update(aspect_ratio="3:4", raw=True)
    if model == "flux-1-dev":
        fields.update(steps=20, guidance=3.5, width=512, height=512)
    result = await provider.submit(_req(provider, **fields))
    assert result.image and sb.stats.paid == 1 and not sb.stats.unknown_fields


def test_the_hosted_clients_do_not_import_the_testing_package() -> None:
    import subprocess
    import sys

    code = ("import sys, portrait_studio.providers.bfl, portrait_studio.providers.fal, "
            "portrait_studio.providers.replicate; "
            "print(sorted(m for m in sys.modules if m.startswith('portrait_studio.testing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_a_client_pointed_at_a_sandbox_by_hand_still_marks_its_images_sandbox(name: str) -> None:
    with start_sandbox(name, latency=0.05) as sb:
        cls = PROVIDERS[name]
        options: dict[str, Any] = {"base_url": sb.url, **({"verify": sb.ca_file} if sb.ca_file else {})}
        provider = cls(sb.key, cls.Options(**options))  # not for_sandbox: as if config.toml pointed there
        try:
            result = await provider.submit(_req(provider))
        finally:
            await provider.aclose()
    assert not provider.sandbox and result.sandbox


async def test_an_unreadable_answer_after_acceptance_is_a_provider_error_with_the_ticket() -> None:
    import httpx

    from portrait_studio.errors import ProviderError
    from portrait_studio.providers.bfl import BflOptions

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "t1", "polling_url": "https://poll.example/v1/get_result?id=t1",
                                             "cost": 4})
        return httpx.Response(200, text="<html>gateway page</html>")  # not the documented JSON

    provider = BflProvider("key", BflOptions(base_url="https://api.example", poll_interval=0.01),
                           transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.submit(request(provider="bfl"))
    finally:
        await provider.aclose()
    assert caught.value.ticket.task_id == "t1" and caught.value.charged is True
    assert caught.value.ticket.cost.credits == 4
