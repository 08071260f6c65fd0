"""The one ranking rule for a run's candidates: the CLI table, the contact sheet and the web agree.

    1. higher checklist score first (images not checked yet come after every checked one);
    2. on a tie, the better checklist verdict: pass, then warn, then fail;
    3. still tied, the image made first (so re-running a view never reshuffles equal images);
    4. finally the image id, so the order is total and the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

__all__ = ["RULE", "VERDICT_ORDER", "rank", "rank_key"]

RULE = "ranked by checklist score; ties: better verdict, then made first"
"""The rule in one line, printed under tables and on contact sheets."""

VERDICT_ORDER = {"pass": 0, "warn": 1, "fail": 2}
"""Better verdicts first; anything else (not checked, not applicable) after fail."""


class Rankable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def check_score(self) -> float | None: ...
    @property
    def check_overall(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...


R = TypeVar("R", bound=Rankable)


def rank_key(image: Rankable) -> tuple[Any, ...]:
    score = image.check_score
    unscored = score is None or not math.isfinite(score)
    return (unscored, 0.0 if unscored else -float(score),  # type: ignore[arg-type]
            VERDICT_ORDER.get(image.check_overall or "", len(VERDICT_ORDER)), image.created_at, image.id)


def rank(images: Iterable[R]) -> list[R]:
    """The images best first, by the rule above."""
    return sorted(images, key=rank_key)
