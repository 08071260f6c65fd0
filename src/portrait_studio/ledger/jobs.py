"""Background jobs as rows: queued by a request, claimed by one worker at a time under a lease.

A job row holds what to do (`spec`), so any server process behind the database can do it —
including the same server after a restart. Claiming is one conditional UPDATE on the row's
attempt counter (compare-and-swap): of two workers that saw the same queued job, exactly one
gets it. A running job whose lease ran out, or whose holder is gone (`alive`), is claimed
again; the work itself (the engine's `resume`) never pays twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa

from ..errors import LedgerError
from ..records import new_id
from . import schema as s
from .base import LedgerBase, dump_json, load_json
from .rows import JobRow

__all__ = ["MAX_ATTEMPTS", "JobsLedger"]

J = s.jobs
MAX_ATTEMPTS = 5
"""A job whose worker died this many times is failed, not tried again (it may be what kills it)."""


def _job_row(r: Any) -> JobRow:
    m = r._mapping
    return JobRow(**{k: m[k] for k in JobRow.model_fields if k != "spec"}, spec=load_json(m["spec_json"]) or {})


class JobsLedger(LedgerBase):
    def add_job(self, kind: str, title: str, spec: dict[str, Any], *, run_id: str | None = None,
                image_id: str | None = None) -> JobRow:
        job_id = new_id("job_")
        with self._write() as c:
            c.execute(J.insert().values(id=job_id, kind=kind, title=title, spec_json=dump_json(spec), status="queued",
                                        run_id=run_id, image_id=image_id, user_id=self.user_id, team_id=self.team_id,
                                        created_at=time.time()))
        return self.job(job_id)

    def job(self, job_id: str) -> JobRow:
        with self._read() as c:
            row = c.execute(sa.select(J).where(J.c.id == job_id, *self._scope(J))).first()
        if row is None:
            raise LedgerError(f"no job '{job_id}'", hint="see the Jobs page for this team's jobs")
        return _job_row(row)

    def jobs(self, limit: int = 100) -> list[JobRow]:
        with self._read() as c:
            rows = c.execute(sa.select(J).where(*self._scope(J)).order_by(J.c.created_at.desc()).limit(limit)).all()
        return [_job_row(r) for r in rows]

    def job_for_run(self, run_id: str) -> JobRow | None:
        with self._read() as c:
            row = c.execute(sa.select(J).where(J.c.run_id == run_id, *self._scope(J))
                            .order_by(J.c.created_at.desc()).limit(1)).first()
        return _job_row(row) if row else None

    def claim_job(self, owner: str, *, ttl_s: float = 30.0, alive: Callable[[str], bool] | None = None,
                  kinds: Collection[str] | None = None) -> JobRow | None:
        """The oldest job nobody is working on, now leased to `owner`; None when there is none."""
        now = time.time()
        where: list[Any] = [J.c.status.in_(("queued", "running"))]
        if kinds is not None:
            where.append(J.c.kind.in_(list(kinds)))
        with self._read() as c:
            candidates = c.execute(sa.select(J.c.id, J.c.status, J.c.lease_owner, J.c.lease_until, J.c.attempts)
                                   .where(*where).order_by(J.c.created_at).limit(64)).all()
        for cand in candidates:
            if cand.status == "running":
                orphaned = (cand.lease_until or 0) < now or (
                    cand.lease_owner and cand.lease_owner != owner and alive is not None and not alive(cand.lease_owner))
                if not orphaned:
                    continue
            if cand.attempts >= MAX_ATTEMPTS:
                self._give_up(cand.id, cand.attempts)
                continue
            with self._write() as c:
                won = c.execute(J.update().where(J.c.id == cand.id, J.c.attempts == cand.attempts,
                                                 J.c.status.in_(("queued", "running"))).values(
                    status="running", lease_owner=owner, lease_until=now + ttl_s, attempts=J.c.attempts + 1,
                    started_at=sa.func.coalesce(J.c.started_at, now), error=None, hint=None,
                )).rowcount
            if won == 1:
                with self._read() as c:
                    return _job_row(c.execute(sa.select(J).where(J.c.id == cand.id)).one())
        return None

    def _give_up(self, job_id: str, attempts: int) -> None:
        with self._write() as c:
            c.execute(J.update().where(J.c.id == job_id, J.c.attempts == attempts).values(
                status="failed", finished_at=time.time(), lease_owner=None, lease_until=None,
                error=f"the server stopped {attempts} times while working on this job; it is not tried again",
                hint="see the server's log; resume its run with 'portrait resume RUN' once the cause is fixed",
            ))

    def renew_job(self, job_id: str, owner: str, *, ttl_s: float = 30.0) -> bool:
        """Extend the lease; False when `owner` no longer holds it (another worker took it over)."""
        with self._write() as c:
            n = c.execute(J.update().where(J.c.id == job_id, J.c.lease_owner == owner, J.c.status == "running")
                          .values(lease_until=time.time() + ttl_s)).rowcount
        return n == 1

    def update_job(self, job_id: str, owner: str, *, message: str | None = None, run_id: str | None = None) -> None:
        values: dict[str, Any] = {"message": message}
        if run_id is not None:
            values["run_id"] = run_id
        with self._write() as c:
            c.execute(J.update().where(J.c.id == job_id, J.c.lease_owner == owner).values(**values))

    def finish_job(self, job_id: str, owner: str, *, status: str, result_id: str | None = None,
                   error: str | None = None, hint: str | None = None) -> bool:
        """Record the outcome, if `owner` still holds the job (False: another worker owns it now)."""
        with self._write() as c:
            n = c.execute(J.update().where(J.c.id == job_id, J.c.lease_owner == owner).values(
                status=status, result_id=result_id, error=error, hint=hint, finished_at=time.time(),
                lease_owner=None, lease_until=None,
            )).rowcount
        return n == 1

    def release_job(self, job_id: str, owner: str) -> None:
        """Hand an unfinished job back to the queue (a server shutting down cleanly)."""
        with self._write() as c:
            c.execute(J.update().where(J.c.id == job_id, J.c.lease_owner == owner, J.c.status == "running").values(
                status="queued", lease_owner=None, lease_until=None, attempts=J.c.attempts - 1))
