"""Every test runs against a fresh studio folder; nothing touches the user's home."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from portrait_studio.config import HOME_ENV, Studio

KEY_VARS = ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN")


@pytest.fixture(autouse=True)
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "studio"
    monkeypatch.setenv(HOME_ENV, str(home))
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def studio(studio_home: Path) -> Studio:
    return Studio(studio_home)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `portrait ARGS...` in-process the way a user would; returns (exit code, stdout, stderr)."""
    from portrait_studio.cli import app, run_cli

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["portrait", *map(str, args)])
        code = 0
        try:
            run_cli(app)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "portrait_studio" / "presets" / "briefs"


@pytest.fixture
def example_brief_file() -> Path:
    return EXAMPLES / "rembrandt-studio-headshot.yaml"
