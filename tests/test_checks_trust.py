"""The checklist on portraits it was not written against: the named false alarms, waxy skin judged
against the photo itself, posterised skies, big photos, quiet logs and bad inputs (#15, #18, #14, #16)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _checks_helpers import corpus_analysis, corpus_photo
from portrait_studio.analysis import analyze
from portrait_studio.checks import WARN_ONLY, CheckContext, Checklist, run_checklist, warm_up
from portrait_studio.imaging import ImageInputError
from portrait_studio.testing import corpus
from portrait_studio.testing.defects import DEFECTS, SCENE

photo, analysis = corpus_photo, corpus_analysis


@cache
def clean(name: str) -> Checklist:
    return run_checklist(photo(name), analysis=analysis(name))


def made(defect: str, name: str, severity: str = "obvious", seed: int = 3) -> Checklist:
    d = DEFECTS.get(defect) or SCENE[defect]
    img = d.build(photo(name), analysis(name), severity, np.random.default_rng(seed))
    return run_checklist(img, CheckContext(**(d.context or {})))


# --- the corpus -------------------------------------------------------------------------------
def test_the_corpus_holds_thirty_real_people_split_by_person() -> None:
    ps = corpus.portraits()
    people = {p.person for p in ps}
    assert len(people) >= 30
    for person in people:
        assert len({p.split for p in ps if p.person == person}) == 1
    assert 0.2 < len(corpus.portraits("validation")) / len(ps) < 0.5
    suffixes = {corpus.portrait_path(p.name).suffix for p in ps}
    assert {".jpg", ".png"} <= suffixes
    sizes = [Image.open(corpus.portrait_path(p.name)).size for p in ps]
    assert min(w * h for w, h in sizes) < 0.12e6 and max(w * h for w, h in sizes) <= 2.2e6


def test_the_fresh_split_holds_new_people_outside_train_and_validation() -> None:
    """`fresh` measures precision on people no threshold was set on: none of them may be in the
    calibration corpus, and it must not move the train and validation numbers."""
    fresh = corpus.portraits("fresh")
    people = {p.person for p in fresh}
    assert len(people) >= 10 and all(p.split == "fresh" for p in fresh)
    assert not people & {p.person for p in corpus.portraits()}
    assert not {p.name for p in fresh} & {p.name for p in corpus.portraits()}


def test_defects_vary_their_parameters_and_have_two_severities() -> None:
    a = DEFECTS["waxy_guided"].build(photo("obama"), analysis("obama"), "mild", np.random.default_rng(1))
    b = DEFECTS["waxy_guided"].build(photo("obama"), analysis("obama"), "mild", np.random.default_rng(2))
    c = DEFECTS["waxy_guided"].build(photo("obama"), analysis("obama"), "obvious", np.random.default_rng(1))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


# --- the false alarms named in #15 --------------------------------------------------------------
def test_a_name_tag_on_a_uniform_is_scene_text_not_an_overlay() -> None:
    c = made("name_tag", "obama", seed=5)
    assert c.item("background.text").status != "fail", c.item("background.text").explanation


def test_stars_on_a_flag_and_insignia_are_not_debris() -> None:
    c = clean("grace_hopper")
    assert c.item("background.artifacts").status != "fail", c.item("background.artifacts").explanation
    assert c.item("background.text").status != "fail", c.item("background.text").explanation


def test_the_astronauts_normal_teeth_have_no_gap() -> None:
    item = clean("astronaut").item("mouth.teeth")
    assert item.status == "pass", item.explanation


@pytest.mark.parametrize("seed", [2, 3])
def test_the_sandbox_astronauts_teeth_have_no_gap(seed: int) -> None:
    """The sandbox's crops of the astronaut (seeds 2 and 3) read as 'a dark gap ... missing tooth' before."""
    import io

    from portrait_studio.testing.sandbox_images import render

    data = render(seed=seed, prompt="portrait", width=1024, height=1024)
    item = run_checklist(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).item("mouth.teeth")
    assert item.status == "pass", item.explanation


def test_a_mild_beauty_filter_that_took_the_finest_detail_fails() -> None:
    """family_1's mild beauty filter leaves a borderline texture index (it only warned before), but
    the skin's mid-scale shading is 3.6x its fine detail: the finest detail is gone."""
    item = made("waxy_beauty", "family_1", "mild", seed=0x04a10a52).item("skin.texture")
    assert item.status == "fail", item.explanation
    assert "finest detail is gone" in item.explanation
    assert clean("family_1").item("skin.texture").status == "pass"


def test_mild_frequency_separation_on_a_small_face_that_keeps_its_shading_fails() -> None:
    """friends_5's 80 px face, fine layer turned down to about a third: the index stays just above the
    warn band (0.36; it passed before), but the mid-scale shading is 3.5x the fine detail, more
    than any clean face (2.6 at most): the finest detail is gone."""
    item = made("waxy_frequency_separation", "friends_5", "mild", seed=0xEFC1E1B4).item("skin.texture")
    assert item.status == "fail", item.explanation
    assert "finest detail is gone" in item.explanation
    assert clean("friends_5").item("skin.texture").status == "pass"


def test_a_face_retouched_alone_is_judged_against_the_persons_other_skin() -> None:
    """breakingbad_2's mild surface blur leaves an index of 0.38 (it passed before: many clean faces
    measure less), but the face keeps only 0.28x the fine detail of the neck and hands beside it."""
    item = made("waxy_guided", "breakingbad_2", "mild", seed=0x085CA5AF).item("skin.texture")
    assert item.status == "fail", item.explanation
    assert "the person's other skin" in item.explanation
    assert clean("breakingbad_2").item("skin.texture").status == "pass"


def _small_jpeg(name: str, factor: float) -> np.ndarray:
    """The photo downscaled (area averaging) and re-saved as JPEG q80: a small face as a group photo has it."""
    import cv2

    if factor == 1.0:
        return photo(name)
    rgb = cv2.resize(photo(name), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize(("name", "factor", "defect", "seed"), [
    ("feat_anger", 1.0, "waxy_frequency_separation", 0xA88DB660),
    ("breakingbad_1", 0.35, "waxy_skin", 0x8B29D69E),
])
def test_mild_smoothing_that_steepens_the_skins_spectrum_fails(name: str, factor: float, defect: str, seed: int) -> None:
    """Mild smoothing that leaves the texture index in the warn band (0.21-0.24; these warned before)
    still takes the finest detail faster than the coarse shading: the detail-times-spectrum measure
    falls to 0.29-0.44 where clean faces, native or downscaled to 70-150 px and re-saved as JPEG,
    measure 0.64 and up."""
    img = _small_jpeg(name, factor)
    an = analyze(img)
    assert run_checklist(img, analysis=an).item("skin.texture").status != "fail"
    smoothed = DEFECTS[defect].build(img, an, "mild", np.random.default_rng(seed))
    item = run_checklist(smoothed).item("skin.texture")
    assert item.status == "fail", item.explanation
    assert "coarse shading to the finest scale" in item.explanation


def test_an_orange_tint_that_clips_the_skin_is_not_called_waxy_by_its_spectrum() -> None:
    """An obvious orange tint clips the red channel on 76% of feat_smile's skin, which halves the
    spectrum measure (0.94 -> 0.49) without any smoothing: clipped skin is not judged by it."""
    item = made("tinted_face", "feat_smile", "obvious", seed=0x17F35526).item("skin.texture")
    assert item.status != "fail", item.explanation


@pytest.mark.parametrize("name", ["family_3", "t1_1", "t1_3"])
def test_a_clean_face_downscaled_under_80_px_is_not_called_waxy(name: str) -> None:
    """At 66-73 px a pore is under a pixel and the face's shading outweighs its fine detail (ratio
    2.9-3.6 on these clean faces): the smoothed-shape rule asks for more on small faces (t1_3 at 0.6x
    failed before)."""
    import cv2

    small = cv2.resize(photo(name), None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    item = run_checklist(small).item("skin.texture")
    assert item.status != "fail", item.explanation


def test_a_closed_mouth_has_no_teeth_to_judge() -> None:
    """feat_profile's lips are closed: the bright lip line read as 'teeth visible' before."""
    item = clean("feat_profile").item("mouth.teeth")
    assert item.status == "not_applicable", item.explanation


def test_a_missing_tooth_beside_a_shaded_side_tooth_is_a_gap() -> None:
    """The tooth beyond the slot is a side tooth in the mouth's shade: duller than the front teeth,
    far brighter than the slot. It bounds the gap (before, only front-tooth-bright columns did)."""
    item = made("missing_tooth", "feat_single", "obvious", seed=0x66646594).item("mouth.teeth")
    assert item.status == "fail", item.explanation
    assert clean("feat_single").item("mouth.teeth").status == "pass"


@pytest.mark.parametrize(("defect", "name", "seed"), [("missing_tooth", "friends_2", 0x86207CAB),
                                                      ("tooth_gap", "breakingbad_1", 0x75B018AE)])
def test_a_gap_beside_the_mouths_dark_corner_is_a_gap(defect: str, name: str, seed: int) -> None:
    """Past the slot the row runs on into the corner's shade: no tooth as light as the front teeth
    bounds it, so it read as the corner before (bench seeds, training split). A side tooth beyond it
    is at least twice as light as the slot; the shade of a clean corner deepens gradually."""
    item = made(defect, name, "obvious", seed=seed).item("mouth.teeth")
    assert item.status == "fail", item.explanation
    assert clean(name).item("mouth.teeth").status == "pass"


def test_a_two_pixel_dark_run_in_a_childs_small_mouth_is_not_a_missing_tooth() -> None:
    """A 22 px mouth in a group photo: 5% of it is one pixel, and sharpening, a blur elsewhere or
    a watermark moved its reading from 0.049 to 0.098 (two pixels) and failed it. A gap must also
    be 3 native pixels wide to fail."""
    import hashlib

    seed = int(hashlib.sha256(b"fresh_child_girl/oversharpened/mild").hexdigest()[:8], 16)
    item = made("oversharpened", "fresh_child_girl", "mild", seed=seed).item("mouth.teeth")
    assert item.status in ("pass", "warn"), item.explanation


def test_a_corner_that_darkens_outwards_is_not_a_gap_but_a_slot_before_a_side_tooth_is() -> None:
    """Column lightness (share of the front teeth's) from the front teeth towards one corner."""
    from portrait_studio.checks.mouth import _widest_inner_run, _widest_slot

    def widest(level: list[float]) -> int:
        lv = np.array(level)
        return max(_widest_inner_run(lv < 0.5, lv >= 0.7), _widest_slot(lv < 0.5, lv >= 0.3, lv))

    assert widest([0.9, 0.9, 0.45, 0.35, 0.3, 0.2, 0.15, 0.1, 0.1, 0.05]) == 0  # the corner's shade
    assert widest([0.9, 0.9, 0.12, 0.12, 0.12, 0.35, 0.3, 0.2, 0.1, 0.05]) == 3  # a slot, a side tooth
    assert widest([0.05, 0.1, 0.3, 0.35, 0.12, 0.12, 0.12, 0.9, 0.9]) == 3  # the same, mirrored
    assert widest([0.9, 0.2, 0.2, 0.9]) == 2  # between two teeth, as before


def _grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)] * 3)


def test_a_tongue_in_a_black_and_white_photo_is_not_teeth() -> None:
    """feat_surprise's open mouth shows a tongue, no teeth. In grey nothing has colour, and the
    tongue read as teeth before (so generated 'gaps' landed on it); it is no lighter than the lips."""
    assert clean("feat_surprise").item("mouth.teeth").status == "not_applicable"
    item = run_checklist(_grey(photo("feat_surprise"))).item("mouth.teeth")
    assert item.status == "not_applicable", item.explanation


@pytest.mark.parametrize("name", ["astronaut", "obama"])
def test_teeth_in_a_black_and_white_photo_are_still_judged(name: str) -> None:
    """The astronaut's and Obama's normal teeth, in grey: teeth, no gap; a tooth gap still fails."""
    grey = _grey(photo(name))
    assert run_checklist(grey).item("mouth.teeth").status == "pass"
    gap = DEFECTS["tooth_gap"].build(grey, analyze(grey), "obvious", np.random.default_rng(4))
    item = run_checklist(gap).item("mouth.teeth")
    assert item.status == "fail", item.explanation


def test_debris_is_looked_for_on_the_backdrop_not_on_the_subject() -> None:
    c = made("stray_artifacts", "astronaut")
    item = c.item("background.artifacts")
    assert item.status == ("warn" if "background.artifacts" in WARN_ONLY else "fail") and item.region is not None
    assert item.measured is not None and item.measured >= 2
    person = analysis("astronaut").person_mask > 0.5
    x0, y0, x1, y1 = item.region
    assert person[y0:y1, x0:x1].mean() < 0.5
    assert clean("astronaut").item("background.artifacts").status == "pass"


def test_an_overlay_across_the_subject_still_fails() -> None:
    for defect, name in (("watermark", "astronaut"), ("tiled_watermark", "obama"), ("overlaid_text", "obama")):
        item = made(defect, name).item("background.text")
        assert item.status == "fail", (defect, item.explanation)


def _sign(name: str, text: str, behind: bool) -> Checklist:
    """Dark lettering on the backdrop beside the head. `behind`: a sign behind the subject,
    starting under the head (hidden by it) and running out past the right edge; else the words laid
    whole in the top-right margin, as a caption is."""
    from PIL import ImageDraw

    from portrait_studio.testing.defects import _font

    rgb = photo(name)
    im = Image.fromarray(rgb)
    w, h = im.size
    box = analysis(name).face.box
    if behind:  # beside the top of the head, below the frame's top margin band
        size = max(14, int(0.03 * h))
        xy = (int((box[0] + box[2]) / 2), int(box[1] - 1.3 * size))
    else:
        size = max(14, int(0.045 * h))
        xy = (int(w * 0.96 - _font(size, 1).getlength(text)), int(0.015 * h))
    font = _font(size, 1)
    ImageDraw.Draw(im).text(xy, text, fill=(25, 25, 40), font=font)
    out = np.asarray(im)
    if behind:
        person = analysis(name).person_mask[..., None] > 0.5
        out = np.where(person, rgb, out)
    return run_checklist(np.ascontiguousarray(out))


def test_an_eye_measured_through_a_watermark_across_the_face_warns_and_the_overlay_fails() -> None:
    """A watermark laid across a small face adds its letters' edges to the skin the eye is compared
    with: the eye read 'soft' (0.25x) although nothing changed in it. The image still fails, on
    the overlay, and the eye item says why it only warns."""
    import hashlib

    seed = int(hashlib.sha256(b"fresh_gray_man/watermark/obvious").hexdigest()[:8], 16)
    checklist = made("watermark", "fresh_gray_man", "obvious", seed=seed)
    assert checklist.item("background.text").status == "fail"
    eye = checklist.item("eyes.sharpness")
    assert eye.status == "warn" and "overlay" in eye.explanation
    assert checklist.overall == "fail"


def test_a_caption_in_the_corner_leaves_the_eye_item_as_it_was() -> None:
    from portrait_studio.checks import _through_overlay
    from portrait_studio.checks.base import CheckResult

    soft = CheckResult(item="eyes.sharpness", status="fail", measured=0.4, threshold=0.8, explanation="soft.",
                       region=[40, 40, 60, 50])
    caption = CheckResult(item="background.text", status="fail", explanation="caption.", region=[0, 180, 60, 200])
    assert _through_overlay([soft, caption], (30, 20, 90, 100))[0].status == "fail"
    across = caption.model_copy(update={"region": [10, 30, 190, 70]})
    assert _through_overlay([soft, across], (30, 20, 90, 100))[0].status == "warn"
    beside = caption.model_copy(update={"region": [0, 10, 200, 60], "parts": [[0, 10, 25, 30], [150, 40, 200, 60]]})
    assert _through_overlay([soft, beside], (30, 20, 90, 100))[0].status == "fail"  # credits either side of it


def test_a_sign_behind_the_subject_that_runs_out_of_the_frame_is_scene_text() -> None:
    """A press-wall sign behind the subject ran out of the frame and read as a caption in the margin
    (a fresh-split photo: 'WOOD', 'IGN', 'CIATION'). A line that starts at the subject's outline and
    ends at the frame's edge has no visible start or end: it is part of the scene. The same words
    laid whole in the frame's margin are still a caption."""
    sign = _sign("obama", "FOREIGN PRESS ASSOCIATION AWARDS", behind=True).item("background.text")
    assert sign.status == "warn", sign.explanation
    caption = _sign("obama", "PRESS", behind=False).item("background.text")
    assert caption.status == "fail", caption.explanation


# --- waxy skin, judged against the photo's own detail --------------------------------------------
@pytest.mark.parametrize("defect", ["waxy_skin", "waxy_guided", "waxy_frequency_separation", "waxy_blur", "waxy_beauty"])
def test_every_kind_of_plastic_skin_fails_texture(defect: str) -> None:
    assert clean("obama").item("skin.texture").status == "pass"
    item = made(defect, "obama").item("skin.texture")
    assert item.status == "fail", item.explanation


def test_posterisation_steps_do_not_count_as_skin_detail() -> None:
    """Old measure: a bilateral-smoothed face measured *more* texture than the clean one, because
    the steps it leaves are strong edges. A median of fine detail is not moved by a few steps."""
    import cv2

    rgb = photo("feat_smile")
    an = analysis("feat_smile")
    waxy = DEFECTS["waxy_skin"].build(rgb, an, "obvious", np.random.default_rng(4))
    stepped = (np.floor(waxy.astype(np.float32) / 12) * 12 + 6).astype(np.uint8)
    skin = an.face_skin_mask()
    stepped = np.where(skin[..., None], stepped, rgb)
    stepped = cv2.GaussianBlur(stepped, (0, 0), 0.3)
    item = run_checklist(stepped).item("skin.texture")
    assert item.status == "fail", item.explanation


# --- banding --------------------------------------------------------------------------------------
def test_a_posterised_sky_fails_banding_and_a_smooth_one_passes() -> None:
    rng = np.random.default_rng(11)
    banded = made("banded_sky", "obama", "mild", seed=11).item("background.banding")
    assert banded.status == "fail", banded.explanation
    an = analysis("obama")
    h, w = an.shape
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = np.array([50, 100, 190], np.float32) + t * np.array([140, 110, 50], np.float32)
    sky = np.clip(sky + rng.normal(0, 1.2, (h, w, 3)), 0, 255)
    bg = ~(an.person_mask > 0.3)
    smooth = np.where(bg[..., None], sky, photo("obama")).astype(np.uint8)
    assert run_checklist(smooth).item("background.banding").status != "fail"


# --- items that cannot be trusted yet warn, and say so ---------------------------------------------
def test_items_below_the_precision_bar_warn_and_say_so() -> None:
    assert "export.sharpening" in WARN_ONLY
    item = made("oversharpened", "obama").item("export.sharpening")
    assert item.status == "warn"
    assert "warns instead of failing" in item.explanation


# --- speed and size -------------------------------------------------------------------------------
def test_a_big_photo_is_analysed_at_a_bounded_working_size_with_native_coordinates() -> None:
    import cv2

    small = photo("obama")
    big = cv2.resize(small, None, fx=3.2, fy=3.2, interpolation=cv2.INTER_CUBIC)  # ~10.6 MP
    t0 = time.perf_counter()
    c = run_checklist(big)
    took = time.perf_counter() - t0
    ref = clean("obama")
    assert c.width == big.shape[1] and c.height == big.shape[0]
    for name in ("eyes.sharpness", "skin.tone", "lighting.pattern", "background.text"):
        assert c.item(name).status == ref.item(name).status, name
    r = c.item("eyes.sharpness").region
    r0 = ref.item("eyes.sharpness").region
    assert r is not None and r0 is not None
    assert abs(r[0] / 3.2 - r0[0]) < 12 and abs(r[1] / 3.2 - r0[1]) < 12
    assert took < 20, took


def test_warm_up_returns_at_once_and_the_first_check_waits_for_it() -> None:
    import portrait_studio.analysis as A

    t0 = time.perf_counter()
    warm_up()
    warm_up()
    assert time.perf_counter() - t0 < 0.5
    thread = A._warm_thread
    assert isinstance(thread, threading.Thread) and thread.daemon
    models = A._models()
    assert models is A._models()
    thread.join(60)
    assert A._models() is models


# --- bad input --------------------------------------------------------------------------------------
def test_bombs_folders_and_non_images_get_a_clear_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    folder = tmp_path / "shots"
    folder.mkdir()
    for path, words in ((bomb, "MP"), (text, "not an image"), (folder, "folder")):
        with pytest.raises(ImageInputError) as err:
            run_checklist(path)
        assert words in str(err.value) and str(path.name) in str(err.value)
        assert err.value.hint


def test_portrait_check_names_a_folder_or_a_bomb_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb)
    folder = tmp_path / "shots"
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    for path, words in ((folder, ("is a folder", "is a directory")), (bomb, ("MP",))):
        res = subprocess.run([sys.executable, "-m", "portrait_studio", "check", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 2, res.stderr
        assert any(w in res.stderr for w in words) and path.name in res.stderr and "Traceback" not in res.stderr


# --- quiet ------------------------------------------------------------------------------------------
NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |XNNPACK|TensorFlow Lite|inference_feedback_manager|absl::|onnxruntime", re.M)


def test_portrait_check_prints_no_native_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "astronaut.png"
    Image.fromarray(photo("astronaut")).save(path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop("GLOG_minloglevel", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    res = subprocess.run([sys.executable, "-m", "portrait_studio", "check", str(path), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode in (0, 1), res.stderr
    assert not NATIVE_LOG.search(res.stderr), res.stderr
    assert '"items"' in res.stdout


# --- #15, second round: the held-out cases, measured against the photo itself ---------------------
def _face_skin_only(name: str, smoothed: np.ndarray) -> np.ndarray:
    """`smoothed` on the face's skin (feathered), the original everywhere else: eyes, brows and
    mouth stay sharp, as a retoucher's skin mask leaves them."""
    import cv2

    an = analysis(name)
    mask = cv2.GaussianBlur(an.face_skin_mask().astype(np.float32), (0, 0), 1.0)[..., None]
    return np.clip(photo(name) * (1 - mask) + smoothed * mask, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
@pytest.mark.parametrize("recipe", ["iterated bilateral", "plain blur"])
def test_waxy_skin_fails_on_a_small_studio_portrait_and_an_older_face_with_glasses(name: str, recipe: str) -> None:
    """The held-out cases of #15: a 512 px studio portrait (face ~100 px) and an older face with
    glasses, smoothed on the skin only. The old absolute threshold passed all of them."""
    import cv2

    rgb = photo(name)
    if recipe == "iterated bilateral":
        smooth = rgb.copy()
        for _ in range(5):
            smooth = cv2.bilateralFilter(smooth, 9, 60, 9)
    else:
        smooth = cv2.GaussianBlur(rgb, (0, 0), 0.02 * analysis(name).face.width)  # type: ignore[union-attr]
    assert clean(name).item("skin.texture").status != "fail"
    item = run_checklist(_face_skin_only(name, smooth)).item("skin.texture")
    assert item.status == "fail", item.explanation


def test_a_sky_posterised_into_a_few_hard_bands_fails_even_after_jpeg() -> None:
    """Hard bands (six levels, 20-30 levels a step) used to read as texture and pass."""
    import cv2

    for name in ("feat_smile", "gd_1"):
        an = analysis(name)
        h = an.shape[0]
        t = np.clip(np.linspace(-0.07, 1.05, h, dtype=np.float32), 0, 1)[:, None, None]
        sky = np.array([40, 90, 190], np.float32) + np.floor(t * 6) / 6 * np.array([150, 120, 50], np.float32)
        bg = ~cv2.dilate((an.person_mask > 0.3).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        img = np.where(bg[..., None], sky, photo(name)).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        item = run_checklist(np.ascontiguousarray(jpeg)).item("background.banding")
        assert item.status == "fail", (name, item.explanation)


def test_half_a_stop_over_clips_the_faces_red_channel_and_fails() -> None:
    """Skin clips one channel long before its luma reaches 252: +0.6 stop on this face passed before."""
    img = np.clip(photo("gd_1").astype(np.float32) * 1.55, 0, 255).astype(np.uint8)
    assert clean("gd_1").item("lighting.highlights").status == "pass"
    item = run_checklist(img).item("lighting.highlights")
    assert item.status == "fail", item.explanation


def test_a_blown_face_the_detector_lost_is_judged_on_the_subjects_head() -> None:
    """A blown-out face defeats the face detector first (biden 1.6 stops over: no face is found);
    with no face only a warning for a mostly white frame was left. The clean photo, its face
    taken away as well, still passes."""
    import dataclasses

    img = np.clip(photo("biden").astype(np.float32) * 3.0, 0, 255).astype(np.uint8)
    an = analyze(img)
    assert an.face is None
    item = run_checklist(img, analysis=an).item("lighting.highlights")
    assert item.status == "fail" and "head" in item.explanation, item.explanation
    calm = dataclasses.replace(analysis("biden"), faces=[])
    assert run_checklist(photo("biden"), analysis=calm).item("lighting.highlights").status == "pass"


def test_a_stop_over_on_a_dark_face_fails_on_the_clipped_subject() -> None:
    """Dark skin stays under 255 a stop over while the hair, clothes and hands blow out: the face's
    own measure passed it. The face here is darkened to a deep skin tone before the push."""
    import cv2

    from portrait_studio.analysis import FACE_OVAL_IDX

    an = analysis("family_3")
    oval = cv2.GaussianBlur(an.region_mask(FACE_OVAL_IDX).astype(np.float32), (0, 0), 3.0)[..., None]
    dark = photo("family_3").astype(np.float32) * (1 - 0.6 * oval)
    img = np.clip(dark * 1.9, 0, 255).astype(np.uint8)
    before = run_checklist(dark.astype(np.uint8)).item("lighting.highlights")
    assert before.status == "pass", before.explanation
    item = run_checklist(img).item("lighting.highlights")
    assert item.status == "fail" and "subject" in item.explanation, item.explanation


def test_an_eye_in_deep_shadow_is_not_called_soft() -> None:
    """The coach squints into stadium light: his nearer eye is a dark slit, not a missed focus."""
    item = clean("zidane").item("eyes.sharpness")
    assert item.status != "fail", item.explanation


def test_a_studio_logo_in_the_corner_over_a_group_fails_and_a_name_tag_does_not() -> None:
    c = made("logo", "family_3", "obvious", seed=4)
    assert c.item("background.text").status == "fail", c.item("background.text").explanation
    for name in ("obama", "fd_2"):
        tag = made("name_tag", name, seed=5).item("background.text")
        assert tag.status != "fail", (name, tag.explanation)


def test_ocr_reads_a_text_free_photo_at_a_fraction_of_a_full_pass() -> None:
    """Only the caption strips and the spots a small detector pass responds to are read."""
    from portrait_studio.checks.background import _borrowed_ocr, _proposals

    rgb = photo("gd_1")
    with _borrowed_ocr() as engine:
        boxes = _proposals(engine, np.ascontiguousarray(rgb[..., ::-1]))
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    assert area < 0.5 * rgb.shape[0] * rgb.shape[1], boxes


def test_the_first_photo_is_not_pinned_by_the_model_load() -> None:
    """Models load in their own thread: loading them from inside `analyze` kept that call's frame,
    and the photo in it, alive for the life of the process (63 MB more at 21 MP)."""
    code = (
        "import gc, weakref, numpy as np\n"
        "from portrait_studio.testing import corpus\n"
        "from portrait_studio.analysis import analyze\n"
        "rgb = np.array(corpus.load('obama'))\n"
        "ref = weakref.ref(rgb)\n"
        "an = analyze(rgb)\n"
        "del rgb, an\n"
        "gc.collect()\n"
        "print('alive' if ref() is not None else 'freed')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "freed"


def test_a_small_face_in_a_phone_group_photo_is_not_called_waxy_by_its_surroundings() -> None:
    """A 96 px face: the "other skin" coloured like its cheeks is a few hundred pixels of hair, wood
    and fabric with far more detail than skin; it may make the item warn, never fail."""
    item = clean("friends_3").item("skin.texture")
    assert item.status != "fail", item.explanation


@pytest.mark.parametrize("name", ["feat_beard", "gd_1"])
def test_a_frame_around_the_picture_is_not_banding(name: str) -> None:
    """A stock preview's light mat (or a letterbox) is one straight step along a side of the
    frame, not a posterised gradient; the stock photo's own mark still fails as an overlay."""
    rgb = photo(name)
    if name == "gd_1":
        h, w = rgb.shape[:2]
        pad = max(8, int(0.025 * max(h, w)))
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), constant_values=236)
    c = run_checklist(rgb)
    assert c.item("background.banding").status != "fail", c.item("background.banding").explanation
    if name == "feat_beard":
        assert c.item("background.text").status == "fail", c.item("background.text").explanation


def test_a_neighbour_cut_by_the_frame_is_not_taken_for_the_subject() -> None:
    """Friends in a group crop: the girl half out of the frame's corner is as wide as the subject.
    Taking her for the main face put the subject's name tag "over the face" and failed it."""
    for seed in (3, 5):
        c = made("name_tag", "friends_4", seed=seed)
        assert c.item("background.text").status != "fail", c.item("background.text").explanation
    an = analysis("friends_4")
    h, w = an.shape
    x0, y0, x1, y1 = an.face.box  # type: ignore[union-attr]
    assert x0 > 1 and y0 > 1 and x1 < w - 1 and y1 < h - 1
