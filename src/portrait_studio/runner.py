"""Run many requests: concurrently, within budget, recorded, resumable — the engine's core and the
only code that talks to providers.

The order of events for one image, each a ledger write before the next step:

    planned ──reserve (budget)──► submitting ──provider accepted: Ticket──► accepted ──► done (+ charge)
       │                               │                                       │
       └─ skipped (over budget)        └─ failed, never accepted (charge 0)    └─ failed (charged per billing)

- Money: the request's estimate is *reserved* in the ledger before it is sent (atomically against
  the run's budget, so two processes resuming one run cannot pass it together) and *settled* on
  what the provider charged: the result's cost, or — for a task that was accepted and then ended
  moderated, in error, lost or expired — what the provider's billing rule says it costs
  (`Provider.billing`). An image counts as done only after its file and ledger row are written.
- `resume` re-polls `accepted` tasks (`Provider.resume`) and sends `planned`, `skipped` and
  never-accepted `failed` requests. A task the provider accepted and that then failed is NOT re-sent
  unless the caller asks (`retry_failed`): it may have been paid for. A request left in
  `submitting` (the process died between sending and hearing back) is not re-sent unless
  `resubmit_uncertain` (or the provider is free: local generation is simply made again).
- Errors are written with every known API key redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import BudgetExceeded, NetworkError, StudioError, UncertainSubmission
from .ledger import ImageRow, Ledger, RequestRow
from .providers.base import Provider
from .records import Cost, Request, Result, Ticket
from .redaction import redact

__all__ = ["Admit", "Deliver", "Outcome", "RunReport", "run_plan"]


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    position: int
    status: Literal["done", "failed", "skipped", "uncertain", "accepted"]
    image: ImageRow | None = None
    error: str | None = None
    error_type: str | None = None
    hint: str | None = None
    resumed: bool = False
    already: bool = False
    """Done before this call (a resume found it finished)."""
    charged_usd: float = 0.0
    sandbox: bool = False


class RunReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    outcomes: list[Outcome]
    spent_usd: float
    """Real money charged for this run so far (sandbox spend is never in it)."""
    sandbox_usd: float = 0.0
    """What the sandbox 'charged' (not money)."""
    seconds: float

    @property
    def done(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != "done"]

    @property
    def sandbox(self) -> bool:
        return any(o.sandbox for o in self.outcomes)


Deliver = Callable[[ImageRow, Request], ImageRow]
"""Write the delivered (labelled) copy of a finished image; returns its row (the engine's step)."""

Admit = Callable[[RequestRow, Provider], AbstractAsyncContextManager[Any]]
"""A slot held from before a request's reservation until its image is in (the cluster runner's
account-wide limiter): a request waiting for one is still 'planned', so a kill while it waits
leaves nothing uncertain."""


def out_name(request: Request, position: int) -> str:
    """The delivered file's name in the run folder (in the request's `folder` when it names one: a batch
    keeps each person's images together)."""
    ext = {"jpeg": "jpg"}.get(request.output_format, request.output_format)
    name = f"{position + 1:02d}-{request.model}-seed{request.seed}.{ext}"
    folder = str(request.options.get("folder") or "")
    if folder and all(part.replace("-", "").replace("_", "").isalnum() for part in folder.split("/")):
        return f"{folder}/{name}"
    return name


def _charge_after_failure(provider: Provider, row_ticket: Ticket | None, request: Request,
                          charged: bool | None = None) -> Cost:
    """What an accepted task that ended without an image costs: what the provider's answer says
    (`ProviderError.charged`: a fal content-policy refusal is billed), else its billing rule."""
    if charged is None:
        charged = provider.billing == "on_accept"
    if not charged:
        return Cost()
    if row_ticket is not None and row_ticket.cost is not None:
        return row_ticket.cost
    return request.estimated_cost


async def _run_one(
    row: RequestRow,
    provider: Provider,
    *,
    ledger: Ledger,
    images_dir: Any,
    out_dir: Any,
    budget_usd: float | None,
    resubmit_uncertain: bool,
    retry_failed: bool,
    secrets: Sequence[str],
    deliver: Deliver | None,
) -> Outcome:
    request = row.request
    base: dict[str, Any] = {"request_id": row.id, "position": row.position, "sandbox": provider.sandbox}
    if row.status == "done":
        return Outcome(**base, status="done", image=ledger.result_for_request(row.id), already=True)
    if row.status == "submitting" and not resubmit_uncertain and provider.billing != "free":
        return Outcome(
            **base, status="uncertain",
            error="sent before an interruption, acceptance unknown; not re-sent",
            hint="check the provider's dashboard, then 'portrait resume RUN --resubmit-uncertain'",
        )
    if row.status == "failed" and row.accepted and not retry_failed:
        return Outcome(
            **base, status="failed", error=row.error or "the provider accepted the task and it failed",
            hint="the provider accepted (and may have charged for) it, so it is not re-sent; "
            "'portrait resume RUN --retry-failed' sends it again within the budget",
        )

    ticket_seen: list[Ticket] = [row.ticket] if row.ticket else []

    async def accepted(ticket: Ticket) -> None:
        ticket_seen.append(ticket)
        ledger.record_accepted(ticket)

    resumed = row.status == "accepted" and row.ticket is not None
    try:
        if resumed:
            assert row.ticket is not None
            result: Result = await provider.resume(row.ticket, request)
        else:
            provider.check(request)
            ledger.reserve(row.id, request.estimated_cost.usd, limit_usd=budget_usd, run_id=row.run_id,
                           sandbox=provider.sandbox)
            result = await provider.submit(request, on_accepted=accepted)
        if provider.sandbox and not result.sandbox:
            result = result.model_copy(update={"sandbox": True})
        operation = str(request.options.get("record_as", "generate"))
        parent_sha = None
        if operation not in ("generate", "raw") and request.parent_id:
            with contextlib.suppress(StudioError):
                parent_sha = ledger.image(request.parent_id).image_sha256
        try:
            image = ledger.record_image(
                result, images_dir=images_dir, run_id=row.run_id, request_id=row.id, operation=operation,
                parent_sha256=parent_sha,
                out_path=(out_dir / out_name(request, row.position)) if out_dir and operation != "raw" else None,
                charge=result.cost,
            )
        except OSError as exc:  # made and paid, but not stored (a full disk): the provider still has it
            message = redact(f"made but not stored: {exc}", secrets)
            ledger.set_request_status(row.id, "accepted" if ledger.request(row.id).task_id else "failed", message)
            return Outcome(**base, status="accepted", error=message, error_type=type(exc).__name__,
                           hint=getattr(exc, "hint", None) or "free some space; 'portrait resume RUN' collects it again")
    except BudgetExceeded as exc:
        ledger.set_request_status(row.id, "skipped", str(exc))
        return Outcome(**base, status="skipped", error=str(exc), error_type="BudgetExceeded", hint=exc.hint)
    except UncertainSubmission as exc:  # the reservation stays: it may have been charged
        ledger.set_request_status(row.id, "submitting", redact(str(exc), secrets))
        return Outcome(**base, status="uncertain", error=redact(str(exc), secrets), error_type=type(exc).__name__,
                       hint=exc.hint)
    except StudioError as exc:
        message = redact(f"{type(exc).__name__}: {exc.message}", secrets)
        was_accepted = ledger.request_status(row.id) == "accepted" or resumed
        ticket = getattr(exc, "ticket", None) or (ticket_seen[-1] if ticket_seen else None)
        if was_accepted and isinstance(exc, NetworkError):  # lost contact only: resume re-polls it
            ledger.set_request_status(row.id, "accepted", message)
            return Outcome(**base, status="accepted", error=message, error_type=type(exc).__name__,
                           hint="the task is still the provider's; 'portrait resume RUN' collects it")
        charged = getattr(exc, "charged", None)
        charge = _charge_after_failure(provider, ticket, request, charged) if (was_accepted or ticket) else Cost()
        ledger.settle(row.id, charge)
        ledger.set_request_status(row.id, "failed", message)
        return Outcome(**base, status="failed", error=message, error_type=type(exc).__name__,
                       hint=exc.hint and redact(exc.hint, secrets), charged_usd=charge.usd)
    error = None
    if deliver is not None:
        try:
            image = deliver(image, request)
        except (OSError, StudioError) as exc:  # the image is safe in the ledger; resume writes the copy again
            error = redact(f"made and recorded, but its delivered copy was not written: {exc}", secrets)
    return Outcome(**base, status="done", image=image, resumed=resumed, charged_usd=result.cost.usd, error=error,
                   hint="'portrait resume RUN' writes the missing copy" if error else None)


async def run_plan(
    run_id: str,
    *,
    ledger: Ledger,
    providers: Mapping[str, Provider],
    images_dir: Any,
    out_dir: Any = None,
    budget_usd: float | None = None,
    resubmit_uncertain: bool = False,
    retry_failed: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    max_parallel: int = 24,
    request_ids: Collection[str] | None = None,
    secrets: Sequence[str] = (),
    deliver: Deliver | None = None,
    admit: Admit | None = None,
) -> RunReport:
    """Run (or resume) every request of `run_id` that is not done yet (only `request_ids`, when given:
    a series runs shot by shot and measures each before planning the next)."""
    start = time.perf_counter()
    rows = [r for r in ledger.requests(run_id) if request_ids is None or r.id in request_ids]
    gate = asyncio.Semaphore(max_parallel)
    ledger.set_run_status(run_id, "running")

    async def guarded(row: RequestRow) -> Outcome:
        provider = providers.get(row.provider)
        if provider is None:
            outcome = Outcome(request_id=row.id, position=row.position, status="failed",
                              error=f"no provider '{row.provider}' is open for this run", error_type="NotConfigured")
        else:
            async with gate, (admit(row, provider) if admit is not None else contextlib.nullcontext()):
                outcome = await _run_one(
                    row, provider, ledger=ledger, images_dir=images_dir, out_dir=out_dir, budget_usd=budget_usd,
                    resubmit_uncertain=resubmit_uncertain, retry_failed=retry_failed, secrets=secrets, deliver=deliver,
                )
        if on_outcome:
            on_outcome(outcome)
        return outcome

    outcomes = await asyncio.gather(*(guarded(r) for r in rows))
    return RunReport(
        run_id=run_id,
        outcomes=sorted(outcomes, key=lambda o: o.position),
        spent_usd=ledger.spent(run_id).usd,
        sandbox_usd=ledger.spent(run_id, sandbox=True).usd,
        seconds=round(time.perf_counter() - start, 3),
    )
