"""The eye items on the training photos that fooled them (#15): a recoloured iris the old sample
missed, pairs that only differed by shade, a turned head or a lid, and hidden eyes (a dark slit,
sunglasses with glints) that exposure or sharpening made read as soft ones."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from _checks_helpers import corpus_analysis, corpus_photo
from portrait_studio.analysis import Analysis, analyze
from portrait_studio.checks.base import CheckContext, CheckResult
from portrait_studio.checks.eyes import check_eyes
from portrait_studio.testing.defects import DEFECTS

photo, analysis = corpus_photo, corpus_analysis


def eyes(img: np.ndarray) -> dict[str, CheckResult]:
    return {r.item: r for r in check_eyes(img, analyze(img), CheckContext())}


def made(defect: str, name: str, severity: str) -> np.ndarray:
    """The defect exactly as `bench/bench_checks.py` makes it (same seed)."""
    seed = int(hashlib.sha256(f"{name}/{defect}/{severity}".encode()).hexdigest()[:8], 16)
    return DEFECTS[defect].build(photo(name), analysis(name), severity, np.random.default_rng(seed))


def sunglasses(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Dark tinted lenses over both eyes, shaded top to bottom, each with a glint streak and a spot."""
    import cv2

    f = an.face
    assert f is not None and f.landmarks is not None
    out = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    for side in ("left", "right"):
        p = f.points(f.eye(side))
        c, ew = p.mean(0), float(np.ptp(p[:, 0]))
        lens_mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(lens_mask, (int(c[0]), int(c[1])), (int(ew * 0.85), int(ew * 0.6)), 0, 0, 360, (1,), -1)
        alpha = cv2.GaussianBlur(lens_mask.astype(np.float32), (0, 0), max(1.0, ew * 0.03))[..., None]
        shade = (np.arange(h, dtype=np.float32)[:, None] - c[1]) / (ew * 0.6)
        lens = np.stack([22 + 18 * shade, 26 + 18 * shade, 32 + 18 * shade], -1) * np.ones((1, w, 1), np.float32)
        glint = np.zeros((h, w), np.float32)
        cv2.line(glint, (int(c[0] - ew * 0.5), int(c[1] - ew * 0.1)), (int(c[0] - ew * 0.1), int(c[1] - ew * 0.45)),
                 (1.0,), max(1, int(ew * 0.06)))
        cv2.circle(glint, (int(c[0] + ew * 0.35), int(c[1] + ew * 0.2)), max(1, int(ew * 0.05)), (1.0,), -1)
        lens += 200 * cv2.GaussianBlur(glint, (0, 0), max(0.7, ew * 0.02))[..., None]
        out = out * (1 - alpha) + lens * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


# --- eyes.pair --------------------------------------------------------------------------------
def test_a_recoloured_dark_iris_is_caught_when_the_mesh_slides_to_the_dark_remnant() -> None:
    """Biden's left iris recoloured green: the refitted mesh centres on the dark, unrecoloured edge,
    so the old sample (pupil and lashes included) read ΔE 9. The ring sample sees the green."""
    r = eyes(made("mismatched_irises", "biden", "mild"))["eyes.pair"]
    assert r.status == "fail", r.explanation
    assert r.measured is not None and r.measured > 25


def test_clean_irises_measure_well_under_the_threshold() -> None:
    """fd_2's irises are the same brown; the old median (pupil, catchlight, lid shadow) put them ΔE 8 apart."""
    r = eyes(photo("fd_2"))["eyes.pair"]
    assert r.status == "pass" and r.measured is not None and r.measured < 6, r.explanation


@pytest.mark.parametrize("severity", ["mild", "obvious"])
def test_an_iris_crushed_to_black_is_not_compared_by_colour(severity: str) -> None:
    """Crushed shadows leave one iris a few levels above black: its 'colour' is quantisation noise,
    not a mismatch (t1_3's irises read ΔE 22 and 18 before; its clean pair measures 3)."""
    result = eyes(made("clipped_shadows", "t1_3", severity))["eyes.pair"]
    assert result.status == "not_applicable" and "crushed" in result.explanation


def test_a_recoloured_iris_beside_a_dark_one_is_still_compared() -> None:
    """The crushed-iris rule leaves dark but readable irises alone (family_4's clean irises are
    among the darkest in the corpus)."""
    assert eyes(made("mismatched_irises", "family_4", "mild"))["eyes.pair"].status == "fail"


def test_an_eye_in_deep_shade_is_not_a_mismatched_pair() -> None:
    """Half of the face in dark shade: a tint shifts the lit iris more than the shaded one (old: ΔE 22, fail)."""
    r = eyes(made("tinted_face", "breakingbad_1", "mild"))["eyes.pair"]
    assert r.status != "fail", r.explanation


def test_a_turned_head_is_not_an_iris_size_mismatch() -> None:
    """A three-quarter view foreshortens the far iris's width (old: 1.98x the size, fail); heights match."""
    r = eyes(made("oversharpened", "breakingbad_2", "mild"))["eyes.pair"]
    assert r.status != "fail", r.explanation
    assert "turned" in r.explanation


# --- eyes.sharpness ---------------------------------------------------------------------------
def test_a_dark_slit_eye_stays_hidden_one_stop_brighter() -> None:
    """Zidane squints into stadium light; +1 stop widened his dark slit's spread past 40 levels and it
    was judged soft (0.47). As shares of the skin it is still dark with no sclera."""
    r = eyes(made("blown_highlights", "zidane", "mild"))["eyes.sharpness"]
    assert r.status == "pass", r.explanation
    assert "hidden" in r.explanation


@pytest.mark.parametrize("defect", ["oversharpened", "blown_highlights", "tinted_face"])
def test_sunglasses_with_glints_hide_the_eyes_after_any_contrast_change(defect: str) -> None:
    """Dark lenses with glints: oversharpening made one lens read as a soft eye (old: 0.62, fail)."""
    base = sunglasses(photo("obama"), analysis("obama"))
    assert eyes(base)["eyes.sharpness"].status == "not_applicable"
    seed = int(hashlib.sha256(f"sunglasses/{defect}".encode()).hexdigest()[:8], 16)
    img = DEFECTS[defect].build(base, analyze(base), "obvious", np.random.default_rng(seed))
    r = eyes(img)["eyes.sharpness"]
    assert r.status == "not_applicable", r.explanation


def test_an_eye_crushed_to_black_with_its_skin_is_hidden_not_soft() -> None:
    """Crushed shadows on a dark black-and-white photo leave the eyes and the skin beside them at
    black: no detail is left to judge (it read 0.00, 'soft'); the shadows item reports the crush."""
    result = eyes(made("clipped_shadows", "fresh_gray_woman", "obvious"))["eyes.sharpness"]
    assert result.status != "fail", result.explanation

