"""Property-based tests: whatever the user (or an attacker) writes into a brief, a shot list, a
config or keys file, the answer is a result or a clear StudioError — never another exception."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portrait_studio.brief import example_brief_path, parse_brief, parse_yaml
from portrait_studio.config import read_config, read_keys
from portrait_studio.errors import BriefError, StudioError
from portrait_studio.minors import find_minor
from portrait_studio.redaction import find_key, redact
from portrait_studio.series import example_shots_path, parse_shots

# PORTRAIT_FUZZ_EXAMPLES=5000 for a long run; the suite's default keeps CI quick.
SETTINGS = settings(max_examples=int(os.environ.get("PORTRAIT_FUZZ_EXAMPLES", "250")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLE = example_brief_path("rembrandt-studio-headshot").read_text(encoding="utf-8")
SHOTS = example_shots_path().read_text(encoding="utf-8")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["rembrandt", "3:4", "random", "png", "identity", "close-up", "eye level", "a woman", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
FIELDS = {
    "name": None, "subject": ["description", "age", "ethnicity", "skin_tone", "gender_expression", "anchors"],
    "styling": ["hair", "makeup", "wardrobe"], "lens": ["focal_length_mm", "f_stop", "preset", "camera"],
    "lighting": ["pattern", "key_side", "fill", "notes"], "composition": ["framing", "angle"],
    "background": ["description"], "expression": ["mouth", "mood"], "hands": ["visible", "pose"],
    "quality": ["cues", "cfg", "steps", "true_cfg_scale"], "avoid": None,
    "output": ["aspect_ratio", "resolution", "width", "height", "seed", "format", "safety_tolerance"],
    "references": None,
}


@st.composite
def briefs(draw: st.DrawFn) -> dict[str, Any]:
    """Brief-shaped data: real slot names, random values (wrong types, NaN, huge numbers, nesting)."""
    data: dict[str, Any] = {"subject": {"description": draw(st.text(max_size=30))}}
    for slot in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=5, unique=True)):
        keys = FIELDS[slot]
        if keys is None or draw(st.booleans()):
            data[slot] = draw(values)
        else:
            data[slot] = {k: draw(values) for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))}
    return data


@st.composite
def garbled(draw: st.DrawFn, text: str) -> str:
    """`text` with a few random cuts, insertions and swaps: what a bad paste or editor does."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["cut", "insert", "swap"]))
        if op == "cut":
            del chars[i: i + draw(st.integers(1, 40))]
        elif op == "insert":
            chars[i:i] = draw(st.text(alphabet=st.sampled_from([*":-[]{}&*!|>'\"#%@`\t\n ,?\\\x00\x85\ufeff", "a"]),
                                      min_size=1, max_size=8))
        elif chars:
            j = draw(st.integers(0, len(chars) - 1))
            chars[i % len(chars)], chars[j] = chars[j], chars[i % len(chars)]
    return "".join(chars)


def brief_from_yaml(text: str) -> None:
    data, lines = parse_yaml(text, source="fuzz.yaml")
    parse_brief(data, source="fuzz.yaml", lines=lines)


@SETTINGS
@given(garbled(EXAMPLE))
def test_garbled_brief_yaml_is_a_brief_or_a_brief_error(text: str) -> None:
    try:
        brief_from_yaml(text)
    except BriefError as exc:
        assert str(exc).startswith("fuzz.yaml")


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_a_brief_or_a_brief_error(text: str) -> None:
    try:
        brief_from_yaml(text)
    except BriefError:
        pass


@SETTINGS
@given(briefs())
def test_brief_shaped_data_is_a_brief_or_a_brief_error_naming_a_field(data: dict[str, Any]) -> None:
    try:
        brief = parse_brief(data)
    except BriefError as exc:
        assert exc.field or "mapping" in str(exc)
    else:  # what validated is a real brief: every number finite, the subject says something
        assert brief.subject.described or any(r.role == "identity" for r in brief.references)
        assert json.loads(brief.model_dump_json())


@SETTINGS
@given(st.one_of(garbled(SHOTS), st.text(max_size=200)))
def test_garbled_shot_lists_are_shots_or_a_brief_error(text: str) -> None:
    try:
        data, lines = parse_yaml(text, source="shots.yaml")
        parse_shots(data, source="shots.yaml", lines=lines)
    except BriefError:
        pass


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(["name", "wardrobe", "background", "lighting", "key_side", "pose",
                                                 "mouth", "angle", "framing", "colour"]), values, max_size=4),
                max_size=4))
def test_shot_shaped_data_is_shots_or_a_brief_error(shots: list[dict[str, Any]]) -> None:
    try:
        parse_shots({"shots": shots})
    except BriefError:
        pass


CONFIG = 'creator = "Ana"\ncredit = "Studio A"\ndefault_budget_usd = 2.5\n[c2pa]\nalgorithm = "es256"\n[providers.bfl]\npoll_interval = 0.5\n'


@SETTINGS
@given(st.one_of(garbled(CONFIG), st.text(max_size=200), st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_any_config_is_a_config_or_a_studio_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        read_config(path)
    except StudioError as exc:
        assert "config.toml" in str(exc)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["creator", "credit", "default_budget_usd", "bfl_host", "c2pa", "providers", "x"]),
                       values, max_size=4))
def test_config_shaped_values_are_a_config_or_a_studio_error(tmp_path_factory: pytest.TempPathFactory,
                                                             data: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(json.dumps(data))  # JSON is mostly not TOML: both paths get exercised
    try:
        config = read_config(path)
    except StudioError:
        return
    assert config.default_budget_usd is None or config.default_budget_usd >= 0


@SETTINGS
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode),
                 st.dictionaries(st.text(max_size=8), values, max_size=3).map(lambda d: json.dumps(d).encode())))
def test_any_keys_file_is_keys_or_a_studio_error_with_the_way_out(tmp_path_factory: pytest.TempPathFactory,
                                                                 data: bytes) -> None:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_bytes(data)
    try:
        keys = read_keys(path)
    except StudioError as exc:
        assert "doctor --repair" in (exc.hint or "")
    else:
        assert all(isinstance(v, str) for v in keys.values())


@SETTINGS
@given(st.text(max_size=200), st.sampled_from(["a 12-year-old", "a schoolgirl", "aged 15", "a toddler", "16 yo"]))
def test_a_minor_is_found_wherever_it_is_written(text: str, minor: str) -> None:
    assert find_minor(text) is None or isinstance(find_minor(text), str)
    assert find_minor(f"{text} {minor} {text}") is not None


@SETTINGS
@given(st.text(max_size=120), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40))
def test_redact_never_lets_a_known_secret_through(text: str, secret: str) -> None:
    leaked = f"{text}{secret}{text}"
    assert secret not in redact(leaked, [secret])
    assert find_key(leaked, [secret]) is not None


def test_tomllib_is_what_config_uses() -> None:
    """The config reader must fail the same way tomllib does (a StudioError), not differently."""
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("a = ")
    path = Path(__file__)  # a Python file is not a config
    with pytest.raises(StudioError):
        read_config(path)
