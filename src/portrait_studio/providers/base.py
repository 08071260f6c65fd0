"""The one provider interface.

A provider turns a `Request` into a `Result`. It never touches the ledger or the file
system; the runner does. Money is spent only after `check(request)` passes, and the
provider calls `on_accepted(ticket)` as soon as the remote side has accepted (and will
charge for) the task, so the runner can record it before waiting for the image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import CapabilityError
from ..records import Request, Result, Ticket

if TYPE_CHECKING:
    from ..config import Studio

__all__ = ["Billing", "OnAccepted", "Provider", "ProviderOptions"]

OnAccepted = Callable[[Ticket], Awaitable[None]]

Billing = Literal["on_accept", "on_success", "free"]
"""When a provider charges for a task, per its documented billing:
- `on_accept`: once it accepts the task, whatever the outcome (BFL returns the cost at submission);
  a task that then ends moderated, in error, lost or expired is still paid for;
- `on_success`: only for a delivered result;
- `free`: never (local generation).
Where a provider's documents are silent, the class says `on_accept`: the budget never under-counts."""


class ProviderOptions(BaseModel):
    """Per-provider settings (host, polling interval, ...). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class Provider(ABC):
    """Base class of every provider: hosted (bfl, fal, replicate) and local (diffusers)."""

    provider_id: ClassVar[str]
    key_env_var: ClassVar[str | None] = None
    hosted: ClassVar[bool] = True
    billing: ClassVar[Billing] = "on_accept"
    sandbox: bool = False
    """True when this instance talks to a sandbox: everything it makes is marked SANDBOX and its
    spend is kept apart from real money."""

    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    @classmethod
    def create(cls, studio: Studio, **options: Any) -> Provider:
        """Build the provider from the studio's keys and config (the real service)."""
        return cls(**options)  # type: ignore[call-arg]

    @classmethod
    def for_sandbox(cls, sandbox: Any, **options: Any) -> Provider:
        """Build the provider against a running sandbox (`testing.sandbox.start_sandbox`)."""
        raise CapabilityError(f"provider '{cls.provider_id}' has no sandbox")

    def check(self, request: Request) -> None:
        """Raise `CapabilityError` if this provider cannot serve `request`. Spends nothing."""
        from ..catalog import get_model

        spec = get_model(request.model)
        if self.provider_id not in spec.routes:
            raise CapabilityError(
                f"{spec.name} is not served by provider '{self.provider_id}'",
                hint=f"use one of: {', '.join(spec.routes)}",
            )
        if request.mode not in spec.modes:
            raise CapabilityError(
                f"{spec.name} cannot do {request.mode}", hint=f"it supports: {', '.join(spec.modes)}"
            )

    def max_concurrency(self, model: str) -> int:
        """How many of this model's tasks may be active at once on this provider."""
        return 4

    @abstractmethod
    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        """Make the image. Calls `on_accepted` once the provider has accepted the task."""

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        """Finish a task accepted earlier (re-poll and download) without re-submitting it."""
        raise CapabilityError(f"provider '{self.provider_id}' cannot resume accepted tasks")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections and models."""
