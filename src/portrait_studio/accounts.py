"""Who may do what in a team studio: roles, the acting person, passwords and secrets.

    owner     everything: spend, review, and manage members, budgets and tokens
    producer  spends: shoots, compares, varies, fixes, upscales, edits, resumes
    reviewer  picks, approves or rejects (with a comment), exports approved images
    viewer    sees the team's gallery, runs and jobs; changes nothing

Everyone sees only their own team's work. The one-person studio has no accounts at all: no
`Actor`, nothing scoped, nothing asked (the default stays as it always was).

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
profile). Session cookies and API tokens are random 32-byte secrets; the database keeps only
their SHA-256, so a leaked database row opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .errors import Forbidden, UsageError

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Actor",
    "Permission",
    "Role",
    "check_password_strength",
    "hash_password",
    "hash_secret",
    "new_secret",
    "normalise_email",
    "password_needs_rehash",
    "verify_password",
]

Role = Literal["owner", "producer", "reviewer", "viewer"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
Permission = Literal["view", "spend", "review", "admin"]

PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset({"view", "spend", "review", "admin"}),
    "producer": frozenset({"view", "spend"}),
    "reviewer": frozenset({"view", "review"}),
    "viewer": frozenset({"view"}),
}

_WHAT = {
    "spend": "spend money (shoot, compare, vary, fix, upscale, edit, resume)",
    "review": "pick, approve, reject or export images",
    "admin": "manage the team's members, budgets and tokens",
    "view": "see this team's work",
}
_WHO = {"spend": "a producer or owner", "review": "a reviewer or owner", "admin": "an owner", "view": "a member"}


class Actor(BaseModel):
    """The signed-in person, acting for one team with one role."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    email: str
    name: str | None = None
    team_id: str
    team_name: str
    role: Role

    @property
    def label(self) -> str:
        return self.name or self.email

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        """Raise `Forbidden` (HTTP 403) naming the role that may do it."""
        if not self.may(permission):
            raise Forbidden(
                f"{self.label} is a {self.role} in {self.team_name} and may not {_WHAT[permission]}",
                hint=f"ask an owner of {self.team_name} for the role of {_WHO[permission]} "
                f"('portrait team add {self.email} --role ...')",
            )


def normalise_email(email: str) -> str:
    value = (email or "").strip().lower()
    if "@" not in value or value.startswith("@") or value.endswith("@") or any(c.isspace() for c in value):
        raise UsageError(f"'{email}' is not an email address", field="email", hint="use name@example.com")
    return value


MIN_PASSWORD = 10


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password has {len(password)} characters", field="password",
                         hint=f"use at least {MIN_PASSWORD} (a few unrelated words work well)")


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    check_password_strength(password)
    return str(_hasher().hash(password))


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; never raises for a wrong or malformed hash."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if not stored:
        _hasher().hash("timing-equaliser")  # as slow as a real check, so unknown users are not revealed
        return False
    try:
        return bool(_hasher().verify(stored, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(stored: str) -> bool:
    return bool(_hasher().check_needs_rehash(stored))


def new_secret(prefix: str = "") -> str:
    """A random secret for a cookie or an API token (256 bits, URL-safe)."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What the database keeps of a session or token secret (it has 256 bits: no salt or stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()
