"""The model latencies a studio has learnt, kept between processes.

Adaptive polling (`_hosted.LatencyLog`) learns how long each model takes from the tasks a
process has seen. A CLI command is a new process every time, so without a memory every
shoot starts cold: one scout task polls at the documented pace until a first task finishes.
`LatencyStore` keeps the recent samples in `<studio>/latency.json`, keyed by provider, the
host or sandbox the numbers came from, and model — a sandbox with 2 s latency never teaches
the real API's numbers, and the real API never teaches a sandbox's.

The file is a cache, never a source of truth: a missing, corrupt, oversized or foreign file
reads as empty; a write that fails is logged and dropped; two processes writing at once each
replace the whole file atomically (the last writer wins). Samples older than `max_age_s` are
dropped when read, and a remembered latency is only a prior: the first live task that
disagrees replaces it (see `LatencyLog.observe`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..files import atomic_write_text

__all__ = ["LATENCY_FILE", "LatencyStore", "Sample"]

log = logging.getLogger("portrait_studio.providers")

LATENCY_FILE = "latency.json"
_MAX_BYTES = 256 * 1024
_KEEP = 15  # samples per model: the same window LatencyLog keeps
_MAX_MODELS = 200

Sample = tuple[float, float]
"""(seconds from acceptance to finished, when it was seen as a Unix time)."""


class _Saved(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = 1
    models: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)


class LatencyStore:
    """Read and write the saved latencies in one file (usually `<studio>/latency.json`)."""

    def __init__(self, path: str | os.PathLike[str], *, max_age_s: float = 7 * 86400) -> None:
        self.path = Path(path)
        self.max_age_s = max_age_s

    @staticmethod
    def key(provider: str, origin: str, model: str) -> str:
        return f"{provider} {origin} {model}"

    def load(self) -> dict[str, list[Sample]]:
        """Every fresh sample by key, oldest first; empty when the file is missing or unreadable."""
        try:
            with self.path.open("rb") as fh:
                data = fh.read(_MAX_BYTES + 1)
        except OSError:
            return {}
        if len(data) > _MAX_BYTES:
            log.info("ignoring %s: larger than %d bytes", self.path, _MAX_BYTES)
            return {}
        try:
            saved = _Saved.model_validate_json(data)
        except (ValidationError, ValueError) as exc:
            log.info("ignoring %s: not a latency file (%s)", self.path, type(exc).__name__)
            return {}
        if saved.version != 1:
            return {}
        oldest = time.time() - self.max_age_s
        fresh = {key: sorted((s for s in samples if s[1] >= oldest and 0 < s[0] < 86400), key=lambda s: s[1])[-_KEEP:]
                 for key, samples in saved.models.items()}
        return {key: samples for key, samples in fresh.items() if samples}

    def save(self, updates: dict[str, list[Sample]]) -> bool:
        """Replace the samples of the keys in `updates`, keep the others; True when written.

        Never raises: the studio works the same without this file (only the first poll of
        the next process is less well placed)."""
        if not updates:
            return False
        models = self.load()
        models.update({key: sorted(samples, key=lambda s: s[1])[-_KEEP:] for key, samples in updates.items()})
        if len(models) > _MAX_MODELS:  # keep the models seen most recently
            models = dict(sorted(models.items(), key=lambda kv: kv[1][-1][1])[-_MAX_MODELS:])
        text = _Saved(models={k: [(round(s, 4), round(at, 3)) for s, at in v] for k, v in models.items()})
        try:
            atomic_write_text(self.path, text.model_dump_json() + "\n")
        except OSError as exc:
            log.info("could not save the learnt latencies to %s (%s)", self.path, exc)
            return False
        return True
