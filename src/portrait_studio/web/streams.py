"""Live progress over server-sent events, cheap enough to leave a thousand tabs open.

Why it is shaped this way: every open stream used to read the ledger four times a second for
ever, so idle tabs on runs that will never finish (a killed run, a server restart) kept a core
busy. Now streams of one run share one reading per tick, back off while nothing in this server
works on what they watch, send a comment line as a keep-alive, and end: with `event: end` when
the job or run is finished, with `event: timeout` (and the reason) when nothing has changed for
`idle_timeout_s` while nothing here works on it, or after `max_age_s` in any case. The page
then says so and the user reloads; a stream never runs on unwatched.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..errors import StudioError

__all__ = ["ProgressStreams", "Snapshot"]

Snapshot = Callable[[], tuple[dict[str, Any], bool]]
"""Reads the current state: (data to send, whether it is finished)."""


class ProgressStreams:
    """All SSE progress streams of one app: shared readings, back-off, keep-alives and time limits."""

    def __init__(self, *, poll_s: float = 0.25, idle_poll_s: float = 2.0, keepalive_s: float = 15.0,
                 idle_timeout_s: float = 300.0, max_age_s: float = 3600.0, max_streams: int = 512) -> None:
        self.poll_s, self.idle_poll_s, self.keepalive_s = poll_s, idle_poll_s, keepalive_s
        self.idle_timeout_s, self.max_age_s, self.max_streams = idle_timeout_s, max_age_s, max_streams
        self.open = 0
        self._watchers: dict[str, int] = {}
        self._cache: dict[str, tuple[float, str, bool]] = {}
        self._pending: dict[str, asyncio.Future[tuple[str, bool]]] = {}

    async def _read(self, key: str, snapshot: Snapshot) -> tuple[str, bool]:
        """The newest reading of `key`, taken at most once per `poll_s` however many streams watch it."""
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.poll_s:
            return cached[1], cached[2]
        pending = self._pending.get(key)
        if pending is None:
            async def take() -> tuple[str, bool]:
                try:
                    data, finished = await run_in_threadpool(snapshot)
                    text = json.dumps(data, default=str)
                    self._cache[key] = (time.monotonic(), text, finished)
                    return text, finished
                finally:
                    self._pending.pop(key, None)

            pending = self._pending[key] = asyncio.ensure_future(take())
        return await asyncio.shield(pending)  # one client leaving must not cancel the others' reading

    def response(self, key: str, snapshot: Snapshot, live: Callable[[], bool]) -> Response:
        """The stream for `key`. `live()` says whether something in this server is working on it."""
        if self.open >= self.max_streams:
            return JSONResponse({"error": f"{self.open} progress streams are already open",
                                 "hint": "close some studio tabs; the page shows the state on reload"}, status_code=503)
        return StreamingResponse(self._stream(key, snapshot, live), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _stream(self, key: str, snapshot: Snapshot, live: Callable[[], bool]) -> AsyncIterator[str]:
        started = changed_at = sent_at = time.monotonic()
        last = None
        delay = self.poll_s
        self.open += 1  # counted here, not in `response`: a stream the client dropped before it began never runs
        self._watchers[key] = self._watchers.get(key, 0) + 1
        try:
            while True:
                try:
                    text, finished = await self._read(key, snapshot)
                except StudioError as exc:  # the run or job went away under us: say so and stop
                    yield f"event: timeout\ndata: {json.dumps({'reason': exc.message})}\n\n"
                    return
                now = time.monotonic()
                if text != last:
                    yield f"data: {text}\n\n"
                    last, changed_at, sent_at, delay = text, now, now, self.poll_s
                if finished:
                    yield "event: end\ndata: {}\n\n"
                    return
                working = live()
                reason = None
                if now - started >= self.max_age_s:
                    reason = f"this progress stream ran {self.max_age_s / 60:g} min; reload the page to follow on"
                elif not working and now - changed_at >= self.idle_timeout_s:
                    reason = ("nothing in this studio server is working on it and nothing changed for "
                              f"{self.idle_timeout_s:g} s; if it was interrupted, 'portrait resume' finishes it")
                if reason:
                    yield f"event: timeout\ndata: {json.dumps({'reason': reason})}\n\n"
                    return
                if now - sent_at >= self.keepalive_s:
                    yield ": keep-alive\n\n"
                    sent_at = now
                delay = self.poll_s if working else min(self.idle_poll_s, delay * 2)
                await asyncio.sleep(delay)
        finally:
            self.open -= 1
            self._watchers[key] -= 1
            if not self._watchers[key]:  # nobody watches it any more: forget its reading
                del self._watchers[key]
                self._cache.pop(key, None)
