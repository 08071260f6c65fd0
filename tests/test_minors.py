"""Briefs that describe a minor are refused in every free-text field, before anything is sent;
adults described in ordinary words are not."""

from __future__ import annotations

import pytest

from portrait_studio.brief import load_brief, parse_brief
from portrait_studio.errors import BriefError
from portrait_studio.minors import find_minor, refuse_minor

MINORS = [
    "a 12-year-old schoolgirl in uniform",
    "twelve-year-old with braces",
    "age 12",
    "Age: 9",
    "12 yo",
    "12yo brunette",
    "17 y/o",
    "a 9 yr old",
    "16-year-old model",
    "a 15 year old",
    "seventeen years old",
    "aged fifteen",
    "she is 16",
    "she's 16, wearing jeans",
    "looks like she's 13",
    "looks 14",
    "a teenager in a hoodie",
    "teen",
    "in her late teens",
    "a child",
    "kids playing",
    "toddler",
    "an infant",
    "a newborn",
    "holding a baby",
    "a preteen",
    "pre-teen",
    "a little girl",
    "schoolboy",
    "school uniform",
    "a girl with pigtails",
    "a boy on a bike",
    "a seventh grader",
    "high school student",
    "a high schooler",
    "she is still in middle school",
    "underage",
    "child-like face",
    "adolescent boy",
    "juvenile",
    "a minor, posing",
    "lolita",
    "12\u2011year\u2011old",  # non-breaking hyphens
    "sch\u200bool\u200bgirl",  # zero-width spaces
    "ｔｅｅｎ",  # full-width letters
]

ADULTS = [
    "a 30-year-old",
    "girlfriend",
    "her teenage years long behind her",
    "kid leather gloves",
    "boyfriend jeans",
    "25 years old",
    "school teacher",
    "high school teacher",
    "young woman",
    "a young man with a beard",
    "a 10-year-old leather jacket",
    "thirty-five-year-old",
    "a woman in her thirties",
    "a woman, 45, in a trench coat",
    "a woman aged 34",
    "a man aged 70",
    "baby blue sweater",
    "baby hairs slicked down",
    "childhood home in the background",
    "a 22-year-old girl",
    "cover girl makeup",
    "boy cut hairstyle",
    "she is one of the dancers",
    "minor blemishes",
    "minor retouching only",
    "the lens is 85mm",
    "she is 5 feet tall",
    "since age 12 she has danced",
    "12 years of experience",
    "former child actor, now 40",
    "a canteen",
    "fifteen minutes of fame",
    "kidding aside",
    "a 1920s style",
    "a 19th century dress",
    "2 stops of fill",
]


@pytest.mark.parametrize("text", MINORS)
def test_text_that_describes_a_minor_is_found(text: str) -> None:
    assert find_minor(text) is not None


@pytest.mark.parametrize("text", ADULTS)
def test_adults_in_ordinary_words_are_not_refused(text: str) -> None:
    assert find_minor(text) is None


def test_girl_reads_as_an_adult_when_the_brief_states_an_adult_age() -> None:
    assert find_minor("a girl with red hair") == "girl"
    assert find_minor("a girl with red hair", adult_age_stated=True) is None
    assert find_minor("a little girl", adult_age_stated=True) is not None  # never


def test_an_avoid_list_that_pushes_away_from_adults_asks_for_a_child() -> None:
    assert find_minor("adult", negative=True) is not None
    assert find_minor("grown-up features", negative=True) is not None
    assert find_minor("plastic skin", negative=True) is None
    assert find_minor("adult") is None  # saying the subject IS an adult is fine


def test_the_issue_brief_is_refused_with_the_field_and_line(tmp_path) -> None:
    """'a 12-year-old schoolgirl in uniform' was compiled, sent and charged (only `age` was checked)."""
    path = tmp_path / "b.yaml"
    path.write_text("name: school portrait\nsubject:\n  description: a 12-year-old schoolgirl in uniform\n")
    with pytest.raises(BriefError) as err:
        load_brief(path)
    e = err.value
    assert e.field == "subject.description" and e.line == 3 and "minor" in str(e) and "18 or older" in (e.hint or "")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "teen prom look"}, "name"),
        ({"styling": {"wardrobe": "school uniform, knee socks"}}, "styling.wardrobe"),
        ({"styling": {"hair": "pigtails like a little girl"}}, "styling.hair"),
        ({"styling": {"makeup": "none, she is 15"}}, "styling.makeup"),
        ({"background": "a kindergarten classroom full of kids"}, "background.description"),
        ({"lighting": {"pattern": "rembrandt", "notes": "soft, for a child"}}, "lighting.notes"),
        ({"expression": {"mood": "childlike wonder"}}, "expression.mood"),
        ({"hands": {"visible": True, "pose": "holding a toddler"}}, "hands.pose"),
        ({"subject": {"description": "a woman", "anchors": ["freckles", "looks 14"]}}, "subject.anchors.1"),
        ({"avoid": ["adult features"]}, "avoid.0"),
        ({"quality": {"cues": ["teen magazine look"]}}, "quality.cues.0"),
        ({"lens": {"camera": "school photo of a 10-year-old"}}, "lens.camera"),
    ],
)
def test_every_free_text_field_is_screened(data: dict, field: str) -> None:
    brief = {"subject": {"description": "a woman in her thirties"}, **data}
    with pytest.raises(BriefError) as err:
        parse_brief(brief)
    assert err.value.field == field


def test_vary_cannot_bring_a_minor_in() -> None:
    brief = parse_brief({"subject": {"description": "a woman in her thirties"}})
    with pytest.raises(BriefError, match="minor"):
        brief.with_element("wardrobe", "a schoolgirl outfit")


def test_a_series_shot_list_is_screened(tmp_path) -> None:
    from portrait_studio.series import load_shots

    path = tmp_path / "shots.yaml"
    path.write_text("shots:\n  - wardrobe: navy suit\n  - background: playground with kids\n")
    with pytest.raises(BriefError) as err:
        load_shots(path)
    assert err.value.field == "shots.1.background" and err.value.line == 3


def test_an_edit_instruction_is_refused_with_its_field() -> None:
    refuse_minor("make her look older", field="instruction")
    with pytest.raises(BriefError) as err:
        refuse_minor("make her look like a 14 year old", field="instruction")
    assert err.value.field == "instruction"
