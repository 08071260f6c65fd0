"""Shared by the finishing tests: one tiny FLUX.1 [dev] pipeline saved once per test session."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def tiny_pipeline(kind: str, root: Path) -> Path:
    """Save the tiny random-weight `kind` pipeline under `root` once (about 10 s on 2 CPU cores)."""
    from portrait_studio.testing.tiny import save_tiny_pipeline

    return save_tiny_pipeline(kind, root / f"tiny-{kind}")
