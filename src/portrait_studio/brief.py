"""The portrait brief: what the user wants, in a photographer's words.

Briefs are YAML files validated by pydantic. A mistake is reported with the file, the
line and the field, and how to fix it. Presets (lighting setups, compositions, lenses,
backgrounds, quality cues, avoid lists, example briefs) are data files in `presets/`.
"""

from __future__ import annotations

import difflib
import re
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import BriefError
from .minors import find_minor, minor_hint
from .redaction import find_key

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
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "VARIABLE_ELEMENTS",
    "brief_texts",
    "example_brief_path",
    "example_briefs",
    "load_brief",
    "parse_brief",
    "parse_yaml",
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
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"description": data} if isinstance(data, str) else data

    @property
    def described(self) -> bool:
        """Says something about the person (an empty `subject: {}` leaves the model to guess)."""
        texts = (self.description, self.ethnicity, self.skin_tone, self.gender_expression, *self.anchors)
        return self.age is not None or any(t and t.strip() for t in texts)

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
        if isinstance(data, dict) and data.get("preset") and isinstance(data["preset"], str):
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
    true_cfg: bool = Field(default=False, description="local FLUX.1: send the avoid list as a true-CFG negative "
                                                      "prompt (twice the transformer calls per step)")
    true_cfg_scale: float = Field(default=4.0, gt=1.0, le=10.0)
    sampler: str | None = Field(default=None, description="e.g. 'DPM++ 2M Karras'; local FLUX only (samplers.py)")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        from .samplers import sampler_id

        return None if value is None else sampler_id(value)


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
        from .seeds import SEED_MAX, SEED_MIN

        if isinstance(value, int) and not SEED_MIN <= value <= SEED_MAX:
            raise ValueError(f"seed must be between {SEED_MIN} and {SEED_MAX}")
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

    @model_validator(mode="after")
    def _screen(self) -> Brief:
        """Refuse, before anything is compiled or sent: a subject that says nothing, an API key in any
        text, and any text that describes a minor (the numeric `age` alone missed "a 12-year-old")."""
        if not self.subject.described and not any(r.role == "identity" for r in self.references):
            raise _screen_error(
                "subject", "says nothing about the person",
                "add subject.description (e.g. 'a woman in her thirties with short grey hair'), "
                "some attributes (age, anchors ...) or an identity reference",
            )
        texts = brief_texts(self)
        for field, text, _ in texts:
            what = _key_in(text)
            if what is not None:
                raise _screen_error(
                    field, f"holds what looks like {what}; it would be sent to the provider and stored in the ledger",
                    "remove it; keys belong in 'portrait keys set PROVIDER' or the provider's env var",
                )
        adult = self.subject.age is not None
        for field, text, negative in texts:
            phrase = find_minor(text, negative=negative, adult_age_stated=adult)
            if phrase is not None:
                raise _screen_error(
                    field, f"describes a minor ('{phrase}'); portraits of minors are refused", minor_hint(phrase)
                )
        return self

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


@lru_cache(maxsize=4096)
def _key_in(text: str) -> str | None:
    return find_key(text)


def _screen_error(field: str, message: str, hint: str) -> PydanticCustomError:
    return PydanticCustomError("brief_screen", "{message}", {"message": message, "field": field, "hint": hint})


def brief_texts(brief: Brief) -> list[tuple[str, str, bool]]:
    """Every free text of a brief as (field, text, is_negative): what would reach a prompt or a record.

    Walks the data, so a slot added later is screened too. Reference file paths are not text.
    `avoid` entries are negative (they say what the image must not show).
    """
    found: list[tuple[str, str, bool]] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, str):
            if not (path[0] == "references" and path[-1] == "path"):
                found.append((".".join(path), value, path[0] == "avoid"))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, str(key)))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, (*path, str(i)))

    walk(brief.model_dump(mode="python"), ())
    return found


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
    "hand-pose": ("hands", "pose"),
}
"""The one element table: what `vary` (--NAME) and a series shot (NAME with '_') can change, and where
it lives in the brief. A series shot also takes `pose` (head and body), which joins the expression
sentence — the brief has no body-pose slot; `hand-pose` is the hands' pose."""


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
        raise _brief_error(exc, source, lines or {}) from None
    except RecursionError:  # a self-referencing structure handed in from code (YAML cycles are refused earlier)
        raise BriefError("the brief refers to itself", file=source, hint="write each slot out in full") from None


def _brief_error(exc: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> BriefError:
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    hint: str | None
    if first["type"] == "brief_screen":
        ctx = first.get("ctx") or {}
        loc = tuple(int(p) if p.isdigit() else p for p in str(ctx["field"]).split("."))
        msg, hint = str(ctx["message"]), str(ctx["hint"])
    else:
        msg, hint = _explain(dict(first))
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    field = ".".join(str(p) for p in loc) or None
    return BriefError(msg, field=field, file=source, line=_line_for(loc, lines), hint=hint)


def _resolve_references(brief: Brief, base: Path) -> Brief:
    if not brief.references:
        return brief
    refs = tuple(
        ref.model_copy(update={"path": str((base / ref.path).resolve())}) if not Path(ref.path).is_absolute() else ref
        for ref in brief.references
    )
    return brief.model_copy(update={"references": refs})


# A brief is a page of text: these limits are far above any real brief and far below harm.
MAX_YAML_BYTES = 256 * 1024
MAX_YAML_ALIASES = 16
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 20_000  # after expanding aliases: a 382-byte "billion laughs" expands to 10^9


class _YamlLimit(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.line = mark.line + 1 if mark is not None else None


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that stops at a few aliases and a modest nesting depth while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlLimit(f"more than {MAX_YAML_ALIASES} YAML aliases (*name)", self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1


def _check_graph(root: yaml.Node) -> None:
    """Refuse alias cycles (`&a [*a]`) and documents that expand to more than MAX_YAML_NODES nodes."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise _YamlLimit("a YAML alias refers to the node that contains it", node.start_mark)
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        on_path.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise _YamlLimit(f"expands to more than {MAX_YAML_NODES} values (YAML aliases)", node.start_mark)
        return total

    size(root)


def _read_text(path: Path, missing_hint: str) -> str:
    """The file as text, or a BriefError saying why not (missing, a folder, binary, not UTF-8, too big)."""
    name = str(path)
    try:
        if path.is_dir():
            raise BriefError("is a folder, not a YAML file", file=name, hint="give the path of the .yaml file inside it")
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise BriefError(f"is {size:,} bytes; a YAML file here may be at most {MAX_YAML_BYTES:,}", file=name,
                             hint="a brief is a page of text: check that this is the right file")
        with path.open("rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise BriefError("file not found", file=name, hint=missing_hint) from None
    except (OSError, ValueError) as exc:  # permissions, a NUL in the name, a name too long
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BriefError(f"cannot be read: {reason}", file=name, hint="check the path and its permissions") from None
    if len(data) > MAX_YAML_BYTES:
        raise BriefError(f"is larger than {MAX_YAML_BYTES:,} bytes", file=name, hint="check that this is the right file")
    if b"\x00" in data:
        raise BriefError("is a binary file, not YAML text", file=name, line=data[: data.index(b"\x00")].count(b"\n") + 1,
                         hint="give the path of a .yaml brief (an image goes under references:)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BriefError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x})", file=name, line=line,
            hint="save the file as UTF-8 (Latin-1 and other encodings are not read)",
        ) from None


def parse_yaml(text: str, *, source: str = "<yaml>") -> tuple[Any, dict[tuple[Any, ...], int]]:
    """(data, line of every key path) for YAML text, with limits: size, aliases, depth, expansion.

    PyYAML's safe_load would happily expand a 382-byte alias bomb for minutes; these limits
    refuse it in milliseconds. Errors are BriefErrors with the source and line.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise BriefError(f"is larger than {MAX_YAML_BYTES:,} bytes", file=source, hint="check that this is the right text")
    loader: _LimitedLoader | None = None
    try:
        loader = _LimitedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_graph(node)
        data = loader.construct_document(node)
        lines = _line_index(node)
    except _YamlLimit as exc:
        raise BriefError(f"refused: {exc.message}", file=source, line=exc.line,
                         hint="write the values out instead of using anchors and aliases") from None
    except yaml.reader.ReaderError as exc:  # a control character or similar, before any parsing
        raise BriefError(
            f"not valid YAML: character #x{exc.character:04x} is not allowed", file=source,
            line=text[: exc.position].count("\n") + 1, hint="remove control characters (save the file as plain text)",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise BriefError(
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            file=source,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quote values containing ':'",
        ) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # e.g. an unhashable key
        raise BriefError(f"not valid YAML: {exc}", file=source, hint="check the file's structure") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def read_yaml(path: str | Path, *, missing_hint: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """(data, line of every key path) for a YAML file; BriefError with file and line on failure."""
    path = Path(path)
    return parse_yaml(_read_text(path, missing_hint), source=str(path))


def load_brief(path: str | Path) -> Brief:
    """Load and validate a brief file; errors name the file, line and field."""
    path = Path(path)
    data, lines = read_yaml(path, missing_hint="check the path, or run 'portrait brief new'")
    brief = _resolve_references(parse_brief(data, source=str(path), lines=lines), path.parent)
    _check_reference_files(brief, source=str(path), lines=lines)
    return brief


def _check_reference_files(brief: Brief, *, source: str, lines: dict[tuple[Any, ...], int]) -> None:
    """Every reference is a readable image (header only): a missing file, a folder or a YAML file
    given as a photo is named here, not as a traceback when the request is compiled."""
    from PIL import Image

    from .imaging import ImageInputError, image_size

    for i, ref in enumerate(brief.references):
        field, line = f"references.{i}.path", _line_for(("references", i, "path"), lines)
        try:
            image_size(ref.path)  # a huge image is refused there, in the studio's words
        except ImageInputError as exc:
            raise BriefError(exc.message, hint=exc.hint, field=field, file=source, line=line) from None
        except Image.DecompressionBombError:
            raise BriefError(f"'{ref.path}' has far too many pixels to be a photo", hint="downscale it first",
                             field=field, file=source, line=line) from None


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
