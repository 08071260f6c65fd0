"""Region fixes: only the mask changes, the lineage is recorded, and --auto runs end to end
against the BFL sandbox (flux-fill-pro) and a tiny local FLUX.1 [dev] inpaint pipeline."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

from _engine_helpers import consent, on_engine
from _finishing_helpers import tiny_pipeline
from portrait_studio.analysis import analyze
from portrait_studio.checks import run_checklist
from portrait_studio.cli.finishing import register
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.errors import CapabilityError
from portrait_studio.finishing.composite import feathered_alpha
from portrait_studio.finishing.fix import (
    AutoFixReport,
    FixOutcome,
    auto_fix,
    fix_region,
    plan_fix,
    regions_for,
)
from portrait_studio.finishing.lineage import file_sha256
from portrait_studio.labels import COMPOSITE_SOURCE_TYPE, verify
from portrait_studio.ledger import ImageRow, Ledger
from portrait_studio.testing import photos
from portrait_studio.testing.defects import blur_eyes

T = TypeVar("T")

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*torchvision.*:UserWarning",
    "ignore:.*should be kept in float32.*",
)


def astronaut_file(folder: Path, side: int = 256, name: str = "portrait.png") -> Path:
    path = folder / name
    photos.astronaut().resize((side, side), Image.Resampling.LANCZOS).save(path)
    return path


def blurred_eyes_file(folder: Path, side: int = 256) -> Path:
    clean = astronaut_file(folder, side, "clean.png")
    an = analyze(clean)
    path = folder / "blurred-eyes.png"
    Image.fromarray(blur_eyes(an.rgb, an)).save(path)
    return path


def fix(studio: Studio, image: Path, region: str, **kw: Any) -> FixOutcome:
    consent(studio, image)
    return on_engine(studio, ["bfl"], lambda engine: fix_region(engine, image, region, **kw))


def mask_of(studio: Studio, image: Path, region: str) -> Image.Image:
    return Image.open(studio.home / "work" / "masks" / f"{file_sha256(image)[:16]}-{region}.png")


# --- the guarantee: nothing outside the mask moves -----------------------------------------


def test_pixels_outside_the_feathered_mask_are_byte_identical_after_a_fill_fix(studio, tmp_path):
    image = astronaut_file(tmp_path)
    outcome = fix(studio, image, "teeth")
    before = np.asarray(Image.open(image).convert("RGB"))
    after = np.asarray(Image.open(outcome.path).convert("RGB"))
    mask = mask_of(studio, image, "teeth")
    alpha = feathered_alpha(mask, outcome.feather_px)

    assert after.shape == before.shape
    assert np.array_equal(after[alpha == 0], before[alpha == 0])
    changed = np.any(after != before, axis=-1)
    assert changed[alpha > 0].sum() > 0.5 * outcome.mask_area  # the sandbox repaint really landed
    assert changed.sum() < 0.02 * changed.size  # and nothing else: the mouth opening only
    assert outcome.outside_changed == 0 and outcome.changed_pixels == int(changed.sum())


def test_a_fix_is_a_new_ledger_row_with_its_parent_region_denoise_model_and_cost(studio, tmp_path):
    image = astronaut_file(tmp_path)
    outcome = fix(studio, image, "eyes")
    with Ledger(studio.ledger_path) as ledger:
        chain = ledger.lineage(ledger.image(str(outcome.path)).image_sha256)
        children = ledger.children(file_sha256(image))
    fixed, parent = chain
    assert parent.image_sha256 == file_sha256(image) and parent.operation == "import"
    assert fixed.parent_sha256 == parent.image_sha256
    assert fixed.operation == "fix" and fixed.model == "flux-fill-pro" and fixed.provider == "bfl"
    assert fixed.cost_usd == pytest.approx(0.05) and fixed.sandbox
    details = fixed.operation_details or {}
    assert details["region"] == "eyes" and details["model"] == "flux-fill-pro"
    assert details["denoise"] is None  # Fill takes no denoise: the mask bounds the change
    assert [c.image_sha256 for c in children] == [fixed.image_sha256]
    label = verify(outcome.path)
    assert label.digital_source_type == COMPOSITE_SOURCE_TYPE
    assert "eyes repainted" in (label.caption or "")


def test_flux_dev_fixes_default_to_a_measured_high_denoise_and_warn_below_it(tmp_path):
    image = astronaut_file(tmp_path)
    an = analyze(image)
    request, mask = plan_fix(image, "mouth", model="flux-1-dev", analysis=an, mask_dir=tmp_path, weights="/w")
    assert request.provider == "local" and request.mode == "inpaint" and request.denoise == 0.85
    assert request.options == {"weights": "/w"}
    assert request.prompt.startswith("natural relaxed lips")
    assert request.mask is not None and Image.open(request.mask.path).getextrema() == (0, 255)
    weak, _ = plan_fix(image, "mouth", model="flux-1-dev", denoise=0.15, analysis=an, mask_dir=tmp_path)
    assert weak.denoise == 0.15 and "barely changes" in weak.warnings[0]
    hands_default = plan_fix(image, "eyes", model="flux-1-dev", analysis=an, mask_dir=tmp_path)[0].denoise
    assert hands_default == 0.85
    fill, _ = plan_fix(image, "teeth", model="flux-fill-pro", denoise=0.3, prompt_add="even teeth", analysis=an,
                       mask_dir=tmp_path)
    assert fill.provider == "bfl" and fill.denoise is None and "takes no denoise" in fill.warnings[0]
    assert "even teeth" in fill.prompt and fill.estimated_cost.usd == pytest.approx(0.05)
    again, _ = plan_fix(image, "teeth", model="flux-fill-pro", analysis=an, mask_dir=tmp_path)
    assert again.seed == fill.seed  # same image and region: reproducible


def test_failed_checks_map_to_regions_and_lighting_is_not_a_region_fix(tmp_path):
    bad = blurred_eyes_file(tmp_path)
    an = analyze(bad)
    checklist = run_checklist(bad, analysis=an)
    regions, unfixable = regions_for(checklist, an)
    assert "eyes.sharpness" in [i.item for i in checklist.failed]
    assert "eyes" in regions
    assert all(not u.startswith(("eyes.", "mouth.", "skin.", "hands.")) for u in unfixable)


def test_auto_fix_repairs_the_failed_region_rechecks_and_stops_within_max_tries(studio, tmp_path):
    bad = blurred_eyes_file(tmp_path)
    consent(studio, bad)

    async def go(engine: Engine) -> tuple[AutoFixReport, list[ImageRow]]:
        report = await auto_fix(engine, bad, max_tries=2)
        return report, engine.ledger.lineage(report.final_sha256)

    report, chain = on_engine(studio, ["bfl"], go)
    assert 1 <= len(report.rounds) <= 2
    assert report.rounds[0].regions[0] == "eyes" and "eyes.sharpness" in report.rounds[0].failed_before
    fixes = [f for r in report.rounds for f in r.fixes]
    kept = [f for r in report.rounds if r.kept for f in r.fixes]
    assert len(chain) == len(kept) + 1  # every kept fix is one step of one chain back to the input
    assert chain[-1].image_sha256 == file_sha256(bad)
    assert all(f.outside_changed == 0 for f in fixes)
    assert report.sandbox_usd == pytest.approx(0.05 * len(fixes)) and report.spent_usd == 0  # sandbox, not money
    assert report.stopped in ("passed", "max_tries", "nothing_fixable", "no_improvement")
    assert report.kept_original == (not any(r.kept for r in report.rounds))
    # nothing moved outside the regions that were repainted (each box plus its feather)
    before, after = np.asarray(Image.open(bad)), np.asarray(Image.open(report.final).convert("RGB"))
    far = np.ones(before.shape[:2], bool)
    for row in chain[:-1]:
        d = row.operation_details or {}
        x0, y0, x1, y1 = d["mask_box"]
        pad = d["feather_px"] + 1
        far[max(0, y0 - pad): y1 + pad, max(0, x0 - pad): x1 + pad] = False
    assert far.mean() > 0.9
    assert np.array_equal(before[far], after[far])


# --- the CLI ----------------------------------------------------------------------------------


@cache
def cli_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(cli_app(), [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_portrait_fix_auto_runs_end_to_end_against_the_bfl_sandbox(studio, tmp_path):
    bad = blurred_eyes_file(tmp_path)
    result = invoke("fix", "--auto", bad, "--max-tries", "1", "--sandbox", "always", "--json", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["rounds"]) == 1 and report["rounds"][0]["regions"][0] == "eyes"
    lineage = report["lineage"]
    assert lineage[0]["operation"] == "import" and lineage[-1]["operation"] == "fix"
    assert [step["operation_details"]["region"] for step in lineage[1:]] == report["rounds"][0]["regions"]
    assert Path(report["final"]).exists() and Path(report["final"]).parent == tmp_path


def test_portrait_fix_region_prints_the_chain(studio, tmp_path):
    image = astronaut_file(tmp_path)
    result = invoke("fix", image, "--region", "teeth", "--prompt-add", "even teeth, natural shade",
                    "--denoise", "0.15", "--sandbox", "always", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "takes no denoise" in said  # Fill ignores it, and says so
    assert "0 px changed outside the feathered mask" in said
    assert "import" in said and "fix teeth flux-fill-pro" in said
    out = tmp_path / "portrait.fix-teeth.png"
    assert out.exists()
    lineage = invoke("lineage", out)
    said = " ".join(lineage.output.split())
    assert lineage.exit_code == 0 and "fix teeth" in said and "2 step(s), $0.050" in said


def test_fix_needs_a_region_or_auto(tmp_path):
    image = astronaut_file(tmp_path)
    with pytest.raises(CapabilityError, match="--region or --auto"):
        invoke("fix", image)


def test_portrait_masks_writes_the_masks_for_inspection(tmp_path):
    image = astronaut_file(tmp_path)
    result = invoke("masks", image, "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    for name in ("mouth", "teeth", "eyes", "face", "skin", "overlay"):
        assert (tmp_path / "m" / f"{name}.png").exists()


# --- the tiny local pipeline ------------------------------------------------------------------


@pytest.fixture
def tiny_dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline("flux1-dev", tmp_path_factory.getbasetemp())


def test_portrait_fix_auto_runs_end_to_end_on_a_tiny_local_flux_dev_inpaint_pipeline(studio, tmp_path, tiny_dev):
    bad = blurred_eyes_file(tmp_path, side=128)
    result = invoke("fix", "--auto", bad, "--model", "flux-1-dev", "--weights", tiny_dev, "--accept-licence",
                    "--steps", "4", "--max-tries", "1", "--json", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fixed = report["lineage"][-1]
    assert fixed["operation"] == "fix" and fixed["provider"] == "local" and fixed["model"] == "flux-1-dev"
    assert fixed["operation_details"]["denoise"] == 0.85 and fixed["cost_usd"] == 0
    assert fixed["versions"]["weights"] == str(tiny_dev)
    fix_outcome = report["rounds"][0]["fixes"][0]
    assert fix_outcome["outside_changed"] == 0 and fix_outcome["changed_pixels"] > 0


def test_a_fix_over_budget_stops_before_paying(studio, tmp_path):
    from portrait_studio.errors import BudgetExceeded

    image = astronaut_file(tmp_path)
    with pytest.raises(BudgetExceeded, match="over the \\$0.01 budget"):
        invoke("fix", image, "--region", "teeth", "--budget", "0.01", "--sandbox", "always", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.spent(sandbox=None).usd == 0
        assert [i.operation for i in ledger.images(limit=10)] in ([], ["import"])
    assert not (tmp_path / "portrait.fix-teeth.png").exists()


def test_the_retired_strength_option_names_its_replacement(studio, tmp_path, cli):
    image = astronaut_file(tmp_path)
    code, out, err = cli("fix", image, "--region", "teeth", "--strength", "0.8", "--sandbox", "always")
    assert code == 2
    said = " ".join(err.split())
    assert "--strength" in said and "--denoise" in said
    assert not (tmp_path / "portrait.fix-teeth.png").exists()  # nothing was sent or written
