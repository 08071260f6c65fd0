"""A small client for a team studio's web API, for scripts and `portrait remote`: for people who reach the
studio's server but not its database.

    client = StudioClient("https://studio.acme.test", token="pst_…")
    started = client.shoot(brief, ["flux-1.1-pro"], seeds=3, project="spring")
    job = client.wait(started["job_id"])

Every answer that is not a success becomes the error the server named (401 → LoginRequired,
403 → Forbidden, 404 → LedgerError, 402 → BudgetExceeded, 409 → NotApproved, 429 → TooManyAttempts,
others → StudioError), with the server's hint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from .errors import (
    BudgetExceeded,
    Forbidden,
    LedgerError,
    LoginRequired,
    NotApproved,
    StudioError,
    TooManyAttempts,
    UsageError,
)

__all__ = ["StudioClient"]


class StudioClient:
    def __init__(self, server: str, token: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        if not server.startswith(("http://", "https://")):
            raise UsageError(f"'{server}' is not a studio address", field="server", hint="use https://studio.example.com")
        if not token:
            raise LoginRequired("no API token for the studio server",
                                hint="ask an owner for one ('portrait team token create') and set token in config.toml")
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, timeout=timeout, transport=transport,
                                  headers={"authorization": f"Bearer {token}", "accept": "application/json",
                                           "user-agent": "portrait-studio"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            res = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise StudioError(f"cannot reach the studio at {self.server}: {exc}",
                              hint="check the server address (server in config.toml) and that it is running") from None
        try:
            data = res.json()
        except ValueError:
            data = {"error": res.text[:200] or res.reason_phrase}
        if res.is_success:
            return data
        message, hint = str(data.get("error") or res.reason_phrase), data.get("hint")
        if res.status_code == 401:
            raise LoginRequired(message, hint=hint)
        if res.status_code == 403:
            raise Forbidden(message, hint=hint)
        if res.status_code == 404:
            raise LedgerError(message, hint=hint)
        if res.status_code == 409:
            raise NotApproved(message, hint=hint)
        if res.status_code == 429:
            raise TooManyAttempts(message, retry_after=float(res.headers.get("retry-after", "60")), hint=hint)
        if res.status_code == 402:
            raise BudgetExceeded(message, budget_usd=0.0, needed_usd=0.0)
        raise StudioError(f"{message} (HTTP {res.status_code})", hint=hint)

    # --- the API -------------------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", "/api/me")
        return found

    def shoot(self, brief: dict[str, Any], models: list[str], *, seeds: int | None = None, seed: int | None = None,
              kind: str = "shoot", project: str | None = None, budget: float | None = None,
              sandbox: str = "auto") -> dict[str, Any]:
        body = {"brief": brief, "models": models, "kind": kind, "seeds": seeds, "seed": seed, "budget": budget,
                "sandbox": sandbox, "project": project}
        started: dict[str, Any] = self._call("POST", "/api/shoot", body)
        return started

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/api/jobs/{job_id}")
        return found

    def jobs(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/api/jobs")
        return found

    def wait(self, job_id: str, *, timeout: float = 3600.0, every: float = 0.5,
             on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll the job until it is done or failed; returns its last state."""
        end = time.monotonic() + timeout
        last = None
        while True:
            job = self.job(job_id)
            if on_update is not None and job != last:
                on_update(job)
            last = job
            if job["status"] in ("done", "failed") or time.monotonic() > end:
                return job
            time.sleep(every)

    def progress(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/api/runs/{run_id}/progress")
        return found

    def review(self, image_id: str, decision: str, comment: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", f"/api/images/{image_id}/review",
                                           {"decision": decision, "comment": comment})
        return found

    def export_approved(self, run_id: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", "/api/exports/approved", {"run_id": run_id})
        return found
