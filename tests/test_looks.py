"""Looks are data files, validated like the other presets, in the guide's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from portrait_studio.errors import BriefError
from portrait_studio.looks import Look, load_look, look_names, looks


def test_at_least_the_looks_the_issue_names_ship() -> None:
    names = set(look_names())
    assert {"editorial", "cinematic", "lifestyle", "film", "black-and-white", "high-key-beauty",
            "low-key-dramatic"} <= names


@pytest.mark.parametrize("name", look_names())
def test_every_shipped_look_describes_grade_light_and_lens(name: str) -> None:
    look = load_look(name)
    assert look.id == name and look.name and look.grade and look.light and look.lens
    text = look.instruction()
    assert text.startswith(f"Restyle the photo as {look.summary}. Colour grade: {look.grade}.")
    assert look.lens[:20].lower() in text.lower() and text.endswith(".")
    assert "\n" not in text and ".." not in text


def test_only_black_and_white_is_monochrome() -> None:
    assert [name for name, look in looks().items() if look.monochrome] == ["black-and-white"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_a_misspelt_field_names_the_file_line_and_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Mine\nsummary: a portrait\ngrade: warm\nlense: 85mm\n")
    with pytest.raises(BriefError) as err:
        load_look(path)
    assert f"{path}:4" in str(err.value) and "unknown field 'lense'" in str(err.value)
    assert err.value.hint == "did you mean 'lens'?"


def test_a_missing_grade_is_required(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="field 'grade': is required"):
        load_look(write(tmp_path, "name: Mine\nsummary: a portrait\n"))


def test_an_essay_in_one_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="field 'grade'") as err:
        load_look(write(tmp_path, "name: Mine\nsummary: a portrait\ngrade: " + "warm " * 200 + "\n"))
    assert "phrase or two" in (err.value.hint or "")


def test_not_a_mapping_or_not_yaml_says_so(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="must be a mapping"):
        load_look(write(tmp_path, "- editorial\n"))
    with pytest.raises(BriefError, match="not valid YAML"):
        load_look(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(BriefError, match="file not found"):
        load_look(tmp_path / "absent.yaml")


def test_the_id_comes_from_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="'id' comes from the file name"):
        load_look(write(tmp_path, "id: x\nname: Mine\nsummary: s\ngrade: g\n"))
    assert load_look(write(tmp_path, "name: Mine\nsummary: s\ngrade: g\n")).id == "mine"


def test_whitespace_in_yaml_blocks_is_tidied() -> None:
    look = Look(name="X", summary="a  portrait.", grade="warm\n  tones.")
    assert look.summary == "a portrait" and look.grade == "warm tones"
