"""The portrait brief: what the user wants, in a photographer's words.

Briefs are YAML files validated by pydantic. A mistake is reported with the file, the
line and the field, and how to fix it. Presets (lighting setups, compositions, lenses,
backgrounds, quality cues, avoid lists, example briefs) are data files in `presets/`.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BriefError

__all__ = [
    "Background",
    "Brief",
    "Composition",
    "Expression",
    "Hands",
    "Lens",
    "Lighting",
    "Output",
    "Quality",
    "Reference",
    "Rights",
    "Styling",
    "Subject",
    "VARIABLE_ELEMENTS",
    "example_brief_path",
    "example_briefs",
    "load_brief",
    "parse_brief",
    "preset",
    "read_yaml",
]

MouthShape = Literal["closed-mouth-smile", "subtle-smile-no-teeth", "teeth-visible", "neutral", "laughing"]
Framing = Literal["close-up", "head-and-shoulders", "three-quarter", "waist-up", "full-length"]
Resolution = Literal["1MP", "2MP", "4MP"]


@cache
def preset(kind: str) -> dict[str, Any]:
    """A preset table from `presets/<kind>.yaml` (lighting, compositions, lenses, ...)."""
    text = resources.files("portrait_studio").joinpath(f"presets/{kind}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _one_of(value: str, choices: list[str], what: str) -> str:
    if value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(f"unknown {what} '{value}'{hint}; choose one of: {', '.join(choices)}")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rights(_Part):
    """Consent and rights for a reference image of a real person."""

    who: str = Field(min_length=1, description="the person shown, or 'synthetic' for a generated face")
    source: str = Field(min_length=1, description="where the image comes from")
    permission: str = Field(min_length=1, description="what they agreed to, e.g. 'model release 2026-03-02'")
    recorded_by: str | None = None


class Reference(_Part):
    """A reference image that conditions identity or style."""

    path: str
    role: Literal["identity", "style"] = "identity"
    weight: float = Field(default=0.3, ge=0.0, le=1.0)
    """How strongly the reference steers (0.25–0.35 holds a face). Not a denoise: on a model that only
    takes an init image, the compiler sends denoise = 1 − weight and says so."""
    rights: Rights | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strength" in data:
            raise ValueError(
                "'strength' is ambiguous (denoise or reference weight); a reference takes 'weight' "
                "(how strongly it steers, 0–1, 0.3 holds a face)"
            )
        return data


class Subject(_Part):
    description: str | None = None
    age: int | None = Field(default=None, ge=18, le=110)
    ethnicity: str | None = None
    skin_tone: str | None = None
    gender_expression: str | None = None
    anchors: tuple[str, ...] = Field(default=(), max_length=4)

    @field_validator("age", mode="before")
    @classmethod
    def _adult(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 18:
            raise ValueError("portraits of minors are not supported; the subject must be 18 or older")
        return value


class Styling(_Part):
    hair: str | None = None
    makeup: str | None = None
    wardrobe: str | None = None


class Lens(_Part):
    focal_length_mm: int = Field(default=85, ge=10, le=800)
    f_stop: float = Field(default=2.0, ge=0.95, le=32)
    distance: str | None = None
    camera: str | None = None
    film: str | None = None
    preset: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset"):
            name = _one_of(data["preset"], list(preset("lenses")), "lens preset")
            data = {**preset("lenses")[name], **data, "preset": name}
        return data


class Lighting(_Part):
    pattern: str = "rembrandt"
    key_side: Literal["left", "right"] = "left"
    fill: str | None = None
    time_of_day: str | None = None
    notes: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"pattern": data} if isinstance(data, str) else data

    @field_validator("pattern")
    @classmethod
    def _known(cls, value: str) -> str:
        return _one_of(_slug(value), list(preset("lighting")), "lighting pattern")

    @property
    def natural(self) -> bool:
        return bool(preset("lighting")[self.pattern].get("natural"))


class Composition(_Part):
    framing: Framing = "head-and-shoulders"
    angle: str = "eye level"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"framing": data}
        if isinstance(data, dict) and isinstance(data.get("framing"), str):
            data = {**data, "framing": _slug(data["framing"])}
        return data

    @field_validator("angle")
    @classmethod
    def _known_angle(cls, value: str) -> str:
        return _one_of(value.lower().strip(), list(preset("angles")), "camera angle")


class Background(_Part):
    """A preset name (see presets/backgrounds.yaml) or the user's own words."""

    description: str = "neutral-gray"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"description": data} if isinstance(data, str) else data

    @property
    def phrase(self) -> str:
        return str(preset("backgrounds").get(self.description, self.description))


class Expression(_Part):
    mouth: MouthShape = "closed-mouth-smile"
    mood: str | None = None

    @field_validator("mouth", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _slug(value) if isinstance(value, str) else value

    @property
    def teeth_visible(self) -> bool:
        return self.mouth in ("teeth-visible", "laughing")


class Hands(_Part):
    visible: bool = False
    pose: str | None = None

    @model_validator(mode="after")
    def _pose_needs_visible(self) -> Hands:
        if self.pose and not self.visible:
            raise ValueError("a hand pose is set but visible is false; set visible: true or remove pose")
        return self


class Quality(_Part):
    cues: tuple[str, ...] = Field(default_factory=lambda: tuple(preset("quality")["default_cues"]))
    cfg: float = Field(default=5.0, ge=1.0, le=10.0, description="the guide's CFG scale; 4.5–6.0 recommended")
    steps: int | None = Field(default=None, ge=1, le=100)
    plastic_skin_remedy: bool = False
    true_cfg_scale: float = Field(default=4.0, gt=1.0, le=10.0)


class Output(_Part):
    aspect_ratio: str | None = None
    resolution: Resolution = "1MP"
    width: int | None = Field(default=None, ge=64, le=4096)
    height: int | None = Field(default=None, ge=64, le=4096)
    seed: int | Literal["random"] = "random"
    format: Literal["png", "jpeg", "webp"] = "png"
    raw: bool = False
    safety_tolerance: int | None = Field(default=None, ge=0, le=6)
    prompt_format: Literal["prose", "json"] = "prose"

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _unquoted(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML 1.1 reads an unquoted 3:4 as the base-60 number 184
            raise ValueError('write the aspect ratio in quotes, like "3:4" (unquoted, YAML reads it as a number)')
        return value

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"\d{1,2}:\d{1,2}", value.strip()):
            raise ValueError(f"aspect ratio '{value}' is not W:H; write it like \"3:4\" (quoted in YAML)")
        return value.strip()

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value < 2**32:
            raise ValueError("seed must be between 0 and 4294967295")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> Output:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither (and use aspect_ratio + resolution)")
        return self


class Brief(_Part):
    """Every slot of a portrait brief. Only `subject` is required."""

    name: str | None = None
    subject: Subject
    styling: Styling = Field(default_factory=Styling)
    lens: Lens = Field(default_factory=Lens)
    lighting: Lighting = Field(default_factory=Lighting)
    composition: Composition = Field(default_factory=Composition)
    background: Background = Field(default_factory=Background)
    expression: Expression = Field(default_factory=Expression)
    hands: Hands = Field(default_factory=Hands)
    quality: Quality = Field(default_factory=Quality)
    avoid: tuple[str, ...] = Field(default_factory=lambda: tuple(preset("avoid")["default"]))
    output: Output = Field(default_factory=Output)
    references: tuple[Reference, ...] = ()

    def with_element(self, element: str, value: Any) -> Brief:
        """A copy with one element changed (`portrait vary`): lighting, background, wardrobe, ..."""
        if element not in VARIABLE_ELEMENTS:
            raise BriefError(f"cannot vary '{element}'", field=element, hint=f"vary one of: {', '.join(VARIABLE_ELEMENTS)}")
        path = VARIABLE_ELEMENTS[element]
        data = self.model_dump(mode="python")
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return parse_brief(data, source=f"vary --{element}")


# What `portrait vary` can change, and where it lives in the brief.
VARIABLE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "lighting": ("lighting", "pattern"),
    "key-side": ("lighting", "key_side"),
    "fill": ("lighting", "fill"),
    "background": ("background", "description"),
    "wardrobe": ("styling", "wardrobe"),
    "hair": ("styling", "hair"),
    "makeup": ("styling", "makeup"),
    "lens": ("lens", "focal_length_mm"),
    "f-stop": ("lens", "f_stop"),
    "framing": ("composition", "framing"),
    "angle": ("composition", "angle"),
    "expression": ("expression", "mood"),
    "mouth": ("expression", "mouth"),
    "pose": ("hands", "pose"),
}


# --- loading -----------------------------------------------------------------------------


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML document to its 1-based line number."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            lines.update({k: v for k, v in _line_index(value, (*path, key.value)).items() if k != (*path, key.value)})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _explain(error: dict[str, Any]) -> tuple[str, str | None]:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = Brief
        for part in loc[:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(parent, type) else None
            ann = field.annotation if field else None
            parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None  # type: ignore[assignment]
        known = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else (f"known fields: {', '.join(known)}" if known else None)
        return f"unknown field '{loc[-1]}'", hint
    if error["type"] == "missing":
        return "is required", "add it to the brief"
    return msg, None


def parse_brief(data: Any, source: str = "<brief>", lines: dict[tuple[Any, ...], int] | None = None) -> Brief:
    """Validate brief data (already parsed YAML/JSON), raising BriefError with file:line."""
    if not isinstance(data, dict):
        raise BriefError("a brief must be a mapping of slots (subject, lighting, ...)", file=source, line=1)
    try:
        return Brief.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg, hint = _explain(dict(first))
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        field = ".".join(str(p) for p in loc) or None
        raise BriefError(msg, field=field, file=source, line=_line_for(loc, lines or {}), hint=hint) from None


def _resolve_references(brief: Brief, base: Path) -> Brief:
    if not brief.references:
        return brief
    refs = tuple(
        ref.model_copy(update={"path": str((base / ref.path).resolve())}) if not Path(ref.path).is_absolute() else ref
        for ref in brief.references
    )
    return brief.model_copy(update={"references": refs})


def read_yaml(path: str | Path, *, missing_hint: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """(data, line of every key path) for a YAML file; BriefError with file and line on failure."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BriefError("file not found", file=str(path), hint=missing_hint) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise BriefError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=str(path),
            line=mark.line + 1 if mark else None,
            hint="check indentation and quote values containing ':'",
        ) from None
    return data, (_line_index(node) if node is not None else {})


def load_brief(path: str | Path) -> Brief:
    """Load and validate a brief file; errors name the file, line and field."""
    path = Path(path)
    data, lines = read_yaml(path, missing_hint="check the path, or run 'portrait brief new'")
    return _resolve_references(parse_brief(data, source=str(path), lines=lines), path.parent)


def example_briefs() -> list[str]:
    folder = resources.files("portrait_studio").joinpath("presets/briefs")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def example_brief_path(name: str) -> Path:
    choices = example_briefs()
    name = _one_of_or_error(name, choices)
    return Path(str(resources.files("portrait_studio").joinpath(f"presets/briefs/{name}.yaml")))


def _one_of_or_error(name: str, choices: list[str]) -> str:
    try:
        return _one_of(name, choices, "preset")
    except ValueError as exc:
        raise BriefError(str(exc), field="preset", hint="run 'portrait brief presets' to list them") from None
