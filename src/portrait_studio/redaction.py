"""API keys must never leave the studio's keys.json: not in a brief, a prompt, the ledger or run.json.

Two tools. `find_key` tells whether a text holds a key (one this studio knows, or anything
shaped like a BFL, fal or Replicate key), so a brief with a pasted key is refused before it
is sent. `redact` replaces keys in a text (a provider's error message that echoes the key)
before it is written anywhere.

Key shapes: BFL keys start `bfl_`; Replicate tokens `r8_`; fal keys are `KEY_ID:KEY_SECRET`
(a UUID, a colon and a long hex secret). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import BriefError

__all__ = ["KEY_PATTERNS", "REDACTED", "find_key", "redact", "refuse_keys"]

REDACTED = "[redacted]"

# (what it is, pattern). Long enough runs that ordinary words and file names never match.
KEY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a BFL API key", re.compile(r"\bbfl_[A-Za-z0-9_\-]{12,}")),
    ("a Replicate API token", re.compile(r"\br8_[A-Za-z0-9]{12,}")),
    (
        "a fal key",
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[0-9a-fA-F]{16,}\b"
            r"|\b(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{8,}:(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{24,}\b"
        ),
    ),
)

_MIN_SECRET = 8  # shorter "keys" (test stubs like "x") would redact ordinary words


def _known(secrets: Iterable[str]) -> list[str]:
    return sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)


def find_key(text: str, secrets: Iterable[str] = ()) -> str | None:
    """What kind of key `text` holds ('a BFL API key', 'an API key of this studio' ...), or None."""
    if not text:
        return None
    for secret in _known(secrets):
        if secret in text:
            return "an API key of this studio"
    for what, pattern in KEY_PATTERNS:
        if pattern.search(text):
            return what
    return None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and every key-shaped string replaced by '[redacted]'."""
    if not text:
        return text
    for secret in _known(secrets):
        text = text.replace(secret, REDACTED)
    for _, pattern in KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def refuse_keys(fields: Mapping[str, str], secrets: Iterable[str] = (), *, source: str | None = None) -> None:
    """Raise BriefError naming the first field that holds a key (the key itself is never echoed)."""
    known = _known(secrets)
    for name, text in fields.items():
        what = find_key(text, known)
        if what is not None:
            raise BriefError(
                f"holds what looks like {what}; "
                "it would be sent to the provider and stored in the ledger",
                field=name, file=source,
                hint="remove it from the brief; keys belong in 'portrait keys set PROVIDER' or the provider's env var",
            )
