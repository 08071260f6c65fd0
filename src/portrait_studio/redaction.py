"""Keep API keys out of everything the studio writes: ledger rows, run.json, labels, logs.

A provider may echo the key in an error text; a user may paste one into a brief. `redact`
replaces every known key (and anything shaped like one) before such text is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["KEY_PATTERNS", "looks_like_key", "redact"]

KEY_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bbfl_[A-Za-z0-9_\-]{16,}"),  # BFL
    re.compile(r"\br8_[A-Za-z0-9]{20,}"),  # Replicate
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{16,}\b"),  # fal id:secret
)


def looks_like_key(text: str) -> bool:
    return any(p.search(text) for p in KEY_PATTERNS)


def redact(text: str | None, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (and key-shaped string) replaced by `[redacted]`."""
    if not text:
        return text or ""
    for secret in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    for pattern in KEY_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text
