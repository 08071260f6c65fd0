"""`portrait local` commands."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from portrait_studio.cli.local import register

pytestmark = [pytest.mark.filterwarnings("ignore:.*torchvision.*")]


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def test_accepting_a_non_commercial_licence_is_recorded_once(tmp_path):
    result = CliRunner().invoke(app(), ["local", "licence", "flux-1-dev", "--home", str(tmp_path)], input="y\n")
    assert result.exit_code == 0, result.output
    assert "Non-Commercial" in result.output
    assert "flux-1-dev" in json.loads((tmp_path / "licences.json").read_text())
    again = CliRunner().invoke(app(), ["local", "licence", "flux-1-dev", "--home", str(tmp_path)])
    assert "accepted already" in again.output


def test_declining_the_licence_records_nothing(tmp_path):
    result = CliRunner().invoke(app(), ["local", "licence", "flux-2-dev", "--home", str(tmp_path)], input="n\n")
    assert result.exit_code == 1 and not (tmp_path / "licences.json").exists()


def test_tiny_weights_are_written_as_a_diffusers_folder(tmp_path):
    result = CliRunner().invoke(app(), ["local", "tiny", "flux1-schnell", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "w" / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline" and (tmp_path / "w" / "transformer").is_dir()
