"""`portrait upscale`: the exact requested size, the lineage recorded, an optional light detail pass.

The pictures are small crops of the astronaut, so each upscale takes well under a second.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

from _finishing_helpers import tiny_pipeline
from portrait_studio.cli.finishing import register
from portrait_studio.config import Studio
from portrait_studio.finishing.lineage import file_sha256
from portrait_studio.labels import COMPOSITE_SOURCE_TYPE, verify
from portrait_studio.ledger import Ledger
from portrait_studio.testing import photos

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*torchvision.*:UserWarning",
    "ignore:.*should be kept in float32.*",
)


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


def face_file(folder: Path, size: tuple[int, int], name: str = "face.png") -> Path:
    path = folder / name
    photos.astronaut().crop((160, 60, 288, 188)).resize(size, Image.Resampling.LANCZOS).save(path)
    return path


@pytest.mark.parametrize(("scale", "size", "expected"), [("1.5", (41, 29), (62, 44)), ("2", (33, 25), (66, 50))])
def test_portrait_upscale_hits_the_exact_size_and_records_its_parent(studio: Studio, tmp_path, scale, size, expected):
    image = face_file(tmp_path, size)
    result = invoke("upscale", image, "--scale", scale, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert Image.open(out["path"]).size == expected
    assert Path(out["path"]).parent == tmp_path
    with Ledger(studio.ledger_path) as ledger:
        up, parent = ledger.lineage(file_sha256(out["path"]))
    assert parent.image_sha256 == file_sha256(image)
    assert up.operation == "upscale" and up.parent_sha256 == parent.image_sha256
    assert up.operation_details is not None and up.operation_details["scale"] == float(scale)
    assert (up.width, up.height) == expected and up.model == "span-x2-ch48" and up.cost_usd == 0
    assert verify(out["path"]).digital_source_type == COMPOSITE_SOURCE_TYPE


def test_fix_then_upscale_is_one_chain_that_portrait_lineage_prints(studio: Studio, tmp_path):
    image = tmp_path / "portrait.png"
    photos.astronaut().resize((128, 128), Image.Resampling.LANCZOS).save(image)
    fixed = invoke("fix", image, "--region", "eyes", "--sandbox", "always", "--json", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    assert fixed.exit_code == 0, fixed.output
    fixed_path = json.loads(fixed.stdout)["path"]
    up = invoke("upscale", fixed_path, "--scale", "1.5", "--out", tmp_path / "final")
    assert up.exit_code == 0, up.output
    final = tmp_path / "final" / "portrait.fix-eyes.x1.5.png"
    assert Image.open(final).size == (192, 192)
    shown = invoke("lineage", final, "--json")
    steps = json.loads(shown.stdout)["lineage"]
    assert [s["operation"] for s in steps] == ["import", "fix", "upscale"]
    assert steps[1]["operation_details"]["region"] == "eyes" and steps[1]["cost_usd"] == pytest.approx(0.05)
    text = " ".join(invoke("lineage", final).output.split())
    assert "fix eyes flux-fill-pro" in text and "upscale ×1.5" in text and "3 step(s), $0.050" in text


@pytest.fixture
def tiny_dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline("flux1-dev", tmp_path_factory.getbasetemp())


def test_a_light_detail_pass_through_a_local_pipeline_keeps_the_exact_size(studio: Studio, tmp_path, tiny_dev):
    image = face_file(tmp_path, (36, 28))
    result = invoke("upscale", image, "--scale", "2", "--detail-denoise", "0.2", "--model", "flux-1-dev",
                    "--weights", tiny_dev, "--accept-licence", "--json", "--who", "Eileen Collins", "--source", "scikit-image sample", "--permission", "public domain")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert Image.open(out["path"]).size == (72, 56)  # the pipeline snaps to 16 px; the result does not
    step = out["lineage"][-1]
    assert step["operation"] == "upscale" and step["model"] == "flux-1-dev" and step["provider"] == "local"
    assert step["operation_details"]["detail_denoise"] == 0.2
    assert step["request_id"] and step["run_id"]


def test_a_detail_pass_must_be_light(studio: Studio, tmp_path, tiny_dev):
    from portrait_studio.errors import CapabilityError

    image = face_file(tmp_path, (20, 20))
    with pytest.raises(CapabilityError, match="outside"):
        invoke("upscale", image, "--scale", "2", "--detail-denoise", "0.8", "--model", "flux-1-dev",
               "--weights", tiny_dev, "--accept-licence")
