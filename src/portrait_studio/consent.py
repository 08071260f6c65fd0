"""Consent before likeness: an image of a real person is used only with a recorded rights statement.

An anchor headshot, an identity reference or the face placed by `portrait swap` shows a real
person. Before such an image conditions a model (or is measured as the series' anchor), the
ledger must hold a rights record for its exact bytes (sha256): who is shown, where the image
comes from and what they agreed to. The record's id then travels with every output made
from it (`InputImage.rights_id`, the run plan and the identity rows of the ledger).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .brief import Brief, Rights
from .errors import ConsentRequired
from .ledger import Ledger

__all__ = ["CONSENT_HINT", "file_sha256", "reference_rights", "require_rights"]

CONSENT_HINT = (
    "record who is shown, where the image comes from and what they agreed to: "
    "--who NAME --source WHERE --permission WHAT (or add rights: {who, source, permission} to the "
    "reference in the brief); for a generated face use --who synthetic"
)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def reference_rights(brief: Brief, image: str | Path) -> Rights | None:
    """The rights the brief states for `image` (matched by content), if any."""
    sha = file_sha256(image)
    for ref in brief.references:
        if ref.rights is not None and Path(ref.path).is_file() and file_sha256(ref.path) == sha:
            return ref.rights
    return None


def require_rights(ledger: Ledger, image: str | Path, rights: Rights | None = None, *, what: str = "anchor") -> str:
    """The id of the rights record for `image`: recorded now from `rights`, or found in the ledger.

    Raises ConsentRequired (before anything is sent or spent) when there is neither.
    """
    path = Path(image)
    sha = file_sha256(path)
    existing = ledger.rights_for(sha)
    if rights is not None:
        same = existing is not None and (existing["who"], existing["source"], existing["permission"]) == (
            rights.who, rights.source, rights.permission)
        if same:
            assert existing is not None
            return str(existing["id"])
        return ledger.record_rights(sha, rights.who, rights.source, rights.permission, rights.recorded_by)
    if existing is not None:
        return str(existing["id"])
    raise ConsentRequired(
        f"the {what} image {path.name} shows a real person, and no consent/rights record exists for it; nothing was sent",
        hint=CONSENT_HINT,
    )
