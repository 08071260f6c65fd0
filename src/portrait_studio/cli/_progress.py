"""Progress bars on stderr, driven by the library's `progress.Tracker` (the web shows the same numbers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.text import Text

from ..progress import Tracker
from ._common import err_console

__all__ = ["Bar", "progress_bars"]


class Bar:
    """One line of the display: a label, a bar and the tracker's 'done/total · elapsed · ETA'."""

    def __init__(self, view: Progress, label: str, total: int | None, done: int, unit: str) -> None:
        self.tracker = Tracker(label, total, done=done, unit=unit)
        self._view = view
        self._id: TaskID = view.add_task(label, total=total, completed=done, tracker=self.tracker)

    def update(self, done: int, total: int | None = None) -> None:
        state = self.tracker.update(done, total)
        self._view.update(self._id, completed=state.done, total=state.total)

    def advance(self, n: int = 1) -> None:
        self.update(self.tracker.state().done + n)

    def label(self, text: str) -> None:
        self.tracker.label = text
        self._view.update(self._id, description=text)


class _Bars:
    def __init__(self, view: Progress) -> None:
        self.view = view
        self.console = view.console

    def bar(self, label: str, total: int | None = None, *, done: int = 0, unit: str = "") -> Bar:
        return Bar(self.view, label, total, done, unit)


class _StatusColumn(TextColumn):
    """'3/8 tiles · 12 s · about 20 s left', re-read at every refresh so the clock keeps moving."""

    def render(self, task: Any) -> Text:
        tracker = task.fields.get("tracker")
        return Text(tracker.state().describe() if tracker else "", style="dim")


def _stdout_is_a_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress_bars(*, quiet: bool = False) -> Iterator[_Bars]:
    """A live display on stderr (nothing when `quiet`, e.g. with --json); labels shown verbatim."""
    # stdout printed meanwhile goes above the bars when it is the same terminal, straight out when piped
    view = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(bar_width=24),
                    _StatusColumn(""), console=err_console, disable=quiet, transient=False,
                    redirect_stdout=_stdout_is_a_terminal())
    with view:
        yield _Bars(view)
