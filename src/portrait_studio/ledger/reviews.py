"""Approvals: a reviewer approves or rejects an image, with a comment; the latest decision counts."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ..errors import UsageError
from ..records import new_id
from . import schema as s
from .core import CoreLedger
from .rows import ReviewRow

__all__ = ["DECISIONS", "ReviewsLedger"]

DECISIONS = ("approved", "rejected")


class ReviewsLedger(CoreLedger):
    def review(self, image_ref: str, decision: str, comment: str | None = None) -> ReviewRow:
        """Record a decision on an image (reviewers and owners only; a rejection needs a reason)."""
        if self.actor is not None:
            self.actor.require("review")
        if decision not in DECISIONS:
            raise UsageError(f"'{decision}' is not a decision", field="decision", hint="approved or rejected")
        comment = (comment or "").strip() or None
        if decision == "rejected" and not comment:
            raise UsageError("a rejection needs a comment", field="comment",
                             hint="say what to change, so the producer can fix it (--comment in the CLI)")
        image = self.image(image_ref)
        review_id = new_id("review_")
        with self._write() as c:
            c.execute(s.reviews.insert().values(id=review_id, result_id=image.id, decision=decision, comment=comment,
                                                user_id=self.user_id, team_id=image.team_id or self.team_id,
                                                created_at=time.time()))
        return next(r for r in self.reviews(image.id) if r.id == review_id)

    def reviews(self, image_ref: str) -> list[ReviewRow]:
        """Every decision on the image, newest first, with who made it."""
        image = self.image(image_ref)
        v, u = s.reviews, s.users
        with self._read() as c:
            rows = c.execute(sa.select(v, u.c.email, u.c.name.label("user_name"))
                             .select_from(v.outerjoin(u, u.c.id == v.c.user_id))
                             .where(v.c.result_id == image.id).order_by(v.c.created_at.desc(), v.c.id.desc())).all()
        return [_review_row(r) for r in rows]


def _review_row(r: Any) -> ReviewRow:
    return ReviewRow(id=r.id, result_id=r.result_id, decision=r.decision, comment=r.comment, user_id=r.user_id,
                     reviewer=r.user_name or r.email, created_at=r.created_at)
