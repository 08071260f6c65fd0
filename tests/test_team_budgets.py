"""Budgets that hold under concurrency: per team, per member, per day/month/total, per project —
enforced inside `Ledger.reserve`, in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _team_helpers import PASSWORD, make_team
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.errors import BudgetExceeded
from portrait_studio.ledger import Ledger
from portrait_studio.prompting import compile_brief
from portrait_studio.shoot import plan_shoot
from portrait_studio.testing.sandbox import start_sandbox

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
USD_PER_CREDIT = 0.01  # BFL's price of a credit


def _shared(handle: Any):  # type: ignore[no-untyped-def]
    """A sandbox starter that hands every engine the one running sandbox (and leaves it running)."""

    @contextlib.contextmanager
    def start(_provider: str) -> Iterator[Any]:
        yield handle

    return start


def _shoot(studio: Studio, ledger: Ledger, handle: Any, seeds: list[int], *, project: str | None = None) -> Any:
    plan = plan_shoot(BRIEF, ["flux-1.1-pro"], seeds).to_plan()

    async def go() -> Any:
        async with Engine.open(studio, ["bfl"], sandbox="always", start_sandbox=_shared(handle), checker=None,
                               ledger=ledger) as engine:
            run_id = engine.record(plan, project=project)
            return await engine.execute(run_id)

    return asyncio.run(go())


def test_twenty_producers_spending_at_once_never_take_the_team_past_its_budget(ledger_url: str, tmp_path: Path) -> None:
    """20 producers each shoot 2 images ($0.04 each) at the same moment against a $0.40 daily team
    budget, some tasks failing after the provider charged them: the sandbox's own counters show
    exactly $0.40 taken, the ledger agrees to the cent, and no reservation is left behind."""
    studio = Studio(tmp_path / "home", environ={}, database=ledger_url)
    with Ledger(ledger_url) as ledger, start_sandbox("bfl", latency=0.3) as sb:
        team = make_team(ledger, "Acme", roles=("owner",))
        ledger.as_actor(team.people["owner"]).set_budget(team.id, 0.40, period="day")
        producers = []
        for n in range(20):
            ledger.add_person(team.id, f"producer{n}@acme.test", "producer", password=PASSWORD)
            producers.append(ledger.actor_for(f"producer{n}@acme.test", team.id))
        sb.inject("fail", count=3)  # accepted (and charged, BFL bills on acceptance), then an error
        go = threading.Barrier(len(producers))
        reports: list[Any] = []
        errors: list[BaseException] = []

        def spend(n: int) -> None:
            go.wait()
            try:
                reports.append(_shoot(studio, ledger.as_actor(producers[n]), sb, [100 + 2 * n, 101 + 2 * n]))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=spend, args=(n,)) for n in range(len(producers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert errors == [] and len(reports) == 20
        charged_by_sandbox = sb.stats.credits_spent * USD_PER_CREDIT
        assert charged_by_sandbox <= 0.40 + 1e-9
        assert sb.stats.paid == 10 and sb.stats.paid_twice == []  # it filled up: nobody was starved
        assert ledger.spent(sandbox=True).usd == pytest.approx(charged_by_sandbox)
        skipped = [o for r in reports for o in r.outcomes if o.status == "skipped"]
        assert len(skipped) == 30 and all("team's daily budget" in (o.error or "") for o in skipped)
        assert sum(1 for r in reports for o in r.outcomes if o.status == "failed") == 3
        assert ledger.db.execute("SELECT COALESCE(SUM(reserved_usd), 0) FROM requests").fetchone()[0] == 0
        (budget,) = ledger.budgets(team.id)
        assert budget.sandbox_usd == pytest.approx(0.40) and budget.spent_usd == 0  # sandbox spend kept apart


def _reserve_all(ledger: Ledger, n: int, *, seed: int = 1, project: str | None = None) -> list[str]:
    """Plan n requests in a new run and reserve them one by one; returns each outcome."""
    reqs = [compile_brief(BRIEF, "flux-1.1-pro", seed=s) for s in range(seed, seed + n)]
    run = ledger.create_run("shoot", project=project)
    ledger.add_requests(run, reqs)
    out = []
    for req in reqs:
        try:
            ledger.reserve(req.request_id, 0.04, limit_usd=None, run_id=run)
            ledger.settle(req.request_id, None)
            out.append("ok")
        except BudgetExceeded as exc:
            out.append(exc.message)
    return out


def test_a_members_budget_stops_them_while_their_teammates_go_on(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        owner = ledger.as_actor(team.people["owner"])
        owner.set_budget(team.id, 0.08, period="day", user=team.email("producer"))
        owner.set_budget(team.id, 1.00, period="month")
        producer = ledger.as_actor(team.people["producer"])
        first = _reserve_all(producer, 3)
        assert first[:2] == ["ok", "ok"] and "your daily budget of $0.08" in first[2]
        assert _reserve_all(owner, 3, seed=10) == ["ok", "ok", "ok"]  # the owner's spend is theirs
        budgets = {b.scope: b for b in owner.budgets(team.id)}
        assert budgets["team per month"].spent_usd == pytest.approx(0.20)


def test_a_project_budget_counts_only_that_projects_runs(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        owner = ledger.as_actor(team.people["owner"])
        owner.set_budget(team.id, 0.10, period="total", project="spring")
        producer = ledger.as_actor(team.people["producer"])
        spring = _reserve_all(producer, 3, project="spring")
        assert spring[:2] == ["ok", "ok"] and "total budget for project 'spring'" in spring[2]
        assert _reserve_all(producer, 3, seed=20, project="autumn") == ["ok", "ok", "ok"]
        assert _reserve_all(producer, 1, seed=30) == ["ok"]


def test_changing_a_budget_replaces_it_and_another_team_is_not_affected(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        acme, other = make_team(ledger, "Acme"), make_team(ledger, "Other")
        owner = ledger.as_actor(acme.people["owner"])
        owner.set_budget(acme.id, 0.04, period="day")
        assert _reserve_all(ledger.as_actor(acme.people["producer"]), 2)[1].startswith("stopped before")
        owner.set_budget(acme.id, 0.08, period="day")
        assert len(owner.budgets(acme.id)) == 1
        assert _reserve_all(ledger.as_actor(acme.people["producer"]), 1, seed=50) == ["ok"]
        assert _reserve_all(ledger.as_actor(other.people["producer"]), 3, seed=60) == ["ok", "ok", "ok"]


def test_the_budget_periods_start_at_midnight_and_on_the_first_utc() -> None:
    from datetime import UTC, datetime

    from portrait_studio.ledger import window_start

    at = datetime(2025, 3, 17, 15, 30, tzinfo=UTC).timestamp()
    assert window_start("day", at) == datetime(2025, 3, 17, tzinfo=UTC).timestamp()
    assert window_start("month", at) == datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    assert window_start("total", at) == float("-inf")
