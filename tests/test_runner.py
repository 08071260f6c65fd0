"""The runner: concurrent, within budget, every image recorded before it counts, resumable.

These tests drive the runner through a small in-process provider (a subclass of the real
interface that renders a seed-coloured PNG), to pin the runner's own rules; the hosted
clients are tested against their sandboxes elsewhere.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.errors import BudgetExceeded, GenerationFailed, NetworkError
from portrait_studio.ledger import Ledger
from portrait_studio.providers.base import OnAccepted, Provider
from portrait_studio.records import Cost, Request, Result, Ticket
from portrait_studio.runner import run_plan
from portrait_studio.shoot import check_budget, plan_shoot, start_run


class CountingProvider(Provider):
    """Accepts, then returns a PNG coloured by the seed; counts paid submissions."""

    provider_id = "bfl"

    def __init__(self, fail_seeds: set[int] = frozenset(), lose_contact: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.paid: list[int] = []
        self.resumed: list[str] = []
        self.fail_seeds = fail_seeds
        self.lose_contact = set(lose_contact)
        self.active = 0
        self.peak = 0

    def _image(self, seed: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (seed % 256, 80, 120)).save(buf, "PNG")
        return buf.getvalue()

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            self.paid.append(request.seed)
            if on_accepted:
                await on_accepted(Ticket(request_id=request.request_id, provider="bfl", task_id=f"t{request.seed}"))
            await asyncio.sleep(0.01)
            if request.seed in self.fail_seeds:
                raise GenerationFailed("the provider reported Error", provider="bfl")
            if request.seed in self.lose_contact:
                self.lose_contact.discard(request.seed)
                raise NetworkError("connection dropped while polling", provider="bfl")
            return Result(request_id=request.request_id, provider="bfl", model=request.model,
                          image=self._image(request.seed), seed=request.seed, cost=Cost(credits=4, usd=0.04))
        finally:
            self.active -= 1

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        self.resumed.append(ticket.task_id)
        return Result(request_id=request.request_id, provider="bfl", model=request.model,
                      image=self._image(request.seed), seed=request.seed, cost=Cost(credits=4, usd=0.04))


def _start(tmp_path: Path, seeds: list[int], budget: float | None = None) -> tuple[Ledger, str, Path]:
    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    plan = plan_shoot(brief, ["flux-1.1-pro"], seeds)
    ledger = Ledger(tmp_path / "ledger.db")
    run_id, out = start_run(plan, ledger, tmp_path / "runs", budget_usd=budget)
    return ledger, run_id, out


def test_a_shoot_records_every_image_and_its_cost(tmp_path: Path) -> None:
    ledger, run_id, out = _start(tmp_path, [1, 2, 3])
    provider = CountingProvider()
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img", out_dir=out))
    assert [o.status for o in report.outcomes] == ["done"] * 3
    assert report.spent_usd == pytest.approx(0.12)
    assert sorted(p.name for p in out.glob("*.png")) == [
        "01-flux-1.1-pro-seed1.png", "02-flux-1.1-pro-seed2.png", "03-flux-1.1-pro-seed3.png"]
    assert {r.status for r in ledger.requests(run_id)} == {"done"}


def test_plan_over_budget_is_refused_before_anything_is_spent(tmp_path: Path) -> None:
    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    plan = plan_shoot(brief, ["flux-1.1-pro"], [1, 2, 3])
    with pytest.raises(BudgetExceeded, match="nothing was spent"):
        check_budget(plan, 0.10)


def test_runner_stops_before_the_request_that_would_exceed_the_budget(tmp_path: Path) -> None:
    ledger, run_id, out = _start(tmp_path, [1, 2, 3, 4])
    provider = CountingProvider()
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img",
                                  budget_usd=0.10, max_parallel=1))
    assert [o.status for o in report.outcomes] == ["done", "done", "skipped", "skipped"]
    assert len(provider.paid) == 2 and report.spent_usd <= 0.10


def test_one_failure_never_loses_the_others(tmp_path: Path) -> None:
    ledger, run_id, _ = _start(tmp_path, [1, 2, 3])
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": CountingProvider(fail_seeds={2})},
                                  images_dir=tmp_path / "img"))
    assert [o.status for o in report.outcomes] == ["done", "failed", "done"]
    assert "GenerationFailed" in (report.outcomes[1].error or "")
    assert [r.status for r in ledger.requests(run_id)] == ["done", "failed", "done"]


def test_resume_repolls_accepted_tasks_and_does_not_pay_twice(tmp_path: Path) -> None:
    ledger, run_id, _ = _start(tmp_path, [1, 2, 3])
    first = CountingProvider(lose_contact={2})
    asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": first}, images_dir=tmp_path / "img"))
    assert [r.status for r in ledger.requests(run_id)] == ["done", "accepted", "done"]
    second = CountingProvider()
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": second}, images_dir=tmp_path / "img"))
    assert second.paid == [] and second.resumed == ["t2"]
    assert [o.status for o in report.outcomes] == ["done"] * 3
    assert len(first.paid) + len(second.paid) == 3


def test_a_request_in_flight_at_a_crash_is_not_resent_without_consent(tmp_path: Path) -> None:
    ledger, run_id, _ = _start(tmp_path, [1])
    ledger.set_request_status(ledger.requests(run_id)[0].id, "submitting")
    provider = CountingProvider()
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img"))
    assert report.outcomes[0].status == "uncertain" and provider.paid == []
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img",
                                  resubmit_uncertain=True))
    assert report.outcomes[0].status == "done" and provider.paid == [1]
