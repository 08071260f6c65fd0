"""`portrait vary`'s options and the "what to try next" hint, both from `brief.VARIABLE_ELEMENTS`.

One table decides what vary can change; the options, their help and the suggestion printed after
a round are all made from it, so the hint never names an option that does not exist, and never
suggests the value the brief already has.
"""

from __future__ import annotations

import typing
from typing import Any

from ..brief import VARIABLE_ELEMENTS, Brief, preset

__all__ = ["element_choices", "element_help", "option_name", "suggest_vary"]

_PRESET_FOR = {("lighting", "pattern"): "lighting", ("composition", "angle"): "angles",
               ("background", "description"): "backgrounds", ("lens", "focal_length_mm"): None}
"""Brief fields whose values come from a preset table (None: suggested from the lens presets)."""

_SUGGEST_ORDER = ("lighting", "background", "expression", "mouth", "lens", "framing", "angle", "key-side")


def option_name(element: str) -> str:
    """The python parameter name of `--element` (typer maps key_side to --key-side)."""
    return element.replace("-", "_")


def _field(path: tuple[str, ...]) -> Any:
    model: Any = Brief
    info = None
    for key in path:
        info = model.model_fields[key]
        model = info.annotation
    return info


def element_choices(element: str) -> list[str] | None:
    """The values an element can take when the brief knows them (a Literal or a preset table)."""
    path = VARIABLE_ELEMENTS[element]
    if path == ("lens", "focal_length_mm"):
        return sorted({str(v["focal_length_mm"]) for v in preset("lenses").values() if "focal_length_mm" in v},
                      key=int)
    if path in _PRESET_FOR:
        return list(preset(_PRESET_FOR[path]))  # type: ignore[arg-type]
    annotation = _field(path).annotation
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return None


def element_help(element: str) -> str:
    path = VARIABLE_ELEMENTS[element]
    choices = element_choices(element)
    if choices:
        shown = f" to one of: {', '.join(choices[:8])}{' …' if len(choices) > 8 else ''}"
    else:
        shown = " (a number)" if _field(path).annotation in (int, float) else " (your words)"
    return f"Change {'.'.join(path)}{shown}."


def _current(brief: dict[str, Any] | None, element: str) -> str | None:
    node: Any = brief or {}
    for key in VARIABLE_ELEMENTS[element]:
        node = node.get(key) if isinstance(node, dict) else None
    return None if node is None else str(node)


def suggest_vary(brief: dict[str, Any] | None, varied: dict[str, Any] | None = None) -> str | None:
    """'--background studio-white': an element not changed this round, with a value the brief does not have."""
    varied = varied or {}
    for element in (*_SUGGEST_ORDER, *VARIABLE_ELEMENTS):
        if element not in VARIABLE_ELEMENTS or element in varied:
            continue
        current = _current(brief, element)
        for value in element_choices(element) or []:
            if value != current:
                return f"--{element} {value}" if " " not in value else f"--{element} '{value}'"
    return None
