"""Every sandbox fault at every paid operation: 0 images lost, 0 paid twice, budget never exceeded,
and the ledger never counts less than the provider charged.

For each (operation, fault) the fault is injected once, the operation runs through the engine with a
budget of exactly its estimate, then `resume` runs once more with no fault pending. The provider
side (the sandbox's counters) is compared with the ledger side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _engine_helpers import CONSENT, consent
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.errors import StudioError
from portrait_studio.labels import verify
from portrait_studio.ledger import Ledger
from portrait_studio.testing.photos import astronaut
from portrait_studio.testing.sandbox import FAULTS, start_sandbox

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
OPERATIONS = ("shoot", "fix", "series", "swap")
FAST = {"poll_interval": 0.02, "max_poll_interval": 0.05, "retry_backoff_s": 0.01}


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "collins.png"
    astronaut().crop((100, 0, 360, 260)).resize((256, 256)).save(path)
    return path


class _Harness:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.handle: Any = None
        self.pending: str | None = None

    @contextlib.contextmanager
    def start(self, pid: str) -> Iterator[Any]:
        with start_sandbox(pid, latency=0.02, result_ttl=600) as handle:
            self.handle = handle
            if self.pending:
                handle.inject(self.pending, count=1, delay=0.3)
                self.pending = None
            yield handle

    def run(self, work: Any, fault: str | None = None) -> Any:
        self.pending = fault

        async def go() -> Any:
            options = {"bfl": FAST}
            async with Engine.open(self.studio, ["bfl"], sandbox="always", start_sandbox=self.start, checker=None,
                                   options=options) as engine:
                try:
                    return await work(engine)
                except StudioError as exc:
                    return exc

        return asyncio.run(go())


def _operation(op: str, photo: Path) -> tuple[Any, float]:
    """(the work, its budget: exactly the estimate)."""
    from portrait_studio.finishing.fix import fix_region
    from portrait_studio.series import example_shots_path, load_shots, plan_series
    from portrait_studio.shoot import plan_shoot
    from portrait_studio.swap import transfer_identity

    if op == "shoot":
        plan = plan_shoot(BRIEF, ["flux-1.1-pro"], [1, 2, 3]).to_plan()

        async def shoot(engine: Engine) -> Any:
            run_id = engine.record(plan, budget_usd=0.12)
            return await engine.execute(run_id)

        return shoot, 0.12
    if op == "fix":
        return (lambda engine: fix_region(engine, photo, "teeth", budget_usd=0.05)), 0.05
    if op == "series":
        shots = load_shots(example_shots_path())[:2]
        series = plan_series(BRIEF, shots, "anchors", photo, model="flux-1.1-pro", provider="bfl")
        return (lambda engine: _series(engine, series)), 0.08
    return (lambda engine: transfer_identity(engine, photo, photo, "flux-kontext-pro", provider="bfl",
                                             rights=CONSENT, budget_usd=0.04)), 0.04


async def _series(engine: Engine, plan: Any) -> Any:
    from portrait_studio.series import run_series

    return await run_series(engine, plan, rights=CONSENT, budget_usd=0.08)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("op", OPERATIONS)
def test_every_fault_at_every_paid_operation_keeps_the_promises(op: str, fault: str, studio: Studio,
                                                                photo: Path) -> None:
    consent(studio, photo)
    harness = _Harness(studio)
    work, budget = _operation(op, photo)
    harness.run(work, fault)
    first = harness.handle.stats
    with Ledger(studio.ledger_path) as ledger:
        (run,) = [r for r in ledger.runs(limit=5) if r.kind == op]
    # resume once, nothing pending: accepted tasks are collected, charged failures are not sent again
    resumed = harness.run(lambda engine: engine.execute(run.id))
    stats = harness.handle.stats
    paid_in_all = first.credits_spent + stats.credits_spent
    with Ledger(studio.ledger_path) as ledger:
        charged = ledger.spent(run.id, sandbox=True).usd
        reserved = ledger.in_flight(run.id)
        rows = ledger.requests(run.id)
        images = [i for i in ledger.images(run_id=run.id, limit=100) if i.operation != "import"]
        # 0 paid twice: no request body was charged twice, across both runs
        bodies = first.paid_by_body + stats.paid_by_body
        assert [k for k, n in bodies.items() if n > 1] == [], (op, fault)
        # the budget: what the provider charged never passes it
        assert paid_in_all / 100 <= budget + 1e-9, (op, fault, paid_in_all)
        # the ledger never counts less than was charged (an unknown outcome stays reserved)
        assert charged + reserved >= paid_in_all / 100 - 1e-9, (op, fault, charged, reserved, paid_in_all)
        assert charged <= paid_in_all / 100 + 1e-9, (op, fault)
        # 0 images lost: every request whose image the provider delivered has it, delivered and labelled
        for row in rows:
            if row.status == "done":
                made = ledger.result_for_request(row.id)
                assert made is not None and Path(made.path).is_file()
        for image in images:
            if image.out_path:
                assert verify(image.out_path).labelled, (op, fault, image.out_path)
        assert not isinstance(resumed, Exception) or "budget" in str(resumed) or rows, (op, fault, resumed)
