"""Looks: editorial, cinematic, lifestyle, film, black-and-white, … as data files.

A look (`presets/looks/<id>.yaml`, or any YAML file of the same shape) describes the grade,
light and lens rendering of a portrait in the guide's vocabulary. `edit.compile_restyle`
turns it into an edit instruction that keeps the person; nothing here knows about models.

    look = load_look("cinematic")          # a preset by id, or a path to your own file
    look.instruction()                     # the words the edit model receives
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BriefError

__all__ = ["Look", "load_look", "look_names", "looks"]

_FOLDER = "presets/looks"
MAX_FIELD_CHARS = 400
"""Each field is a phrase or two; longer text would crowd the instruction out of the prompt."""


class Look(BaseModel):
    """One look. `grade` is required; `light` and `lens` default to keeping the photo's own."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(default="", description="the file name without .yaml")
    name: str = Field(min_length=1, max_length=60)
    summary: str = Field(min_length=1, max_length=MAX_FIELD_CHARS, description="'a clean magazine editorial portrait'")
    grade: str = Field(min_length=1, max_length=MAX_FIELD_CHARS, description="colour, contrast, tonal range")
    light: str | None = Field(default=None, max_length=MAX_FIELD_CHARS, description="light pattern, fill, quality")
    lens: str | None = Field(default=None, max_length=MAX_FIELD_CHARS, description="focal length, aperture, depth of field")
    film: str | None = Field(default=None, max_length=MAX_FIELD_CHARS, description="film stock and grain")
    mood: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    monochrome: bool = Field(default=False, description="black-and-white: colour checks do not apply")

    @field_validator("summary", "grade", "light", "lens", "film", "mood")
    @classmethod
    def _one_paragraph(cls, value: str | None) -> str | None:
        return " ".join(value.split()).rstrip(".") if value else value

    def instruction(self) -> str:
        """The look as edit words: what to change (grade, light, rendering), in the guide's terms."""
        parts = [f"Restyle the photo as {self.summary}", f"Colour grade: {self.grade}"]
        if self.light:
            parts.append(f"Light: {self.light}")
        if self.lens:
            parts.append(self.lens[:1].upper() + self.lens[1:])
        if self.film:
            parts.append(self.film[:1].upper() + self.film[1:])
        if self.mood:
            parts.append(f"Mood: {self.mood}")
        return ". ".join(parts) + "."


def look_names() -> list[str]:
    """The ids of the shipped looks (file names in presets/looks)."""
    folder = resources.files("portrait_studio").joinpath(_FOLDER)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def looks() -> dict[str, Look]:
    """Every shipped look, by id, validated."""
    return {name: load_look(name) for name in look_names()}


def load_look(name_or_path: str | Path) -> Look:
    """A shipped look by id ('cinematic'), or a look file by path. Errors name the file, line and field."""
    text = str(name_or_path)
    if text in look_names():
        return _preset(text)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _load(path)
    close = difflib.get_close_matches(text, look_names(), n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise BriefError(f"unknown look '{text}'", field="look",
                     hint=f"{hint}choose one of: {', '.join(look_names())}, or give a look .yaml file")


@cache
def _preset(name: str) -> Look:
    path = Path(str(resources.files("portrait_studio").joinpath(f"{_FOLDER}/{name}.yaml")))
    return _load(path)


def _load(path: Path) -> Look:
    from .brief import read_yaml

    data, lines = read_yaml(path, missing_hint=f"check the path, or use a shipped look: {', '.join(look_names())}")
    if not isinstance(data, dict):
        raise BriefError("a look must be a mapping of fields (name, summary, grade, light, lens, …)", file=str(path), line=1)
    if "id" in data:
        raise BriefError("'id' comes from the file name; remove it", field="id", file=str(path), line=lines.get(("id",)))
    try:
        return Look.model_validate({**data, "id": path.stem})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        message, hint = _explain(dict(first))
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        line = lines.get(tuple(first["loc"][:1])) if first["loc"] else None
        raise BriefError(message, field=field, file=str(path), line=line, hint=hint) from None


def _explain(error: dict[str, Any]) -> tuple[str, str | None]:
    known = [f for f in Look.model_fields if f != "id"]
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        return f"unknown field '{error['loc'][-1]}'", (f"did you mean '{close[0]}'?" if close else
                                                       f"known fields: {', '.join(known)}")
    if error["type"] == "missing":
        return "is required", "a look needs name, summary and grade"
    if error["type"] == "string_too_long":
        return str(error["msg"]), "keep each field to a phrase or two"
    return str(error["msg"]).removeprefix("Value error, "), None
