"""The main job's wall time approaches the provider's latency: each image is checked as soon as it
arrives, while the provider still works on the others, and the checklist's results are the same
ones a check after the run would have recorded."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.ledger import Ledger
from portrait_studio.providers.base import OnAccepted, Provider
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.records import Request, Result, Ticket
from portrait_studio.shoot import plan_shoot
from portrait_studio.testing.sandbox import start_sandbox

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
FAST = {"poll_interval": 0.02, "max_poll_interval": 0.05}


class SlowSecond(Provider):
    """The sandbox client, whose later tasks finish only once the first image is being checked (or
    after `patience` seconds): a provider whose tasks end at different times."""

    hosted = False

    def __init__(self, inner: Provider, first_checked: threading.Event, patience: float = 8.0) -> None:
        self.inner, self.provider_id, self.sandbox = inner, inner.provider_id, inner.sandbox
        self.first_checked, self.patience, self.count = first_checked, patience, 0
        self.arrived: list[float] = []

    def check(self, request: Request) -> None:
        self.inner.check(request)

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        number = self.count
        self.count += 1
        result = await self.inner.submit(request, on_accepted)
        if number > 0:
            deadline = time.monotonic() + self.patience
            while not self.first_checked.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        self.arrived.append(time.monotonic())
        return result

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        return await self.inner.resume(ticket, request)


def test_each_image_is_checked_while_the_provider_still_works_on_the_others(studio: Studio) -> None:
    first_checked = threading.Event()
    checked: list[tuple[str, float, str]] = []

    def checker(path: Path, brief: Any) -> tuple[str, float, dict[str, Any]]:
        checked.append((path.name, time.monotonic(), threading.current_thread().name))
        first_checked.set()
        return "pass", 91.0, {"overall": "pass", "score": 91.0, "items": []}

    plan = plan_shoot(BRIEF, ["flux-1.1-pro"], [1, 2, 3], provider="bfl")
    with start_sandbox("bfl", latency=0.05) as sb, Ledger(studio.ledger_path) as ledger:
        from portrait_studio.finishing.lineage import LabelSettings

        provider = SlowSecond(BflProvider.for_sandbox(sb, **FAST), first_checked)
        engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir,
                        providers={"bfl": provider}, labels=LabelSettings.from_studio(studio), checker=checker,
                        work_dir=studio.home / "work")
        run_id = engine.record(plan.to_plan())
        report = asyncio.run(engine.execute(run_id))

        assert len(report.done) == 3 and sb.stats.paid == 3
        assert len(checked) == 3  # once per image, not again in the check step
        assert checked[0][1] < max(provider.arrived)  # the first check ran before the last image arrived
        assert all(name.startswith("portrait-check") for _, _, name in checked)
        images = [i for i in ledger.images(run_id=run_id) if i.operation == "generate"]
        assert {Path(i.out_path or "").name for i in images} == {name for name, _, _ in checked}  # labelled copies
        assert all(ledger.checks(i.image_sha256) is not None for i in images)
        assert all(i.check_overall == "pass" for i in images)


def test_a_check_that_raises_still_fails_the_check_step_as_before(studio: Studio) -> None:
    """An error in a check made early surfaces where a late check's would, not silently."""
    import pytest

    def checker(path: Path, brief: Any) -> tuple[str, float, dict[str, Any]]:
        raise RuntimeError("the checklist broke")

    plan = plan_shoot(BRIEF, ["flux-1.1-pro"], [1], provider="bfl")
    with start_sandbox("bfl", latency=0.02) as sb, Ledger(studio.ledger_path) as ledger:
        from portrait_studio.finishing.lineage import LabelSettings

        engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir,
                        providers={"bfl": BflProvider.for_sandbox(sb, **FAST)},
                        labels=LabelSettings.from_studio(studio), checker=checker, work_dir=studio.home / "work")
        run_id = engine.record(plan.to_plan())
        with pytest.raises(RuntimeError, match="the checklist broke"):
            asyncio.run(engine.execute(run_id))
        assert sb.stats.paid == 1 and ledger.result_for_request(ledger.requests(run_id)[0].id) is not None
