"""Runs, requests, money, images, files, checks, labels, rights and identity: the provenance record.

Rows are appended as work happens: a run and its planned requests first, then (one transaction
each) acceptance by the provider, and the finished image with its cost. So an interrupted run
can be resumed without paying twice, and failures are recorded too. API keys never enter it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from ..errors import BudgetExceeded, LedgerError
from ..records import Cost, Request, Result, Ticket, new_id
from . import schema as s
from .base import LedgerBase, dump_json, load_json
from .rows import ImageRow, RequestRow, RunRow

__all__ = ["CoreLedger", "RequestStatus", "store_image", "window_start"]

RequestStatus = Literal["planned", "submitting", "accepted", "done", "failed", "skipped"]
R, IMG, Q, U = s.results, s.images, s.requests, s.runs


def store_image(images_dir: Path, data: bytes, ext: str) -> tuple[str, Path]:
    """Write `data` content-addressed (images/ab/<sha256>.<ext>); return (sha256, path)."""
    from ..files import atomic_write_bytes

    sha = hashlib.sha256(data).hexdigest()
    path = images_dir / sha[:2] / f"{sha}.{ext}"
    if not path.exists() or path.stat().st_size != len(data):  # a unique temp name per writer: no race
        atomic_write_bytes(path, data)
    return sha, path


def window_start(period: str, now: float) -> float:
    """Start of the budget period holding `now` (UTC): the day, the calendar month, or all time."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if period == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return float("-inf")


def _prefix(column: sa.ColumnElement[Any], ref: str) -> sa.ColumnElement[bool]:
    """Exact-case prefix match (never a LIKE pattern: '%' and '_' in `ref` are plain characters)."""
    return sa.func.substr(column, 1, len(ref)) == ref


def _review_of(result_id: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    v = s.reviews.alias("v")
    return (sa.select(v.c.decision).where(v.c.result_id == result_id)
            .order_by(v.c.created_at.desc(), v.c.id.desc()).limit(1).scalar_subquery())


def _image_select() -> sa.Select[Any]:
    """Results joined with their stored image, the latest check and the latest review."""
    c1, c2 = s.checks.alias("c1"), s.checks.alias("c2")
    overall = (sa.select(c1.c.overall).where(c1.c.image_sha256 == R.c.image_sha256)
               .order_by(c1.c.created_at.desc()).limit(1).scalar_subquery())
    score = (sa.select(c2.c.score).where(c2.c.image_sha256 == R.c.image_sha256)
             .order_by(c2.c.created_at.desc()).limit(1).scalar_subquery())
    source = R.join(IMG, IMG.c.sha256 == R.c.image_sha256)
    return sa.select(
        R, IMG.c.path, IMG.c.width, IMG.c.height, overall.label("check_overall"), score.label("check_score"),
        _review_of(R.c.id).label("review"),
    ).select_from(source)


def _image_row(row: Any) -> ImageRow:
    m = row._mapping
    return ImageRow(
        id=m["id"], run_id=m["run_id"], request_id=m["request_id"], image_sha256=m["image_sha256"],
        path=m["path"], out_path=m["out_path"], parent_sha256=m["parent_sha256"], operation=m["operation"],
        operation_details=load_json(m["operation_json"]), model=m["model"], provider=m["provider"], seed=m["seed"],
        cost_usd=m["cost_usd"], cost_credits=m["cost_credits"], timings=load_json(m["timings_json"]) or {},
        metadata=load_json(m["metadata_json"]) or {}, versions=load_json(m["versions_json"]) or {},
        sandbox=bool(m["sandbox"]), picked=bool(m["picked"]), created_at=m["created_at"],
        width=m["width"], height=m["height"], check_overall=m["check_overall"], check_score=m["check_score"],
        review=m["review"], created_by=m["created_by"], team_id=m["team_id"],
    )


def _run_row(row: Any) -> RunRow:
    m = row._mapping
    return RunRow(
        id=m["id"], kind=m["kind"], created_at=m["created_at"], name=m["name"],
        brief=load_json(m["brief_json"]), plan=load_json(m["plan_json"]), budget_usd=m["budget_usd"],
        parent_run_id=m["parent_run_id"], varied=load_json(m["varied_json"]), forced=bool(m["forced"]),
        out_dir=m["out_dir"], status=m["status"], steps=load_json(m["steps_json"]) or [],
        created_by=m["created_by"], team_id=m["team_id"], project=m["project"],
    )


def _request_row(row: Any) -> RequestRow:
    m = row._mapping
    return RequestRow(
        id=m["id"], run_id=m["run_id"], position=m["position"], idempotency_key=m["idempotency_key"],
        model=m["model"], provider=m["provider"], seed=m["seed"],
        request=Request.model_validate_json(m["request_json"]), estimated_usd=m["estimated_usd"],
        status=m["status"], task_id=m["task_id"],
        ticket=Ticket.model_validate_json(m["ticket_json"]) if m["ticket_json"] else None, error=m["error"],
        reserved_usd=m["reserved_usd"], charged_usd=m["charged_usd"], sandbox=bool(m["sandbox"]),
        user_id=m["user_id"], team_id=m["team_id"],
    )


def _plain(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class CoreLedger(LedgerBase):
    """The provenance half of the ledger (see the module docstring)."""

    # --- runs ----------------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        *,
        name: str | None = None,
        brief: dict[str, Any] | None = None,
        brief_path: str | None = None,
        plan: dict[str, Any] | None = None,
        budget_usd: float | None = None,
        parent_run_id: str | None = None,
        varied: dict[str, Any] | None = None,
        forced: bool = False,
        out_dir: str | None = None,
        versions: dict[str, str] | None = None,
        run_id: str | None = None,
        project: str | None = None,
    ) -> str:
        if self.actor is not None:  # a run is planned spending: refused before anything is recorded
            self.actor.require("spend")
        run_id = run_id or new_id("run_")
        with self._write() as c:
            c.execute(U.insert().values(
                id=run_id, kind=kind, created_at=time.time(), name=name, brief_json=dump_json(brief),
                brief_path=brief_path, plan_json=dump_json(plan), budget_usd=budget_usd, parent_run_id=parent_run_id,
                varied_json=dump_json(varied), forced=int(forced), out_dir=out_dir, versions_json=dump_json(versions),
                created_by=self.user_id, team_id=self.team_id, project=project,
            ))
        return run_id

    def _update_run(self, run_id: str, **values: Any) -> None:
        with self._write() as c:
            c.execute(U.update().where(U.c.id == run_id, *self._scope(U)).values(**values))

    def set_run_status(self, run_id: str, status: str) -> None:
        self._update_run(run_id, status=status)

    def set_run_plan(self, run_id: str, plan: dict[str, Any]) -> None:
        self._update_run(run_id, plan_json=dump_json(plan))

    def set_run_steps(self, run_id: str, steps: list[dict[str, Any]]) -> None:
        self._update_run(run_id, steps_json=dump_json(steps))

    def run(self, run_id: str) -> RunRow:
        """A run by its exact id or a unique prefix of it (never a pattern: '' and '%' match nothing)."""
        ref = (run_id or "").strip()
        with self._read() as c:
            row = c.execute(sa.select(U).where(U.c.id == ref, *self._scope(U))).first() if ref else None
            if row is None and len(ref) >= 4:
                rows = c.execute(sa.select(U).where(_prefix(U.c.id, ref), *self._scope(U)).limit(2)).all()
                if len(rows) > 1:
                    raise LedgerError(f"'{ref}' matches several runs", hint="give more characters of the run id")
                row = rows[0] if rows else None
        if row is None:
            raise LedgerError(f"no run '{ref}' in the ledger", hint="give a run id (or a unique prefix of one) from 'portrait log'")
        return _run_row(row)

    def runs(self, limit: int = 20) -> list[RunRow]:
        with self._read() as c:
            rows = c.execute(sa.select(U).where(*self._scope(U)).order_by(U.c.created_at.desc()).limit(limit)).all()
        return [_run_row(r) for r in rows]

    def latest_run(self) -> RunRow:
        found = self.runs(limit=1)
        if not found:
            raise LedgerError("the ledger has no runs yet", hint="start with 'portrait shoot BRIEF.yaml'")
        return found[0]

    # --- one resumer at a time ---------------------------------------------------------------
    def claim_run(self, run_id: str, owner: str, *, ttl_s: float = 60.0, alive: Callable[[str], bool] | None = None) -> str | None:
        """Take the run's lock for `owner`; returns None, or the current holder when another live
        process holds it. A lock whose lease ran out, or whose holder `alive` says is gone, is taken over."""
        now = time.time()
        with self._write() as c:
            row = c.execute(sa.select(U.c.lock_owner, U.c.lock_until).where(U.c.id == run_id).with_for_update()).first()
            if row is None:
                raise LedgerError(f"no run '{run_id}' in the ledger")
            holder, until = row[0], row[1] or 0.0
            if holder and holder != owner and until > now and (alive is None or alive(holder)):
                return str(holder)
            c.execute(U.update().where(U.c.id == run_id).values(lock_owner=owner, lock_until=now + ttl_s))
        return None

    def renew_run(self, run_id: str, owner: str, *, ttl_s: float = 60.0) -> None:
        with self._write() as c:
            c.execute(U.update().where(U.c.id == run_id, U.c.lock_owner == owner).values(lock_until=time.time() + ttl_s))

    def release_run(self, run_id: str, owner: str) -> None:
        with self._write() as c:
            c.execute(U.update().where(U.c.id == run_id, U.c.lock_owner == owner).values(lock_owner=None, lock_until=None))

    # --- requests ------------------------------------------------------------------------
    def add_requests(self, run_id: str, requests: list[Request]) -> None:
        """Append requests to a run; positions continue after the run's last one (a series adds shot
        by shot). Each is signed by whoever adds it, and belongs to the run's team."""
        if self.actor is not None:
            self.actor.require("spend")
        now = time.time()
        with self._write() as c:
            run = c.execute(sa.select(U.c.team_id, U.c.created_by).where(U.c.id == run_id).with_for_update()).first()
            if run is None:
                raise LedgerError(f"no run '{run_id}' in the ledger")
            first = c.execute(sa.select(sa.func.coalesce(sa.func.max(Q.c.position) + 1, 0)).where(Q.c.run_id == run_id)).scalar()
            rows = [
                {"id": req.request_id, "run_id": run_id, "position": pos, "idempotency_key": req.idempotency_key,
                 "model": req.model, "provider": req.provider, "seed": req.seed, "request_json": req.model_dump_json(),
                 "estimated_usd": req.estimated_cost.usd, "updated_at": now,
                 "user_id": self.user_id or run.created_by, "team_id": run.team_id}
                for pos, req in enumerate(requests, int(first or 0))
            ]
            if rows:
                c.execute(Q.insert(), rows)

    def requests(self, run_id: str) -> list[RequestRow]:
        with self._read() as c:
            rows = c.execute(sa.select(Q).where(Q.c.run_id == run_id, *self._scope(Q)).order_by(Q.c.position)).all()
        return [_request_row(r) for r in rows]

    def request(self, request_id: str) -> RequestRow:
        with self._read() as c:
            row = c.execute(sa.select(Q).where(Q.c.id == request_id, *self._scope(Q))).first()
        if row is None:
            raise LedgerError(f"no request '{request_id}' in the ledger")
        return _request_row(row)

    def request_by_key(self, run_id: str, idempotency_key: str) -> RequestRow | None:
        """The run's request for exactly this image (same settings), if it was planned before."""
        with self._read() as c:
            row = c.execute(sa.select(Q).where(Q.c.run_id == run_id, Q.c.idempotency_key == idempotency_key,
                                               *self._scope(Q)).order_by(Q.c.position).limit(1)).first()
        return _request_row(row) if row else None

    def request_counts(self, run_id: str) -> tuple[dict[str, int], list[str]]:
        """(requests per status, the first errors) of a run, for progress displays."""
        counts: dict[str, int] = {}
        errors: list[str] = []
        with self._read() as c:
            rows = c.execute(sa.select(Q.c.status, Q.c.error).where(Q.c.run_id == run_id, *self._scope(Q))
                             .order_by(Q.c.position)).all()
        for status, error in rows:
            counts[status] = counts.get(status, 0) + 1
            if error and status in ("failed", "skipped"):
                errors.append(error)
        return counts, errors

    # --- money: reserve before sending, settle on what was charged --------------------------
    def reserve(self, request_id: str, usd: float, *, limit_usd: float | None, run_id: str, sandbox: bool = False) -> None:
        """Atomically, in one transaction: refuse when `usd` more would pass the run's `limit_usd` or
        any budget of the run's team that applies (the team's, the requester's, per day/month/total,
        per project) — else mark the request 'submitting' with `usd` reserved.

        Budgets count what was charged plus what is reserved and not yet settled, of the same kind
        (sandbox spend against sandbox spend, real money against real money). The run's row and
        then the budgets' rows are locked (PostgreSQL `FOR UPDATE`; SQLite's write lock covers
        all), so concurrent spenders queue at the budget and can never pass it together.
        """
        if self.actor is not None:
            self.actor.require("spend")
        now = time.time()
        with self._write() as c:
            run = c.execute(sa.select(U.c.team_id, U.c.project).where(U.c.id == run_id).with_for_update()).first()
            if run is None:
                raise LedgerError(f"no run '{run_id}' in the ledger")
            req = c.execute(sa.select(Q.c.user_id, Q.c.team_id).where(Q.c.id == request_id)).first()
            if req is None:
                raise LedgerError(f"no request '{request_id}' in the ledger")
            committed = c.execute(
                sa.select(sa.func.coalesce(sa.func.sum(sa.func.coalesce(Q.c.charged_usd, 0) + Q.c.reserved_usd), 0))
                .where(Q.c.run_id == run_id)
            ).scalar() or 0.0
            if limit_usd is not None and committed + usd > limit_usd + 1e-9:
                raise BudgetExceeded(
                    f"stopped before a ${usd:.3f} request: ${committed:.3f} spent or in flight of a ${limit_usd:.2f} budget",
                    budget_usd=limit_usd, needed_usd=committed + usd,
                )
            team_id = req.team_id or run.team_id
            if team_id:
                self._check_budgets(c, team_id=team_id, user_id=req.user_id, project=run.project, usd=usd,
                                    sandbox=sandbox, now=now)
            c.execute(Q.update().where(Q.c.id == request_id).values(
                status="submitting", reserved_usd=usd, reserved_at=now, sandbox=int(sandbox), error=None, task_id=None,
                ticket_json=None, updated_at=now, attempts=Q.c.attempts + 1,
            ))

    def _check_budgets(self, c: sa.Connection, *, team_id: str, user_id: str | None, project: str | None, usd: float,
                       sandbox: bool, now: float) -> None:
        b = s.budgets
        applies = [b.c.team_id == team_id,
                   sa.or_(b.c.user_id.is_(None), b.c.user_id == user_id) if user_id else b.c.user_id.is_(None),
                   sa.or_(b.c.project.is_(None), b.c.project == project) if project else b.c.project.is_(None)]
        for budget in c.execute(sa.select(b).where(*applies).order_by(b.c.id).with_for_update()).all():
            spent = self._budget_spent(c, budget, sandbox=sandbox, now=now)
            if spent + usd > budget.limit_usd + 1e-9:
                who = "your" if budget.user_id else "the team's"
                per = {"day": "daily", "month": "monthly", "total": "total"}.get(budget.period, budget.period)
                on = f" for project '{budget.project}'" if budget.project else ""
                kind = " (sandbox spend)" if sandbox else ""
                raise BudgetExceeded(
                    f"stopped before a ${usd:.3f} request: {who} {per} budget{on} of ${budget.limit_usd:.2f} has "
                    f"${spent:.3f} spent or in flight{kind}",
                    budget_usd=budget.limit_usd, needed_usd=spent + usd,
                )

    @staticmethod
    def _budget_spent(c: sa.Connection, budget: Any, *, sandbox: bool, now: float) -> float:
        where = [Q.c.team_id == budget.team_id, Q.c.sandbox == int(sandbox),
                 Q.c.reserved_at >= window_start(budget.period, now)]
        if budget.user_id:
            where.append(Q.c.user_id == budget.user_id)
        if budget.project:
            where.append(Q.c.run_id.in_(sa.select(U.c.id).where(U.c.project == budget.project,
                                                                 U.c.team_id == budget.team_id)))
        if budget.period == "total":
            where.pop(2)
        value = c.execute(sa.select(sa.func.coalesce(
            sa.func.sum(sa.func.coalesce(Q.c.charged_usd, 0) + Q.c.reserved_usd), 0)).where(*where)).scalar()
        return float(value or 0.0)

    def settle(self, request_id: str, charged: Cost | None) -> bool:
        """What the provider charged for the request's latest attempt (None: unknown yet, keep the
        reservation). Exactly once per attempt: a second settle of the same attempt changes nothing
        and returns False."""
        if charged is None:
            return False
        with self._write() as c:
            done = c.execute(Q.update().where(
                Q.c.id == request_id,
                sa.or_(Q.c.settled_attempt.is_(None), Q.c.settled_attempt < Q.c.attempts),
            ).values(
                charged_usd=sa.func.coalesce(Q.c.charged_usd, 0) + charged.usd,
                charged_credits=sa.func.coalesce(Q.c.charged_credits, 0) + charged.credits,
                reserved_usd=0, settled_attempt=Q.c.attempts, updated_at=time.time(),
            ))
            return bool(done.rowcount == 1)

    def set_request_status(self, request_id: str, status: RequestStatus, error: str | None = None) -> None:
        with self._write() as c:
            c.execute(Q.update().where(Q.c.id == request_id).values(status=status, error=error, updated_at=time.time()))

    def request_status(self, request_id: str) -> str | None:
        with self._read() as c:
            return c.execute(sa.select(Q.c.status).where(Q.c.id == request_id)).scalar()

    def record_accepted(self, ticket: Ticket) -> None:
        """The provider accepted (and will charge for) the request: remember its task."""
        with self._write() as c:
            c.execute(Q.update().where(Q.c.id == ticket.request_id).values(
                status="accepted", task_id=ticket.task_id, ticket_json=ticket.model_dump_json(), updated_at=time.time()))

    def spent(self, run_id: str | None = None, *, sandbox: bool | None = False) -> Cost:
        """What providers charged, per request and whatever its outcome (a moderated task a provider
        bills for counts). Every paid operation goes through a request, so nothing else costs money.
        `sandbox=False` (the default) is real money only; True is sandbox spend only; None is both."""
        where: list[Any] = [*self._scope(Q)]
        if run_id:
            where.append(Q.c.run_id == run_id)
        if sandbox is not None:
            where.append(Q.c.sandbox == int(sandbox))
        with self._read() as c:
            row = c.execute(sa.select(sa.func.coalesce(sa.func.sum(Q.c.charged_credits), 0),
                                      sa.func.coalesce(sa.func.sum(Q.c.charged_usd), 0)).where(*where)).first()
        assert row is not None
        return Cost(credits=round(float(row[0]), 4), usd=round(float(row[1]), 6))

    def in_flight(self, run_id: str) -> float:
        """Reserved for requests sent but not settled (their charge is not known yet)."""
        with self._read() as c:
            value = c.execute(sa.select(sa.func.coalesce(sa.func.sum(Q.c.reserved_usd), 0)).where(Q.c.run_id == run_id)).scalar()
        return float(value or 0.0)

    # --- images and results ----------------------------------------------------------------
    def record_image(
        self,
        result: Result,
        *,
        images_dir: Path,
        run_id: str | None,
        request_id: str | None,
        parent_sha256: str | None = None,
        operation: str = "generate",
        operation_details: dict[str, Any] | None = None,
        out_path: Path | None = None,
        width: int | None = None,
        height: int | None = None,
        charge: Cost | None = None,
    ) -> ImageRow:
        """Store the image (content-addressed) and its row in one step; the request becomes 'done'
        and, with `charge`, is settled at what the provider charged in the same transaction.

        `out_path` is where the delivered (labelled) copy of this image lives or will live; the
        ledger does not write it — the engine's delivery step does, and records it with `record_file`.
        """
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(result.media_type, "png")
        sha, path = store_image(images_dir, result.image, ext)
        if width is None:
            from io import BytesIO

            from PIL import Image

            with Image.open(BytesIO(result.image)) as im:
                width, height = im.size
        result_id = new_id("img_")
        now = time.time()
        with self._write() as c:
            team = self.team_id
            if run_id:
                team = c.execute(sa.select(U.c.team_id).where(U.c.id == run_id)).scalar() or team
            self._insert_ignore(c, IMG, {"sha256": sha, "path": str(path), "width": width, "height": height,
                                       "format": ext, "created_at": now}, ["sha256"])
            c.execute(R.insert().values(
                id=result_id, run_id=run_id, request_id=request_id, image_sha256=sha, parent_sha256=parent_sha256,
                operation=operation, operation_json=dump_json(operation_details), model=result.model,
                provider=result.provider, seed=result.seed, provider_task_id=result.provider_task_id,
                cost_credits=result.cost.credits, cost_usd=result.cost.usd, timings_json=dump_json(result.timings),
                metadata_json=dump_json(result.metadata), versions_json=dump_json(result.versions),
                sandbox=int(result.sandbox), out_path=str(out_path) if out_path else None, created_at=now,
                created_by=self.user_id, team_id=team,
            ))
            if request_id and charge is not None:
                c.execute(Q.update().where(Q.c.id == request_id).values(
                    status="done", error=None, charged_usd=sa.func.coalesce(Q.c.charged_usd, 0) + charge.usd,
                    charged_credits=sa.func.coalesce(Q.c.charged_credits, 0) + charge.credits, reserved_usd=0,
                    settled_attempt=Q.c.attempts, updated_at=now,
                ))
            elif request_id:
                c.execute(Q.update().where(Q.c.id == request_id).values(status="done", error=None, updated_at=now))
        return self.image(result_id)

    def _upsert_dialect(self) -> Any:
        """The dialect module with INSERT … ON CONFLICT for this database. Only that one is imported:
        importing PostgreSQL's as well costs a SQLite studio 0.1 s on the first image recorded."""
        import importlib

        return importlib.import_module("sqlalchemy.dialects." + ("postgresql" if self.dialect == "postgresql" else "sqlite"))

    def _insert_ignore(self, c: sa.Connection, table: sa.Table, values: dict[str, Any], keys: Sequence[str]) -> None:
        c.execute(self._upsert_dialect().insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys)))

    def _one_image(self, *where: Any, order: Sequence[Any] = ()) -> ImageRow | None:
        with self._read() as c:
            row = c.execute(_image_select().where(*where, *self._scope(R)).order_by(*order).limit(1)).first()
        return _image_row(row) if row else None

    def derived_from_request(self, request_id: str, operation: str) -> ImageRow | None:
        """The derivative (fix composite, upscale …) a finishing step made from a request's result."""
        return self._one_image(R.c.request_id == request_id, R.c.operation == operation, order=[R.c.created_at.desc()])

    def derived_in_run(self, run_id: str, operation: str) -> ImageRow | None:
        return self._one_image(R.c.run_id == run_id, R.c.operation == operation, order=[R.c.created_at.desc()])

    def result_for_request(self, request_id: str) -> ImageRow | None:
        """What the provider delivered for the request (its first recorded result)."""
        return self._one_image(R.c.request_id == request_id, order=[R.c.created_at])

    # --- files the studio wrote ---------------------------------------------------------------
    def record_file(self, path: str | Path, sha256: str, result_id: str, *, kind: str = "output", labelled: bool = False) -> None:
        """Remember a file the studio wrote (a labelled run-folder copy, an export, a fix): any of its
        paths or hashes leads back to its image, so lineage never breaks on a copy."""
        dialect = self._upsert_dialect()
        values = {"path": str(Path(path).resolve()), "sha256": sha256, "result_id": result_id, "kind": kind,
                  "labelled": int(labelled), "created_at": time.time(), "created_by": self.user_id}
        stmt = dialect.insert(s.files).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["path"], set_={
            k: stmt.excluded[k] for k in ("sha256", "result_id", "kind", "labelled", "created_at", "created_by")})
        with self._write() as c:
            c.execute(stmt)

    def _visible_files(self) -> list[Any]:
        team = self.team_id
        return [s.files.c.result_id.in_(sa.select(R.c.id).where(R.c.team_id == team))] if team else []

    def file(self, path: str | Path) -> dict[str, Any] | None:
        with self._read() as c:
            row = c.execute(sa.select(s.files).where(s.files.c.path == str(Path(path).resolve()),
                                                     *self._visible_files())).first()
        return _plain(row) if row else None

    def files_for(self, result_id: str) -> list[dict[str, Any]]:
        """The files written for an image (labelled copies first, newest first)."""
        f = s.files
        with self._read() as c:
            rows = c.execute(sa.select(f).where(f.c.result_id == result_id, *self._visible_files())
                             .order_by(f.c.labelled.desc(), f.c.created_at.desc())).all()
        return [_plain(r) for r in rows]

    def is_studio_output(self, path: str | Path) -> bool:
        """True for files the studio wrote as outputs (recorded files, stored images, run files)."""
        resolved = str(Path(path).resolve())
        with self._read() as c:
            if c.execute(sa.select(sa.literal(1)).where(s.files.c.path == resolved, *self._visible_files())).first():
                return True
            stored = sa.select(sa.literal(1)).select_from(IMG.join(R, R.c.image_sha256 == IMG.c.sha256)).where(
                IMG.c.path == resolved, *self._scope(R)) if self.team_id else sa.select(sa.literal(1)).where(IMG.c.path == resolved)
            return c.execute(stored).first() is not None

    # --- the gallery's reads ------------------------------------------------------------------
    def image(self, ref: str) -> ImageRow:
        """An image by result id, sha256 (of the stored original or of any file the studio wrote from
        it), a unique prefix of an id or hash, or the path of a file the studio wrote."""
        ref = str(ref).strip()
        if not ref:
            raise LedgerError("no image given", hint="use an id or sha256 prefix from 'portrait log'")
        f = s.files
        scope = self._scope(R)
        with self._read() as c:
            exact = c.execute(_image_select().where(R.c.id == ref, *scope)).first()
            if exact is not None:  # the common case: an id from the log or the gallery, no table scan
                return _image_row(exact)
            rows: Sequence[Any] = []
            resolved = str(Path(ref).resolve()) if ("/" in ref or "." in ref) else None
            if resolved:
                rows = c.execute(_image_select().where(
                    sa.or_(R.c.id.in_(sa.select(f.c.result_id).where(f.c.path == resolved)), R.c.out_path == ref,
                           IMG.c.path == resolved), *scope).order_by(R.c.created_at.desc())).all()
            if not rows and len(ref) >= 6 and all(ch.isalnum() or ch == "_" for ch in ref):
                rows = c.execute(_image_select().where(
                    sa.or_(_prefix(R.c.image_sha256, ref), _prefix(R.c.id, ref),
                           R.c.id.in_(sa.select(f.c.result_id).where(_prefix(f.c.sha256, ref)))),
                    *scope).order_by(R.c.created_at.desc())).all()
        if not rows:
            raise LedgerError(f"no image '{ref}' in the ledger", hint="use an id or sha256 prefix from 'portrait log'")
        if len({r.id for r in rows}) > 1 and len({r.image_sha256 for r in rows}) > 1:
            raise LedgerError(f"'{ref}' matches several images", hint="give more characters of the id or sha256")
        return _image_row(rows[0])

    def image_for_file(self, path: str | Path, sha256: str) -> ImageRow | None:
        """The image a file on disk is (by its recorded path, or by the hash of its bytes)."""
        f = s.files
        return self._one_image(
            sa.or_(R.c.id.in_(sa.select(f.c.result_id).where(sa.or_(f.c.path == str(Path(path).resolve()),
                                                                     f.c.sha256 == sha256))),
                   R.c.image_sha256 == sha256),
            order=[(R.c.operation == "import").asc(), R.c.created_at.desc()],
        )

    def _filters(self, *, run_id: str | None, model: str | None, seed: int | None, picked: bool | None,
                 review: str | None = None) -> list[Any]:
        where: list[Any] = [*self._scope(R)]
        for column, value in ((R.c.run_id, run_id), (R.c.model, model), (R.c.seed, seed)):
            if value is not None:
                where.append(column == value)
        if picked is not None:
            where.append(R.c.picked == int(picked))
        if review == "unreviewed":
            where.append(_review_of(R.c.id).is_(None))
        elif review is not None:
            where.append(_review_of(R.c.id) == review)
        return where

    def images(
        self,
        *,
        run_id: str | None = None,
        model: str | None = None,
        seed: int | None = None,
        picked: bool | None = None,
        check: str | None = None,
        limit: int = 50,
        offset: int = 0,
        include_raw: bool = False,
        review: str | None = None,
    ) -> list[ImageRow]:
        """Images newest first. Raw provider outputs that a finishing step turned into the deliverable
        (an inpaint before its composite) are intermediates, left out unless `include_raw`.
        `review`: 'approved', 'rejected' or 'unreviewed' (the latest decision)."""
        where = self._filters(run_id=run_id, model=model, seed=seed, picked=picked, review=review)
        if not include_raw:
            where.append(R.c.operation != "raw")
        query = _image_select().where(*where)
        if check is not None:
            inner = query.subquery("i")
            query = sa.select(inner).where(inner.c.check_overall == check).order_by(inner.c.created_at.desc())
        else:
            query = query.order_by(R.c.created_at.desc())
        with self._read() as c:
            rows = c.execute(query.limit(limit).offset(offset)).all()
        return [_image_row(r) for r in rows]

    def gallery(
        self, *, run_id: str | None, model: str | None, seed: int | None, check: str | None, picked: bool | None,
        limit: int, offset: int, review: str | None = None,
    ) -> tuple[list[ImageRow], int]:
        """One page of images, newest first, and the total matching (the gallery's query).
        `review`: 'approved', 'rejected' or 'unreviewed'."""
        where = [R.c.operation != "raw", *self._filters(run_id=run_id, model=model, seed=seed, picked=picked, review=review)]
        if check is not None:
            k = s.checks.alias("k")
            latest = (sa.select(k.c.overall).where(k.c.image_sha256 == R.c.image_sha256)
                      .order_by(k.c.created_at.desc()).limit(1).scalar_subquery())
            where.append(latest.is_(None) if check == "unchecked" else latest == check)
        with self._read() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(R).where(*where)).scalar()
            rows = c.execute(_image_select().where(*where)
                             .order_by(R.c.created_at.desc(), R.c.id).limit(limit).offset(offset)).all()
        return [_image_row(r) for r in rows], int(total or 0)

    def run_choices(self, limit: int = 200) -> list[tuple[str, str]]:
        """(run id, label) of recent runs, for filters."""
        with self._read() as c:
            rows = c.execute(sa.select(U.c.id, U.c.kind, U.c.name).where(*self._scope(U))
                             .order_by(U.c.created_at.desc()).limit(limit)).all()
        return [(r[0], f"{r[2] or r[1]} · {r[0][-6:]}") for r in rows]

    def models_used(self) -> list[str]:
        with self._read() as c:
            rows = c.execute(sa.select(Q.c.model).where(*self._scope(Q)).distinct().order_by(Q.c.model)).all()
        return [r[0] for r in rows if r[0]]

    def result_ids(self, run_id: str) -> list[str]:
        with self._read() as c:
            rows = c.execute(sa.select(R.c.id).where(R.c.run_id == run_id, R.c.operation != "raw", *self._scope(R))
                             .order_by(R.c.created_at)).all()
        return [r[0] for r in rows]

    def neighbours(self, image: ImageRow) -> tuple[str | None, str | None]:
        """(newer, older) image ids around `image` in the gallery's order."""
        at, rid = image.created_at, image.id
        with self._read() as c:
            newer = c.execute(sa.select(R.c.id).where(
                sa.or_(R.c.created_at > at, sa.and_(R.c.created_at == at, R.c.id < rid)), *self._scope(R))
                .order_by(R.c.created_at, R.c.id.desc()).limit(1)).scalar()
            older = c.execute(sa.select(R.c.id).where(
                sa.or_(R.c.created_at < at, sa.and_(R.c.created_at == at, R.c.id > rid)), *self._scope(R))
                .order_by(R.c.created_at.desc(), R.c.id).limit(1)).scalar()
        return newer, older

    def lineage(self, sha256: str) -> list[ImageRow]:
        """The image and its ancestors, newest first (fix → upscale chains)."""
        chain: list[ImageRow] = []
        current: str | None = sha256
        while current and len(chain) < 50:
            row = self.image(current)
            chain.append(row)
            current = row.parent_sha256
        return chain

    def children(self, sha256: str) -> list[ImageRow]:
        with self._read() as c:
            rows = c.execute(_image_select().where(R.c.parent_sha256 == sha256, *self._scope(R))
                             .order_by(R.c.created_at)).all()
        return [_image_row(r) for r in rows]

    def pick(self, run_id: str, image_ref: str) -> ImageRow:
        if self.actor is not None:
            self.actor.require("review")
        row = self.image(image_ref)
        if row.run_id != run_id:
            raise LedgerError(f"image {row.id} is not part of run {run_id}", hint="pick an image of that run")
        with self._write() as c:
            c.execute(R.update().where(R.c.run_id == run_id).values(picked=0))
            c.execute(R.update().where(R.c.id == row.id).values(picked=1, picked_by=self.user_id))
        return self.image(row.id)

    def picked(self, run_id: str) -> ImageRow | None:
        rows = self.images(run_id=run_id, picked=True, limit=1)
        return rows[0] if rows else None

    # --- checks, labels, rights, identity --------------------------------------------------
    def _sha_visible(self, c: sa.Connection, sha256: str) -> bool:
        """A team sees facts about an image (checks, labels) only when one of its results is that image."""
        if not self.team_id:
            return True
        return c.execute(sa.select(sa.literal(1)).where(R.c.image_sha256 == sha256, *self._scope(R)).limit(1)).first() is not None

    def record_checks(self, sha256: str, overall: str, score: float | None, checklist: dict[str, Any]) -> None:
        with self._write() as c:
            c.execute(s.checks.insert().values(image_sha256=sha256, overall=overall, score=score,
                                               checklist_json=dump_json(checklist), created_at=time.time(),
                                               created_by=self.user_id))

    def checks(self, sha256: str) -> dict[str, Any] | None:
        k = s.checks
        with self._read() as c:
            if not self._sha_visible(c, sha256):
                return None
            text = c.execute(sa.select(k.c.checklist_json).where(k.c.image_sha256 == sha256)
                             .order_by(k.c.created_at.desc()).limit(1)).scalar()
        return load_json(text) if text else None

    def record_label(self, sha256: str, info: dict[str, Any], c2pa_status: str | None) -> None:
        with self._write() as c:
            c.execute(s.labels.insert().values(image_sha256=sha256, info_json=dump_json(info), c2pa_status=c2pa_status,
                                               created_at=time.time(), created_by=self.user_id))

    def label(self, sha256: str) -> dict[str, Any] | None:
        lb = s.labels
        with self._read() as c:
            if not self._sha_visible(c, sha256):
                return None
            row = c.execute(sa.select(lb.c.info_json, lb.c.c2pa_status).where(lb.c.image_sha256 == sha256)
                            .order_by(lb.c.created_at.desc()).limit(1)).first()
        return {"info": load_json(row[0]), "c2pa_status": row[1]} if row else None

    def record_rights(self, image_sha256: str, who: str, source: str, permission: str, recorded_by: str | None = None) -> str:
        rights_id = new_id("rights_")
        if recorded_by is None and self.actor is not None:
            recorded_by = self.actor.label
        with self._write() as c:
            c.execute(s.rights.insert().values(
                id=rights_id, image_sha256=image_sha256, who=who, source=source, permission=permission,
                recorded_by=recorded_by, recorded_at=time.time(), user_id=self.user_id, team_id=self.team_id))
        return rights_id

    def rights_for(self, image_sha256: str) -> dict[str, Any] | None:
        """The latest rights record for exactly these bytes (a team's records are its own)."""
        rt = s.rights
        with self._read() as c:
            row = c.execute(sa.select(rt).where(rt.c.image_sha256 == image_sha256, *self._scope(rt))
                            .order_by(rt.c.recorded_at.desc()).limit(1)).first()
        return _plain(row) if row else None

    def record_identity(
        self, run_id: str, shot: int, image_sha256: str | None, distance: float | None, status: str,
        reset_applied: bool = False, details: dict[str, Any] | None = None,
    ) -> None:
        with self._write() as c:
            c.execute(s.identity.insert().values(
                run_id=run_id, image_sha256=image_sha256, shot=shot, distance=distance, status=status,
                reset_applied=int(reset_applied), details_json=dump_json(details), created_at=time.time()))

    def has_identity(self, run_id: str, shot: int, image_sha256: str, step: str) -> bool:
        d = s.identity
        with self._read() as c:
            rows = c.execute(sa.select(d.c.details_json).where(d.c.run_id == run_id, d.c.shot == shot,
                                                               d.c.image_sha256 == image_sha256)).all()
        return any((load_json(r[0]) or {}).get("step") == step for r in rows)

    def identity(self, run_id: str) -> list[dict[str, Any]]:
        d = s.identity
        if self.team_id:
            self.run(run_id)  # another team's run is not found
        with self._read() as c:
            rows = c.execute(sa.select(d).where(d.c.run_id == run_id).order_by(d.c.shot, d.c.created_at)).all()
        return [{**_plain(r), "details": load_json(r.details_json)} for r in rows]
