"""How far a long step has come and how long it has left: one model for the CLI and the web.

A `Tracker` is fed "done out of total" (tiles upscaled, images checked, diffusion steps, images
of a run) and says what a user wants to know: done/total, elapsed time and an ETA. The ETA
counts only work done while watching (a resumed run's earlier images took no time now), and
follows the recent pace so a slow first item (a model loading) does not skew it for long.
Surfaces render a `ProgressState`; they never estimate on their own, so the terminal and the
browser show the same numbers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

__all__ = ["ProgressState", "Tracker", "estimate_eta", "format_duration"]

_SMOOTHING = 0.3
"""Weight of the newest pace in the running average (exponential smoothing)."""


class ProgressState(BaseModel):
    """A snapshot a surface can render or send as JSON."""

    model_config = ConfigDict(frozen=True)

    label: str
    done: int
    total: int | None
    elapsed_s: float
    eta_s: float | None
    unit: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total

    def describe(self) -> str:
        """'3/8 tiles · 12 s · about 20 s left' (the same words in the terminal and the browser)."""
        parts = [f"{self.done}/{self.total}" if self.total else str(self.done)]
        if self.unit:
            parts[0] += f" {self.unit}"
        parts.append(format_duration(self.elapsed_s))
        if self.finished:
            parts.append("done")
        elif self.eta_s is not None:
            parts.append(f"about {format_duration(self.eta_s)} left")
        return " · ".join(parts)


def estimate_eta(done_now: int, remaining: int, elapsed_s: float) -> float | None:
    """Seconds left at the average pace so far; None until something was done while watching."""
    if remaining <= 0:
        return 0.0
    if done_now <= 0 or elapsed_s <= 0:
        return None
    return remaining * elapsed_s / done_now


def format_duration(seconds: float) -> str:
    """7 s, 1 min 05 s, 2 h 03 min: coarse enough to read at a glance."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Tracker:
    """Thread-safe progress of one step. Feed it `update(done, total)`; read `state()`."""

    def __init__(self, label: str, total: int | None = None, *, done: int = 0, unit: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._baseline = done  # already done before we started watching
        self._done = done
        self._last_t = self._start
        self._last_done = done
        self._pace: float | None = None  # seconds per item, smoothed

    def update(self, done: int, total: int | None = None) -> ProgressState:
        with self._lock:
            if total is not None:
                self.total = total
            now = self._clock()
            if done > self._last_done:
                pace = (now - self._last_t) / (done - self._last_done)
                self._pace = pace if self._pace is None else (1 - _SMOOTHING) * self._pace + _SMOOTHING * pace
                self._last_t, self._last_done = now, done
            self._done = max(self._done, done)
            return self._state(now)

    def advance(self, n: int = 1) -> ProgressState:
        return self.update(self._done + n)

    def state(self) -> ProgressState:
        with self._lock:
            return self._state(self._clock())

    def _state(self, now: float) -> ProgressState:
        elapsed = now - self._start
        eta: float | None = None
        if self.total is not None:
            remaining = self.total - self._done
            if remaining <= 0:
                eta = 0.0
            elif self._pace is not None:
                # the smoothed pace, less the time already spent on the item in hand
                eta = max(0.0, remaining * self._pace - (now - self._last_t))
            else:
                eta = estimate_eta(self._done - self._baseline, remaining, elapsed)
        return ProgressState(label=self.label, done=self._done, total=self.total, elapsed_s=round(elapsed, 3),
                             eta_s=None if eta is None else round(eta, 3), unit=self.unit)
