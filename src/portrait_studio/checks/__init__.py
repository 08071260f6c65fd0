"""The final checklist: eyes, skin, mouth, hands, lighting, background, export.

`run_checklist(image)` analyses the image once (`portrait_studio.analysis`) and runs every
check on that shared analysis. Each check returns `CheckResult`s with the measured value,
the threshold, a sentence of explanation and the region of evidence; the `Checklist` adds
an overall status and a score for ranking candidates (unchanged). Items listed in `WARN_ONLY`
(validation precision below 0.8, see docs/checklist.md) warn instead of failing and say why.
`warm_up()` starts loading the models in the background so the first check does not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import CheckContext, Checklist, CheckResult, Status, worst

__all__ = ["CHECKS", "WARN_ONLY", "CheckContext", "CheckResult", "Checklist", "Status", "run_checklist", "score",
           "warm_up"]

CheckFn = Callable[[np.ndarray, Any, CheckContext], "CheckResult | list[CheckResult]"]


def _checks() -> list[CheckFn]:
    from .background import check_background
    from .export import check_export
    from .eyes import check_eyes
    from .hands import check_hands
    from .lighting import check_lighting
    from .mouth import check_mouth
    from .skin import check_skin

    return [check_eyes, check_skin, check_mouth, check_hands, check_lighting, check_background, check_export]


CHECKS = ("eyes", "skin", "mouth", "hands", "lighting", "background", "export")

WARN_ONLY: dict[str, str] = {
    "background.artifacts": "its precision on the validation split is 0.51, below 0.8",
    "eyes.catchlights": "its precision on the validation split is 0.28, below 0.8 (clean photos lit "
                        "without a frontal light have no catchlight)",
    "eyes.pupils": "its precision on the validation split is 0.25, below 0.8",
    "export.sharpening": "its precision on the validation split is 0.76, below 0.8 (press photos are "
                         "sharpened already)",
    "hands.fingers": "its precision on the validation split is 0.00, below 0.8",
    "hands.pose": "its precision on the validation split is 0.00 (no defect tests it), below 0.8",
    "skin.tone": "its precision on the validation split is 0.62, below 0.8",
}
"""Items that warn instead of failing, and why (measured by bench/bench_checks.py on the validation
split): an item fails only once its validation precision is at least 0.8 and clean photos pass it."""


def warm_up(ocr: bool = True, ocr_engines: int | None = None) -> None:
    """Start loading the checklist's models (mediapipe, OCR) in a background thread; return at once.

    Call it when a run starts, while the provider works: the first check then waits for the
    loads in flight instead of starting its own. Before checking photos one at a time, the OCR
    loads while the first photo's faces are analysed (`ocr_engines=1`: one is all they use).
    Safe to call any number of times."""
    from ..analysis import warm_up as _warm

    _warm(ocr=ocr, ocr_engines=ocr_engines)


def _soften(it: CheckResult) -> CheckResult:
    if it.item not in WARN_ONLY or it.status != "fail":
        return it
    return it.model_copy(update={
        "status": "warn",
        "explanation": it.explanation + f" This item warns instead of failing: {WARN_ONLY[it.item]}.",
    })


THROUGH_OVERLAY = ("eyes.sharpness",)
"""Items that compare the face's own detail (the eye's edges against the skin's): an overlay laid
across the face adds its letters' edges to one side of the ratio, so their fail is not evidence."""


def _through_overlay(items: list[CheckResult], face: Any) -> list[CheckResult]:
    """When the text item fails on an overlay line that lies across the face, the detail measures taken
    through it warn instead of failing (the image fails on the overlay anyway, and the fix is to
    remove it and check again)."""
    text = next((it for it in items if it.item == "background.text" and it.status == "fail" and it.region), None)
    if text is None or face is None:
        return items
    lines = text.parts or ([text.region] if text.region else [])
    if not any(x1 > face[0] and x0 < face[2] and y1 > face[1] and y0 < face[3] for x0, y0, x1, y1 in lines):
        return items  # a caption or a credit beside the face: the face's own detail is untouched
    return [it.model_copy(update={
        "status": "warn",
        "explanation": it.explanation + " An overlay (text or a watermark) lies across the face, so this was "
                       "measured through it: it warns instead of failing; remove the overlay and check again.",
    }) if it.item in THROUGH_OVERLAY and it.status == "fail" else it for it in items]


def score(items: list[CheckResult]) -> float:
    """0-100 for ranking: share of applicable items passed (warn counts half), minus 5 per failure."""
    applicable = [it for it in items if it.status != "not_applicable"]
    if not applicable:
        return 100.0
    value = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
    base = 100.0 * sum(value[it.status] for it in applicable) / len(applicable)
    return round(max(0.0, base - 5.0 * sum(it.status == "fail" for it in applicable)), 2)


def run_checklist(
    image: Image.Image | np.ndarray | str | Path,
    context: CheckContext | None = None,
    analysis: Any = None,
) -> Checklist:
    """Run every check on `image` (a path keeps its metadata for the export checks)."""
    from ..analysis import analyze

    t0 = time.perf_counter()
    context = context or CheckContext()
    if analysis is None:
        analysis = analyze(image)
    items: list[CheckResult] = []
    for check in _checks():
        out = check(analysis.rgb, analysis, context)
        items.extend(_soften(it) for it in (out if isinstance(out, list) else [out]))
    items = _through_overlay(items, analysis.face.box if analysis.face is not None else None)
    h, w = analysis.shape
    return Checklist(
        image=str(analysis.source) if analysis.source else None,
        width=w,
        height=h,
        items=items,
        overall=worst([it.status for it in items]),
        score=score(items),
        seconds=round(time.perf_counter() - t0, 3),
    )


