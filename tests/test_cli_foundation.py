"""The `portrait` command: briefs, models, compile, log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def test_help_is_instant_and_does_not_import_torch() -> None:
    code = "import sys, portrait_studio.cli; assert 'torch' not in sys.modules and 'mediapipe' not in sys.modules"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    assert time.perf_counter() - start < 5


def test_brief_new_writes_a_commented_starter(cli, tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    code, out, _ = cli("brief", "new", target, "--preset", "cafe-window-candid")
    assert code == 0 and "wrote" in out
    assert "# " in target.read_text() and "window" in target.read_text()
    code, _, err = cli("brief", "new", target)
    assert code == 2 and "already exists" in err and "--force" in err


def test_compile_json_has_the_promised_fields(cli, example_brief_file: Path) -> None:
    code, out, _ = cli("compile", example_brief_file, "--model", "flux-1-dev", "--provider", "local", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("model", "provider", "prompt", "width", "height", "steps", "guidance", "seed", "warnings", "estimated_cost"):
        assert key in data
    assert data["seed"] == 1234 and data["negative_prompt"] is None  # positive rewrites unless quality.true_cfg


def test_compile_error_is_one_line_with_the_fix(cli, tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("subject: {description: a woman in her forties}\noutput:\n  resolution: 4MP\n")
    code, _, err = cli("compile", path, "--model", "flux-1.1-pro", "--seed", "1")
    assert code == 2 and "output.resolution" in err and "fix:" in err


def test_models_lists_the_catalog(cli) -> None:
    code, out, _ = cli("models", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0 and "flux-1.1-pro-ultra" in rows and "raw" in rows["flux-1.1-pro-ultra"]["variants"]
    assert rows["flux-1.1-pro"]["price"].startswith("$0.040")


def test_log_on_an_empty_studio_says_how_to_start(cli) -> None:
    code, out, _ = cli("log")
    assert code == 0 and "portrait shoot" in out
