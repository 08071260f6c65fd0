"""Representation review on real photos, with exposure changed synthetically."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from portrait_studio.review import (
    DeclaredAttributes,
    ReviewItem,
    diversify,
    face_exposure,
    ita_bin,
    review_set,
    rgb_to_lab,
)
from portrait_studio.testing.photos import astronaut, face_recognition_photos

LIGHT = DeclaredAttributes(age="40s", skin_tone="light", gender_expression="feminine")
BROWN = DeclaredAttributes(age="40s", skin_tone="medium brown", gender_expression="masculine")
DARKER_SKIN = ("obama", "obama2", "obama3")


def darken(img: Image.Image, factor: float) -> Image.Image:
    """Scale exposure in linear light (factor 0.5 = one stop under), back to sRGB."""
    a = np.asarray(img.convert("RGB")).astype(np.float64) / 255
    lin = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4) * factor
    s = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return Image.fromarray((np.clip(s, 0, 1) * 255 + 0.5).astype(np.uint8))


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    fr = face_recognition_photos()
    return {"astronaut": astronaut(), **{k: Image.open(fr[k]).convert("RGB") for k in DARKER_SKIN}}


def make_set(
    folder: Path, photos: dict[str, Image.Image], darker_factor: float, declare: bool = True
) -> list[ReviewItem]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for name, img in photos.items():
        path = folder / f"{name}.png"
        (darken(img, darker_factor) if name in DARKER_SKIN else img).save(path)
        declared = (BROWN if name in DARKER_SKIN else LIGHT) if declare else DeclaredAttributes()
        items.append(ReviewItem(path=str(path), declared=declared))
    return items


def test_lab_conversion_agrees_with_scikit_image() -> None:
    from skimage.color import rgb2lab

    rgb = np.asarray(astronaut())[::8, ::8]
    assert np.allclose(rgb_to_lab(rgb), rgb2lab(rgb), atol=0.05)


def test_ita_bins_use_the_standard_thresholds() -> None:
    assert [ita_bin(x) for x in (60, 50, 30, 20, 0, -40)] == [
        "very light",
        "light",
        "intermediate",
        "tan",
        "brown",
        "dark",
    ]


def test_face_exposure_is_measured_on_face_skin_and_falls_with_exposure(
    photos: dict[str, Image.Image],
) -> None:
    bright = face_exposure(photos["astronaut"])
    dim = face_exposure(darken(photos["astronaut"], 0.5))
    assert bright.face_found and bright.method == "mesh" and bright.skin_pixels > 2000
    assert bright.face_box is not None
    x, y, w, h = bright.face_box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200  # Eileen Collins' face, not the flag
    assert bright.ita_bin in ("very light", "light")
    assert bright.median_l is not None and dim.median_l is not None
    assert dim.median_l < bright.median_l - 10
    assert (dim.ita or 0) < (bright.ita or 0)
    # the shared analysis can hand in a face box instead: same face, similar reading
    boxed = face_exposure(photos["astronaut"], face_box=bright.face_box)
    assert boxed.method == "box" and abs((boxed.median_l or 0) - bright.median_l) < 8


def test_review_flags_a_set_whose_darker_skin_portraits_are_under_exposed(
    tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    report = review_set(make_set(tmp_path, photos, darker_factor=0.4))  # ~1.3 stops under
    assert report.flagged
    [flag] = [g for g in report.groups if g.flag]
    assert (flag.by, flag.group, flag.flag) == ("declared_skin_tone", "medium brown", "under-exposed")
    assert any("'medium brown': under-exposed" in f for f in report.flags)
    astronaut_row = next(i for i in report.images if i.path.endswith("astronaut.png"))
    assert astronaut_row.verdict == "ok"


def test_review_does_not_flag_a_well_exposed_set(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    report = review_set(
        make_set(tmp_path, photos, darker_factor=1.0), {"skin_tone": {"light": 1, "medium brown": 3}}
    )
    assert report.flags == []
    assert all(i.verdict == "ok" for i in report.images)
    # darker skin measures lower L*, and that alone is not a finding
    by_name = {Path(i.path).stem: i.exposure for i in report.images}
    assert (by_name["obama3"].median_l or 0) < (by_name["astronaut"].median_l or 0) - 15


def test_faces_crushed_into_shadow_flag_their_ita_bin_without_any_declarations(
    tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    report = review_set(make_set(tmp_path, photos, darker_factor=0.15, declare=False))
    flagged = [g for g in report.groups if g.flag]
    assert [(g.by, g.group, g.flag) for g in flagged] == [("ita_bin", "dark", "under-exposed")]
    assert all(r.count == 0 for r in report.mix if r.value != "(not declared)")


def test_declared_mix_is_compared_with_the_target_mix(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    path = tmp_path / "a.png"
    photos["astronaut"].save(path)
    measured = face_exposure(path)
    items = [
        ReviewItem(path=str(path), declared=DeclaredAttributes(skin_tone=tone, age="30s"), exposure=measured)
        for tone in ["light"] * 7 + ["deep"]
    ]
    report = review_set(items, {"skin_tone": {"light": 1, "medium": 1, "deep": 1}})
    rows = {r.value: r for r in report.mix if r.attribute == "skin_tone"}
    assert rows["light"].share == 0.875 and rows["light"].flagged
    assert rows["medium"].count == 0 and rows["medium"].flagged
    assert any("skin_tone 'light': 88% of the set, target 33%" in f for f in report.flags)


def test_an_image_without_a_face_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "wall.png"
    Image.new("RGB", (256, 256), (128, 120, 110)).save(path)
    report = review_set([ReviewItem(path=str(path))])
    assert report.images[0].verdict == "no face"
    assert report.flags == ["no face measured in 1 image(s): wall.png"]


def test_diversify_balances_every_attribute_and_covers_combinations() -> None:
    spread = diversify({"age": ["20s", "40s", "60s"], "skin_tone": ["light", "medium", "deep"]}, 9)
    assert len({(r["age"], r["skin_tone"]) for r in spread}) == 9  # a Latin square, not a diagonal
    big = diversify(
        {
            "age": ["20s", "40s", "60s", "80s"],
            "skin_tone": list("abcde"),
            "gender_expression": ["f", "m", "nb"],
        },
        50,
    )
    for attr in ("age", "skin_tone", "gender_expression"):
        counts = Counter(r[attr] for r in big).values()
        assert max(counts) - min(counts) <= 1
    for a, b in itertools.combinations(("age", "skin_tone", "gender_expression"), 2):
        pairs = Counter((r[a], r[b]) for r in big)
        assert max(pairs.values()) - min(pairs.values()) <= 2
    assert diversify({}, 2) == [{}, {}]


def _cli() -> typer.Typer:
    from portrait_studio.cli.review import register

    app = typer.Typer()
    register(app)
    return app


def test_review_cli_flags_the_under_exposed_set_and_passes_the_good_one(
    tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    runner = CliRunner()
    for factor, expected_exit in ((0.4, 1), (1.0, 0)):
        folder = tmp_path / f"set-{factor}"
        make_set(folder, photos, darker_factor=factor)
        declared = tmp_path / f"declared-{factor}.json"
        declared.write_text(
            json.dumps({f"{n}.png": (BROWN if n in DARKER_SKIN else LIGHT).model_dump() for n in photos})
        )
        args = [str(folder), "--declared", str(declared), "--target-mix", "skin_tone=light:1,medium brown:3"]
        table = runner.invoke(_cli(), args)
        assert table.exit_code == expected_exit, table.output
        assert "ITA bin" in table.output and "Declared mix" in table.output
        as_json = runner.invoke(_cli(), [*args, "--json"])
        data = json.loads(as_json.output)
        assert data["flagged"] is (expected_exit == 1)
        assert len(data["images"]) == 4
