"""The shapes every check shares: what it measured, against what, and where."""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["STATUS_ORDER", "CheckContext", "CheckResult", "Checklist", "Status", "worst"]

Status = Literal["pass", "warn", "fail", "not_applicable"]
STATUS_ORDER: dict[str, int] = {"not_applicable": 0, "pass": 1, "warn": 2, "fail": 3}
Region = list[int]


class CheckResult(BaseModel):
    """One checklist item: never a bare boolean, always the number and where it was measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str
    """Dotted name, e.g. 'eyes.sharpness'."""
    status: Status
    measured: float | None = None
    threshold: float | None = None
    explanation: str
    """One sentence a retoucher understands: what was measured and what it means."""
    region: Region | None = None
    """[x0, y0, x1, y1] in image pixels where the evidence is, if it has a place."""
    parts: list[Region] | None = None
    """The separate places `region` encloses, when there are several (each overlay text line)."""


class CheckContext(BaseModel):
    """What the brief promised, so checks can compare the picture against intent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lighting_pattern: str | None = None
    key_side: Literal["left", "right"] | None = None
    """Side of the key light as seen from the camera."""
    teeth_expected: bool | None = None
    hands_expected: bool | None = None
    target_width: int | None = Field(default=None, gt=0)
    target_height: int | None = Field(default=None, gt=0)
    expected_upscale: float | None = Field(default=None, gt=0)
    """Upscale factor the finishing step applied; export wants 1.5-2x when it is set."""
    require_label: bool = False
    """Fail (not just warn) when the AI label or the prompt/seed record is missing."""

    @classmethod
    def from_brief(cls, brief: Any, **overrides: Any) -> CheckContext:
        """Read lighting, expression and hands from a Brief (or anything with those attributes)."""
        lighting = getattr(brief, "lighting", None)
        pattern = getattr(lighting, "pattern", None)
        key_side = getattr(lighting, "key_side", None)
        expression = getattr(brief, "expression", None)
        hands = getattr(brief, "hands", None)
        teeth = getattr(expression, "teeth_visible", None)
        visible = getattr(hands, "visible", None)
        values: dict[str, Any] = {
            "lighting_pattern": str(getattr(pattern, "value", pattern)).lower() if pattern else None,
            "key_side": str(getattr(key_side, "value", key_side)).lower() if key_side else None,
            "teeth_expected": bool(teeth) if teeth is not None else None,
            "hands_expected": bool(visible) if visible is not None else None,
        }
        if values["key_side"] not in ("left", "right"):
            values["key_side"] = None
        values.update(overrides)
        return cls(**values)


def worst(statuses: list[str]) -> Status:
    """The overall status: the worst applicable status, 'pass' when nothing applied."""
    applicable = [s for s in statuses if s != "not_applicable"]
    if not applicable:
        return "pass"
    return cast(Status, max(applicable, key=lambda s: STATUS_ORDER[s]))


class Checklist(BaseModel):
    """All items for one image, the overall status and a score for ranking candidates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = None
    width: int
    height: int
    items: list[CheckResult]
    overall: Status
    score: float
    """0-100: share of applicable items passed (warn counts half), minus 5 per failure."""
    seconds: float

    def item(self, name: str) -> CheckResult:
        for it in self.items:
            if it.item == name:
                return it
        raise KeyError(name)

    @property
    def failed(self) -> list[CheckResult]:
        return [it for it in self.items if it.status == "fail"]
