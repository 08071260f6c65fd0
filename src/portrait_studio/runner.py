"""Run many requests: concurrently, within budget, recorded, resumable.

The order of events for one image, each a ledger write before the next step:

    planned ──(budget ok)──► submitting ──(provider accepted: Ticket)──► accepted ──► done
                                   │                                          │
                                   └──────────── failed (error recorded) ◄────┘

- An image counts as done only after its file and ledger row are written.
- `resume` re-polls `accepted` tasks (`Provider.resume`) instead of paying again, and submits
  only `planned` ones. A request left in `submitting` (the process died between sending and
  hearing back) may or may not have been accepted; it is not re-sent unless the user says so.
- The budget is checked before each submission against what the ledger says was spent plus
  what is in flight, so a run stops *before* the request that would exceed it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import BudgetExceeded, NetworkError, ProviderError, StudioError, UncertainSubmission
from .ledger import ImageRow, Ledger, RequestRow
from .providers.base import Provider
from .records import Request, Ticket

__all__ = ["Outcome", "RunReport", "run_plan"]


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    position: int
    status: Literal["done", "failed", "skipped", "uncertain"]
    image: ImageRow | None = None
    error: str | None = None
    resumed: bool = False


class RunReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    outcomes: list[Outcome]
    spent_usd: float
    seconds: float

    @property
    def done(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != "done"]


class _Budget:
    """Spent (from the ledger) + reserved (in flight) must stay within the limit."""

    def __init__(self, limit_usd: float | None, spent_usd: float) -> None:
        self.limit = limit_usd
        self.spent = spent_usd
        self.reserved = 0.0

    def reserve(self, usd: float) -> None:
        if self.limit is not None and self.spent + self.reserved + usd > self.limit + 1e-9:
            raise BudgetExceeded(
                f"stopped before a ${usd:.3f} request: ${self.spent + self.reserved:.3f} spent or in flight of a "
                f"${self.limit:.2f} budget",
                budget_usd=self.limit,
                needed_usd=self.spent + self.reserved + usd,
            )
        self.reserved += usd

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        self.spent += actual


def _out_name(request: Request, position: int) -> str:
    ext = {"jpeg": "jpg"}.get(request.output_format, request.output_format)
    return f"{position + 1:02d}-{request.model}-seed{request.seed}.{ext}"


async def _run_one(
    row: RequestRow,
    provider: Provider,
    *,
    ledger: Ledger,
    images_dir: Path,
    out_dir: Path | None,
    budget: _Budget,
    resubmit_uncertain: bool,
) -> Outcome:
    request = row.request
    base: dict[str, Any] = {"request_id": row.id, "position": row.position}
    if row.status == "done":
        return Outcome(**base, status="done", image=_existing(ledger, row.id))
    if row.status == "submitting" and not resubmit_uncertain:
        return Outcome(
            **base, status="uncertain",
            error="sent before an interruption, acceptance unknown; not re-sent "
            "(check the provider dashboard, then 'portrait resume RUN --resubmit-uncertain')",
        )

    async def accepted(ticket: Ticket) -> None:
        ledger.record_accepted(ticket)

    reserved = 0.0
    try:
        if row.status == "accepted" and row.ticket is not None:
            result = await provider.resume(row.ticket, request)
            resumed = True
        else:
            provider.check(request)
            reserved = request.estimated_cost.usd
            budget.reserve(reserved)
            ledger.set_request_status(row.id, "submitting")
            result = await provider.submit(request, on_accepted=accepted)
            resumed = False
        image = ledger.record_image(
            result,
            images_dir=images_dir,
            run_id=row.run_id,
            request_id=row.id,
            parent_sha256=None,
            operation="generate",
            out_path=(out_dir / _out_name(request, row.position)) if out_dir else None,
        )
        budget.settle(reserved, result.cost.usd)
        return Outcome(**base, status="done", image=image, resumed=resumed)
    except BudgetExceeded as exc:
        ledger.set_request_status(row.id, "skipped", str(exc))
        return Outcome(**base, status="skipped", error=str(exc))
    except UncertainSubmission as exc:
        budget.settle(reserved, reserved)  # assume it was charged until we know better
        ledger.set_request_status(row.id, "submitting", str(exc))
        return Outcome(**base, status="uncertain", error=str(exc))
    except StudioError as exc:
        budget.settle(reserved, 0.0)
        # An accepted task that we merely lost contact with stays 'accepted': resume re-polls it.
        keep = ledger.request_status(row.id) == "accepted" and isinstance(exc, NetworkError)
        ledger.set_request_status(row.id, "accepted" if keep else "failed", str(exc))
        return Outcome(**base, status="failed", error=f"{type(exc).__name__}: {exc}")


def _existing(ledger: Ledger, request_id: str) -> ImageRow | None:
    row = ledger.db.execute("SELECT id FROM results WHERE request_id=? ORDER BY created_at DESC", (request_id,)).fetchone()
    return ledger.image(row[0]) if row else None


async def run_plan(
    run_id: str,
    *,
    ledger: Ledger,
    providers: Mapping[str, Provider],
    images_dir: Path,
    out_dir: Path | None = None,
    budget_usd: float | None = None,
    resubmit_uncertain: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    max_parallel: int = 24,
    request_ids: Collection[str] | None = None,
) -> RunReport:
    """Run (or resume) every request of `run_id` that is not done yet (only `request_ids`, when given:
    a series runs shot by shot and measures each before planning the next)."""
    start = time.perf_counter()
    rows = [r for r in ledger.requests(run_id) if request_ids is None or r.id in request_ids]
    budget = _Budget(budget_usd, ledger.spent(run_id).usd)
    gate = asyncio.Semaphore(max_parallel)
    ledger.set_run_status(run_id, "running")

    async def guarded(row: RequestRow) -> Outcome:
        provider = providers.get(row.provider)
        if provider is None:
            return Outcome(request_id=row.id, position=row.position, status="failed", error=f"no provider '{row.provider}' configured")
        async with gate:
            try:
                outcome = await _run_one(
                    row, provider, ledger=ledger, images_dir=images_dir, out_dir=out_dir,
                    budget=budget, resubmit_uncertain=resubmit_uncertain,
                )
            except ProviderError as exc:  # pragma: no cover - _run_one records these itself
                outcome = Outcome(request_id=row.id, position=row.position, status="failed", error=str(exc))
        if on_outcome:
            on_outcome(outcome)
        return outcome

    try:
        outcomes = await asyncio.gather(*(guarded(r) for r in rows))
    finally:
        statuses = {r.status for r in ledger.requests(run_id)}
        ledger.set_run_status(run_id, "done" if statuses <= {"done"} else "incomplete")
    return RunReport(
        run_id=run_id,
        outcomes=sorted(outcomes, key=lambda o: o.position),
        spent_usd=ledger.spent(run_id).usd,
        seconds=round(time.perf_counter() - start, 3),
    )
