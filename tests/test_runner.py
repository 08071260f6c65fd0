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
from portrait_studio.engine import Engine
from portrait_studio.errors import BudgetExceeded, GenerationFailed, NetworkError
from portrait_studio.ledger import Ledger
from portrait_studio.providers.base import OnAccepted, Provider
from portrait_studio.records import Cost, Request, Result, Ticket
from portrait_studio.runner import run_plan
from portrait_studio.shoot import check_budget, plan_shoot


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


def _engine(tmp_path: Path, provider: Provider | None = None) -> Engine:
    ledger = Ledger(tmp_path / "ledger.db")
    return Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs",
                  providers={"bfl": provider or CountingProvider()}, secrets=("bfl_secretkey123456789abcdef",))


def _start(tmp_path: Path, seeds: list[int], budget: float | None = None) -> tuple[Ledger, str, Path]:
    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    plan = plan_shoot(brief, ["flux-1.1-pro"], seeds)
    engine = _engine(tmp_path)
    run_id = engine.record(plan.to_plan(), budget_usd=budget)
    return engine.ledger, run_id, Path(engine.ledger.run(run_id).out_dir or "")


def test_a_shoot_records_every_image_and_its_cost(tmp_path: Path) -> None:
    ledger, run_id, out = _start(tmp_path, [1, 2, 3])
    provider = CountingProvider()
    engine = Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs", providers={"bfl": provider})
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img",
                                  out_dir=out, deliver=engine.deliver))
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


class ModeratingProvider(CountingProvider):
    """Accepts (BFL charges at acceptance), then ends the task moderated — or fails before accepting."""

    def __init__(self, moderate: set[int] = frozenset(), reject: set[int] = frozenset(),  # type: ignore[assignment]
                 echo_key: str | None = None) -> None:
        super().__init__()
        self.moderate, self.reject, self.echo_key = set(moderate), set(reject), echo_key

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        from portrait_studio.errors import Moderated, ProviderValidationError

        if request.seed in self.reject:
            raise ProviderValidationError(f"422: bad field (key {self.echo_key})", provider="bfl")
        if request.seed in self.moderate:
            self.paid.append(request.seed)
            ticket = Ticket(request_id=request.request_id, provider="bfl", task_id=f"t{request.seed}",
                            cost=Cost(credits=4, usd=0.04))
            if on_accepted:
                await on_accepted(ticket)
            raise Moderated("Content Moderated", provider="bfl")
        return await super().submit(request, on_accepted)


def test_a_moderated_task_the_provider_charged_counts_and_is_not_sent_again(tmp_path: Path) -> None:
    """BFL charges at acceptance: a task that then ends moderated costs money, so the ledger says so, the
    budget counts it, and resume does not pay for it again unless asked."""
    ledger, run_id, _ = _start(tmp_path, [1, 2, 3], budget=0.12)
    provider = ModeratingProvider(moderate={1, 2, 3})
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img",
                                  budget_usd=0.12))
    assert [o.status for o in report.outcomes] == ["failed"] * 3
    assert ledger.spent(run_id).usd == pytest.approx(0.12) and len(provider.paid) == 3
    for _ in range(3):  # three resumes: nothing is re-sent
        again = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": provider}, images_dir=tmp_path / "img",
                                     budget_usd=0.12))
        assert "--retry-failed" in (again.outcomes[0].hint or "")
    assert len(provider.paid) == 3 and ledger.spent(run_id).usd == pytest.approx(0.12)
    # asked explicitly, within the budget: the budget is already used up, so nothing goes out
    retried = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": CountingProvider()},
                                   images_dir=tmp_path / "img", budget_usd=0.12, retry_failed=True))
    assert {o.status for o in retried.outcomes} == {"skipped"} and ledger.spent(run_id).usd <= 0.12 + 1e-9


def test_retry_failed_sends_again_within_the_budget(tmp_path: Path) -> None:
    ledger, run_id, _ = _start(tmp_path, [1, 2])
    asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": ModeratingProvider(moderate={1})},
                         images_dir=tmp_path / "img"))
    second = CountingProvider()
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": second}, images_dir=tmp_path / "img",
                                  budget_usd=0.12, retry_failed=True))
    assert second.paid == [1] and [o.status for o in report.outcomes] == ["done", "done"]
    assert ledger.spent(run_id).usd == pytest.approx(0.12)  # the moderated attempt and the retry both count


def test_a_request_refused_before_acceptance_costs_nothing_and_is_sent_again(tmp_path: Path) -> None:
    ledger, run_id, _ = _start(tmp_path, [1])
    key = "bfl_secretkey123456789abcdef"
    report = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": ModeratingProvider(reject={1}, echo_key=key)},
                                  images_dir=tmp_path / "img", secrets=(key,)))
    assert report.outcomes[0].status == "failed" and ledger.spent(run_id).usd == 0
    row = ledger.requests(run_id)[0]
    assert key not in (row.error or "") and "[redacted]" in (row.error or "")  # the echoed key never reaches the ledger
    again = asyncio.run(run_plan(run_id, ledger=ledger, providers={"bfl": CountingProvider()}, images_dir=tmp_path / "img"))
    assert again.outcomes[0].status == "done"


def test_two_resumes_of_one_run_at_once_are_refused(tmp_path: Path) -> None:
    from portrait_studio.engine import RunLocked

    ledger, run_id, _ = _start(tmp_path, [1])
    other = Engine(ledger=Ledger(tmp_path / "ledger.db"), images_dir=tmp_path / "img", runs_dir=tmp_path / "runs",
                   providers={"bfl": CountingProvider()})
    other.owner = "elsewhere:1"
    assert ledger.claim_run(run_id, "otherhost:4242") is None  # a live holder on another host (lease not expired)
    with pytest.raises(RunLocked, match="otherhost:4242"):
        asyncio.run(other.execute(run_id))
    assert ledger.requests(run_id)[0].status == "planned"
