"""The final checklist on real photos and on synthetic defects made from them."""

from __future__ import annotations

import json
import types
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from _checks_helpers import analysis, photo
from portrait_studio.analysis import (
    FACE_OVAL_IDX,
    INNER_MOUTH_IDX,
    LEFT_IRIS_IDX,
    analyze,
)
from portrait_studio.checks import WARN_ONLY, CheckContext, Checklist, run_checklist
from portrait_studio.checks.export import estimate_upscale
from portrait_studio.cli.check import register
from portrait_studio.testing.defects import DEFECTS


@cache
def clean(name: str) -> Checklist:
    return run_checklist(photo(name), analysis=analysis(name))


@cache
def defective(defect: str, name: str) -> Checklist:
    d = DEFECTS[defect]
    img = d.build(photo(name), analysis(name))
    return run_checklist(img, CheckContext(**(d.context or {})))


def failed(c: Checklist) -> set[str]:
    return {it.item for it in c.failed}


# --- analysis --------------------------------------------------------------------------------
def test_analysis_finds_the_face_mesh_with_irises_on_the_astronaut() -> None:
    an = analysis("astronaut")
    face = an.face
    assert face is not None and face.landmarks is not None
    assert face.landmarks.shape == (478, 3)
    x0, y0, x1, y1 = face.box
    centre, radius = face.iris("left")
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1
    assert 2 < radius < 15
    assert an.region_mask(FACE_OVAL_IDX).sum() > an.region_mask(INNER_MOUTH_IDX).sum() > 0
    assert an.skin_mask[y0:y1, x0:x1].mean() > 0.4
    assert len(LEFT_IRIS_IDX) == 4


def test_analysis_finds_hands_and_small_faces_in_the_group_photo() -> None:
    an = analysis("group")
    assert len(an.hands) >= 2
    assert all(h.landmarks.shape == (21, 3) for h in an.hands)
    assert len(an.hand_boxes) == len(an.hands)
    assert sum(f.landmarks is not None for f in an.faces) >= 2


def test_analysis_with_dlib_adds_68_points() -> None:
    an = analyze(photo("astronaut"), dlib68=True)
    assert an.face is not None and an.face.dlib68 is not None and an.face.dlib68.shape == (68, 2)


# --- clean real portraits pass -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut", "obama", "obama2", "biden"])
def test_clean_real_portrait_passes(name: str) -> None:
    c = clean(name)
    assert c.overall != "fail", [(i.item, i.explanation) for i in c.failed]
    assert c.item("eyes.sharpness").status == "pass"
    assert c.item("background.text").status == "pass"
    assert c.score > 80


def test_every_item_reports_measurement_threshold_and_explanation() -> None:
    c = clean("obama")
    names = {it.item.split(".")[0] for it in c.items}
    assert names == {"eyes", "skin", "mouth", "hands", "lighting", "background", "export"}
    for it in c.items:
        assert it.explanation.endswith(".")
        if it.status != "not_applicable" and it.item.split(".")[0] not in {"export"}:
            assert it.measured is not None


# --- each defect fails the check it targets ----------------------------------------------------
CASES = [
    ("blurred_eyes", "obama"), ("blurred_eyes", "astronaut"),
    ("no_catchlights", "astronaut"), ("double_pupil", "obama"), ("mismatched_irises", "obama2"),
    ("waxy_skin", "obama"), ("tinted_face", "biden"), ("tooth_gap", "obama"),
    ("clipped_shadows", "astronaut"), ("blown_highlights", "obama"), ("wrong_key_side", "obama"),
    ("banded_background", "obama"), ("stray_artifacts", "astronaut"),
    ("overlaid_text", "astronaut"), ("watermark", "astronaut"), ("extra_finger", "group"),
]
# Crushing the blacks also darkens the gaps between teeth and can isolate a dark speck: known overlaps.
SIDE_EFFECTS = {
    "blurred_eyes": {"eyes.catchlights", "eyes.pupils"},
    "clipped_shadows": {"lighting.pattern", "mouth.teeth", "background.artifacts"},
}


@pytest.mark.parametrize(("defect", "name"), CASES)
def test_synthetic_defect_fails_its_check_and_only_that_one(defect: str, name: str) -> None:
    target = DEFECTS[defect].target
    c = defective(defect, name)
    item = c.item(target)
    assert item.status == ("warn" if target in WARN_ONLY else "fail"), item.explanation
    assert item.region is None or len(item.region) == 4
    new = failed(c) - failed(clean(name)) - {target} - SIDE_EFFECTS.get(defect, set())
    assert not new, [(i.item, i.explanation) for i in c.items if i.item in new]


def test_blurred_eyes_fail_with_a_much_lower_sharpness_ratio() -> None:
    before = clean("obama").item("eyes.sharpness").measured
    after = defective("blurred_eyes", "obama").item("eyes.sharpness").measured
    assert before is not None and after is not None and after < before / 4


def test_the_watermark_is_read_by_ocr() -> None:
    item = defective("watermark", "astronaut").item("background.text")
    assert "shutter" in item.explanation.lower()


# --- context from the brief --------------------------------------------------------------------
def test_context_from_brief_reads_lighting_teeth_and_hands() -> None:
    brief = types.SimpleNamespace(
        lighting=types.SimpleNamespace(pattern="Rembrandt", key_side="left"),
        expression=types.SimpleNamespace(teeth_visible=True),
        hands=types.SimpleNamespace(visible=False),
    )
    ctx = CheckContext.from_brief(brief, target_width=1024)
    assert ctx.lighting_pattern == "rembrandt" and ctx.key_side == "left"
    assert ctx.teeth_expected is True and ctx.hands_expected is False and ctx.target_width == 1024


def test_symmetric_brief_fails_a_side_lit_face_and_passes_the_original() -> None:
    ctx = CheckContext(lighting_pattern="clamshell")
    assert run_checklist(photo("obama"), ctx, analysis=analysis("obama")).item("lighting.pattern").status == "pass"
    relit = DEFECTS["wrong_key_side"].build(photo("obama"), analysis("obama"))
    assert run_checklist(relit, ctx).item("lighting.pattern").status == "fail"


def test_missing_teeth_warns_only_when_the_brief_expects_them() -> None:
    an = analysis("biden")
    assert run_checklist(photo("biden"), analysis=an).item("mouth.teeth").status == "not_applicable"
    ctx = CheckContext(teeth_expected=True)
    assert run_checklist(photo("biden"), ctx, analysis=an).item("mouth.teeth").status == "warn"


# --- export ------------------------------------------------------------------------------------
def _labelled_png(path: Path) -> Path:
    import pyexiv2

    info = PngInfo()
    info.add_text("parameters", "studio portrait of a violinist, Rembrandt light\nSteps: 28, Seed: 1234")
    Image.fromarray(photo("astronaut")).save(path, pnginfo=info)
    with pyexiv2.Image(str(path)) as img:
        img.modify_xmp({"Xmp.Iptc4xmpExt.DigitalSourceType":
                        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"})
    return path


def test_export_reads_ai_label_and_seed_record_from_the_file(tmp_path: Path) -> None:
    path = _labelled_png(tmp_path / "labelled.png")
    ctx = CheckContext(target_width=512, target_height=512, require_label=True)
    c = run_checklist(path, ctx, analysis=analyze(path))
    assert c.item("export.label").status == "pass"
    assert c.item("export.record").status == "pass"
    assert c.item("export.resolution").status == "pass"


def test_unlabelled_export_fails_when_labels_are_required(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.fromarray(photo("astronaut")).save(path)
    c = run_checklist(path, CheckContext(require_label=True, target_width=1024, target_height=1024),
                      analysis=analyze(path))
    assert {"export.label", "export.record", "export.resolution"} <= failed(c)
    assert run_checklist(path, analysis=analyze(path)).item("export.label").status == "warn"


def test_upscale_estimate_sees_a_2x_upscale() -> None:
    import cv2

    gray = photo("obama").mean(-1).astype(np.float32)
    up = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert estimate_upscale(gray) <= 1.25
    assert 1.75 <= estimate_upscale(up) <= 3.0


def test_recorded_upscale_outside_one_and_a_half_to_two_fails() -> None:
    an = analysis("obama")
    assert run_checklist(photo("obama"), CheckContext(expected_upscale=2.0), analysis=an).item(
        "export.upscale").status == "pass"
    assert run_checklist(photo("obama"), CheckContext(expected_upscale=4.0), analysis=an).item(
        "export.upscale").status == "fail"


# --- CLI ---------------------------------------------------------------------------------------
def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    return app


def test_cli_prints_json_for_each_item_and_exits_zero_on_a_clean_portrait(tmp_path: Path) -> None:
    path = tmp_path / "astronaut.png"
    Image.fromarray(photo("astronaut")).save(path)
    res = CliRunner().invoke(_app(), ["check", str(path), "--json", "--annotate", str(tmp_path / "ann")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["overall"] in {"pass", "warn"}
    assert {"item", "status", "measured", "threshold", "explanation", "region"} <= set(data["items"][0])
    assert (tmp_path / "ann" / "astronaut.checked.png").exists()


def test_cli_exits_one_and_names_the_failure_for_a_watermarked_image(tmp_path: Path) -> None:
    path = tmp_path / "wm.png"
    Image.fromarray(DEFECTS["watermark"].build(photo("astronaut"), analysis("astronaut"))).save(path)
    res = CliRunner().invoke(_app(), ["check", str(path), "--target", "512x512"])
    assert res.exit_code == 1
    assert "background.text" in res.output and "fail" in res.output


def test_cli_rejects_a_malformed_target(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(photo("astronaut")).save(path)
    res = CliRunner().invoke(_app(), ["check", str(path), "--target", "big"])
    assert res.exit_code != 0


def test_cli_reads_the_brief_and_judges_lighting_against_it(tmp_path: Path) -> None:
    from portrait_studio.brief import example_brief_path, load_brief

    brief_path = example_brief_path("rembrandt-studio-headshot")
    ctx = CheckContext.from_brief(load_brief(brief_path))
    assert ctx.lighting_pattern == "rembrandt" and ctx.teeth_expected is False and ctx.hands_expected is False
    path = tmp_path / "obama.png"
    Image.fromarray(photo("obama")).save(path)
    res = CliRunner().invoke(_app(), ["check", str(path), "--brief", str(brief_path), "--json"])
    data = json.loads(res.output)
    pattern = next(i for i in data["items"] if i["item"] == "lighting.pattern")
    assert "rembrandt" in pattern["explanation"].lower() or "brief" in pattern["explanation"].lower()
    assert res.exit_code == (1 if data["overall"] == "fail" else 0)
