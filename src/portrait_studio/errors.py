"""Every error Portrait Studio raises on purpose, in one tree.

    StudioError                      anything the user can act on; the message says how
    ├── BriefError                   a brief (YAML or fields) is invalid: file, line, field, fix
    ├── CapabilityError              the model cannot do what the request asks (checked before paying)
    ├── LimitError                   a value is outside a model's documented limits
    ├── UsageError                   an option or argument is wrong (or retired): names it and the fix
    ├── BudgetExceeded               the plan or the next request would go over the budget
    ├── ConsentRequired              a reference image of a real person has no rights record
    ├── LedgerError                  the ledger cannot find or store what was asked
    ├── CheckError                   an image could not be analysed at all
    └── ProviderError                a provider call failed
        ├── NotConfigured            no API key / weights: names the env var or command that fixes it
        ├── ProviderValidationError  the provider rejected fields (HTTP 422): names them
        ├── AuthenticationError      the key was refused (HTTP 401/403)
        ├── RateLimited              too many active tasks (HTTP 429); carries retry_after
        ├── InsufficientCredits      the account is out of credits (HTTP 402)
        ├── Moderated                request or content moderated; carries which
        ├── ResultExpired            the signed result URL expired before download
        ├── TaskNotFound             the provider no longer knows the task
        ├── GenerationFailed         the provider reported an error for the task
        └── NetworkError             the connection dropped or timed out
            └── UncertainSubmission  dropped after sending: the provider may have accepted (and charged)

The CLI turns these into one-line messages; the web layer into HTTP answers.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BriefError",
    "BudgetExceeded",
    "CapabilityError",
    "CheckError",
    "ConsentRequired",
    "GenerationFailed",
    "InsufficientCredits",
    "LedgerError",
    "LimitError",
    "Moderated",
    "NetworkError",
    "NotConfigured",
    "ProviderError",
    "ProviderValidationError",
    "RateLimited",
    "ResultExpired",
    "StudioError",
    "TaskNotFound",
    "UncertainSubmission",
    "UsageError",
]


class StudioError(Exception):
    """Base of every error meant for the user. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BriefError(StudioError):
    """A brief is invalid. Carries the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        named = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{named}{message}", hint=hint)
        self.field = field
        self.file = file
        self.line = line


class CapabilityError(StudioError):
    """The chosen model or provider cannot do what the request asks."""


class LimitError(StudioError):
    """A value lies outside a model's documented limits; names the limit."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class UsageError(StudioError):
    """An option or argument cannot be used as given; names it and what to write instead."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class BudgetExceeded(StudioError):
    """Running (more of) the plan would spend more than the budget allows."""

    def __init__(self, message: str, *, budget_usd: float, needed_usd: float) -> None:
        super().__init__(message, hint="raise --budget or plan fewer images")
        self.budget_usd = budget_usd
        self.needed_usd = needed_usd


class ConsentRequired(StudioError):
    """A reference image of a real person is used without a consent/rights record."""


class LedgerError(StudioError):
    """The ledger has no such run/image, or cannot be written."""


class CheckError(StudioError):
    """An image could not be read or analysed."""


class ProviderError(StudioError):
    """A provider call failed. `provider` names which one.

    When the provider had accepted the task, `ticket` is its `records.Ticket` and `charged`
    says what the provider bills for this outcome (its documented billing): True paid, False
    not paid, None not known yet (the task may still finish; resume it). Errors raised before
    acceptance leave both None (`UncertainSubmission`: acceptance itself is unknown)."""

    ticket: Any = None
    charged: bool | None = None

    def __init__(self, message: str, *, provider: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider


class NotConfigured(ProviderError):
    """No key or weights. The hint names the env var or command that fixes it."""


class ProviderValidationError(ProviderError):
    """The provider rejected the request's fields (HTTP 422)."""

    def __init__(self, message: str, *, provider: str = "", fields: list[str] | None = None) -> None:
        super().__init__(message, provider=provider)
        self.fields = fields or []


class AuthenticationError(ProviderError):
    """The provider refused the key."""


class RateLimited(ProviderError):
    """Too many active tasks; try again after `retry_after` seconds."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class InsufficientCredits(ProviderError):
    """The provider account has run out of credits (HTTP 402)."""


class Moderated(ProviderError):
    """The provider moderated the request (`stage='request'`) or the output (`'content'`)."""

    def __init__(
        self, message: str, *, provider: str = "", stage: str = "content", reasons: list[str] | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.stage = stage
        self.reasons = reasons or []


class ResultExpired(ProviderError):
    """The signed result URL expired before it was downloaded."""


class TaskNotFound(ProviderError):
    """The provider does not know the task (any more)."""


class GenerationFailed(ProviderError):
    """The provider accepted the task but reported an error for it."""


class NetworkError(ProviderError):
    """The connection dropped or timed out."""


class UncertainSubmission(NetworkError):
    """The connection dropped after the request was sent: it may have been accepted and charged.

    Never retried automatically; `portrait resume RUN --resubmit-uncertain` sends it again.
    """
