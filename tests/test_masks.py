"""Region masks cover the anatomy they name, and little else, on real photos."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portrait_studio.analysis import (
    CHEEK_L_IDX,
    CHEEK_R_IDX,
    FACE_OVAL_IDX,
    INNER_MOUTH_IDX,
    LEFT_EYE_IDX,
    LEFT_IRIS_CENTER,
    LIPS_OUTER_IDX,
    RIGHT_EYE_IDX,
    RIGHT_IRIS_CENTER,
    Analysis,
    analyze,
)
from portrait_studio.errors import CheckError
from portrait_studio.finishing.masks import RegionMask, hand_scale, region_mask, region_masks, save_masks
from portrait_studio.testing import photos


@cache
def astronaut() -> Analysis:
    return analyze(photos.astronaut())


@cache
def group() -> Analysis:
    return analyze(Image.open(photos.group_with_hands()))


def inside(mask: RegionMask, points: np.ndarray) -> np.ndarray:
    m = np.asarray(mask.mask) > 0
    xy = np.round(points[:, :2]).astype(int)
    return m[xy[:, 1], xy[:, 0]]


def test_every_lip_landmark_is_inside_the_mouth_mask():
    an = astronaut()
    mouth = region_mask(an, "mouth")
    assert inside(mouth, an.face.points(LIPS_OUTER_IDX + INNER_MOUTH_IDX)).all()


def test_mouth_and_teeth_masks_are_small_next_to_the_face():
    an = astronaut()
    face = region_mask(an, "face").area
    mouth, teeth = region_mask(an, "mouth"), region_mask(an, "teeth")
    assert 0.04 < mouth.area / face < 0.2
    assert teeth.area < mouth.area
    assert (np.asarray(teeth.mask) <= np.asarray(mouth.mask)).all()  # the opening lies within the lips
    assert inside(teeth, an.face.points(INNER_MOUTH_IDX)).all()
    assert not inside(teeth, an.face.points(CHEEK_L_IDX + CHEEK_R_IDX)).any()


def test_iris_centres_and_lids_are_inside_the_eye_masks_and_each_eye_is_its_own():
    an = astronaut()
    f = an.face
    left, right, both = (region_mask(an, r) for r in ("eye_left", "eye_right", "eyes"))
    assert inside(left, f.points([LEFT_IRIS_CENTER, *LEFT_EYE_IDX])).all()
    assert inside(right, f.points([RIGHT_IRIS_CENTER, *RIGHT_EYE_IDX])).all()
    assert not inside(left, f.points([RIGHT_IRIS_CENTER])).any()
    assert not inside(right, f.points([LEFT_IRIS_CENTER])).any()
    assert both.area == left.area + right.area  # two separate islands
    assert both.area / region_mask(an, "face").area < 0.12
    assert not inside(both, f.points(LIPS_OUTER_IDX)).any()


def test_skin_mask_keeps_clear_of_eyes_and_lips_but_covers_the_cheeks():
    an = astronaut()
    skin = region_mask(an, "skin")
    f = an.face
    assert inside(skin, f.points(CHEEK_L_IDX + CHEEK_R_IDX)).all()
    alpha = np.asarray(skin.feathered)
    for idx in (LIPS_OUTER_IDX, LEFT_EYE_IDX, RIGHT_EYE_IDX):
        xy = np.round(f.points(idx)).astype(int)
        assert (alpha[xy[:, 1], xy[:, 0]] == 0).all(), "the feather must not reach the features"


def test_face_mask_holds_the_whole_mesh_and_not_the_background():
    an = astronaut()
    face = region_mask(an, "face")
    assert inside(face, an.face.points(FACE_OVAL_IDX)).all()
    assert inside(face, an.face.landmarks).mean() > 0.98
    h, w = an.shape
    assert face.area < 0.1 * h * w


def test_each_hand_mask_holds_its_21_landmarks_and_not_the_other_hands():
    an = group()
    assert len(an.hands) >= 2
    masks = region_masks(an)
    for i, hand in enumerate(an.hands):
        m = masks[f"hand_{i}"]
        assert inside(m, hand.landmarks).all()
        assert m.area < 6 * hand_scale(hand) ** 2  # about the hand's own size
        for j, other in enumerate(an.hands):
            if j != i:
                assert not inside(m, other.landmarks).any()
    assert inside(masks["hands"], np.concatenate([h.landmarks for h in an.hands])).all()


def test_masks_follow_the_face_when_the_photo_is_smaller():
    big = region_mask(astronaut(), "mouth")
    small_an = analyze(photos.astronaut().resize((256, 256), Image.Resampling.LANCZOS))
    small = region_mask(small_an, "mouth")
    assert small.area / big.area == pytest.approx(0.25, rel=0.3)
    assert small.feather_px <= big.feather_px


def test_save_masks_writes_one_png_per_region_and_an_overlay(tmp_path: Path):
    paths = save_masks(astronaut(), tmp_path / "masks")
    assert {"mouth", "teeth", "eyes", "eye_left", "eye_right", "face", "skin", "overlay"} <= set(paths)
    mouth = Image.open(paths["mouth"])
    assert mouth.mode == "L" and mouth.size == (512, 512)
    values = np.unique(np.asarray(mouth))
    assert values[0] == 0 and values[-1] == 255 and len(values) > 2  # feathered, not binary
    assert Image.open(paths["overlay"]).size == (512, 512)


def test_a_region_that_is_not_there_says_so():
    with pytest.raises(CheckError, match="hand"):
        region_mask(astronaut(), "hands")
    blank = analyze(np.full((128, 128, 3), 90, np.uint8))
    with pytest.raises(CheckError, match="no face"):
        region_mask(blank, "mouth")
    with pytest.raises(CheckError, match="unknown region"):
        region_mask(astronaut(), "elbow")


def test_every_mask_is_white_where_the_model_repaints():
    """Inpainting APIs read white as 'repaint': a mask of 0/1 values would repaint nothing."""
    an = astronaut()
    for name in ("mouth", "teeth", "eye_left", "eye_right", "eyes", "face", "skin"):
        values = set(np.unique(np.asarray(region_mask(an, name).mask)).tolist())
        assert values == {0, 255}, name
