"""Batch tests: small batch files, a checklist stand-in that decides by seed, and a sandbox handed in."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import yaml

from portrait_studio.brief import Brief


def write_batch(folder: Path, people: list[dict[str, Any]], **defaults: Any) -> Path:
    data = {"name": "test-batch", "brief": "rembrandt-studio-headshot", "model": "flux-1.1-pro", "seeds": 2,
            "keep": 1, "rerolls": 1, "seed": 7, **defaults, "people": people}
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed_of(path: Path) -> int:
    found = re.search(r"seed(\d+)", Path(path).name)
    assert found, path
    return int(found.group(1))


def fails_for(*names: str) -> Any:
    """A checklist stand-in: every image of the named people fails; the others pass with a score that
    grows with the seed (so 'the best' is the highest seed). Decided from the file, like the checklist."""

    def check(path: Path, brief: Brief) -> tuple[str, float, dict[str, Any]]:
        seed = seed_of(path)
        if brief.name in names:
            return "fail", 0.1, {"overall": "fail", "why": "stand-in"}
        return "pass", round(0.5 + (seed % 1000) / 2000, 4), {"overall": "pass", "seed": seed}

    return check


def given(handle: Any) -> Any:
    """A `start_sandbox` for Engine.open that hands in an already running sandbox (to read its counters)."""
    return lambda provider_id: contextlib.nullcontext(handle)
