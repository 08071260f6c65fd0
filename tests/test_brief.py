"""A photographer writes a brief; mistakes are pointed out by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import example_brief_path, example_briefs, load_brief, parse_brief
from portrait_studio.errors import BriefError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "brief.yaml"
    path.write_text(text)
    return path


def test_every_example_brief_loads() -> None:
    names = example_briefs()
    assert {"rembrandt-studio-headshot", "cafe-window-candid"} <= set(names)
    for name in names:
        brief = load_brief(example_brief_path(name))
        assert brief.subject.anchors, name


def test_rembrandt_example_reads_in_photographers_words(example_brief_file: Path) -> None:
    brief = load_brief(example_brief_file)
    assert brief.lighting.pattern == "rembrandt"
    assert brief.lens.focal_length_mm == 85
    assert brief.expression.mouth == "closed-mouth-smile" and not brief.expression.teeth_visible
    assert brief.hands.visible is False
    assert brief.output.aspect_ratio == "3:4" and brief.output.seed == 1234


def test_misspelt_field_names_line_and_suggests_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "subject:\n  age: 30\nlighting:\n  patern: rembrandt\n")
    with pytest.raises(BriefError) as err:
        load_brief(path)
    assert err.value.line == 4 and err.value.field == "lighting.patern"
    assert "did you mean 'pattern'" in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_lighting_pattern_lists_the_presets(tmp_path: Path) -> None:
    path = write(tmp_path, "subject:\n  age: 30\nlighting: rembrant\n")
    with pytest.raises(BriefError) as err:
        load_brief(path)
    assert err.value.line == 3
    assert "did you mean rembrandt" in str(err.value) and "clamshell" in str(err.value)


def test_unquoted_aspect_ratio_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "subject:\n  age: 30\noutput:\n  aspect_ratio: 3:4\n")
    with pytest.raises(BriefError, match="quotes"):
        load_brief(path)


def test_missing_subject_is_required(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="subject.*required"):
        load_brief(write(tmp_path, "lighting: clamshell\n"))


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(BriefError) as err:
        load_brief(write(tmp_path, "subject:\n  age: 30\n  anchors: [a, b\n"))
    assert err.value.line is not None and "YAML" in str(err.value)


def test_minors_are_refused() -> None:
    with pytest.raises(BriefError, match="18 or older"):
        parse_brief({"subject": {"age": 16}})


def test_hand_pose_without_visible_hands_is_contradictory() -> None:
    with pytest.raises(BriefError, match="visible"):
        parse_brief({"subject": {}, "hands": {"pose": "hands at chest level"}})


def test_more_than_four_identity_anchors_is_refused() -> None:
    with pytest.raises(BriefError, match="anchors"):
        parse_brief({"subject": {"anchors": ["a", "b", "c", "d", "e"]}})


def test_defaults_carry_the_light_negative_list() -> None:
    brief = parse_brief({"subject": {"description": "a man in his fifties"}})
    assert "plastic skin" in brief.avoid and "watermark" in brief.avoid
    assert brief.hands.visible is False


def test_vary_changes_exactly_one_element(example_brief_file: Path) -> None:
    brief = load_brief(example_brief_file)
    varied = brief.with_element("lighting", "clamshell")
    assert varied.lighting.pattern == "clamshell"
    assert varied.model_dump(exclude={"lighting"}) == brief.model_dump(exclude={"lighting"})
    with pytest.raises(BriefError, match="cannot vary"):
        brief.with_element("subject", "x")


def test_reference_paths_resolve_next_to_the_brief(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "head.png")
    path = write(
        tmp_path,
        "subject: {}\nreferences:\n  - path: head.png\n    rights: {who: Ana, source: shoot, permission: release}\n",
    )
    brief = load_brief(path)
    assert brief.references[0].path == str(tmp_path / "head.png")
    assert brief.references[0].weight == 0.3


def test_a_reference_strength_is_refused_with_the_word_that_replaces_it(tmp_path: Path) -> None:
    """`strength` meant denoise on dev img2img and reference weight on Ultra: one meaning per word now."""
    (tmp_path / "head.png").write_bytes(b"x")
    path = write(
        tmp_path,
        "subject: {}\nreferences:\n  - path: head.png\n    strength: 0.3\n"
        "    rights: {who: Ana, source: shoot, permission: release}\n",
    )
    with pytest.raises(BriefError) as err:
        load_brief(path)
    assert "references" in str(err.value) and "'weight'" in str(err.value)
