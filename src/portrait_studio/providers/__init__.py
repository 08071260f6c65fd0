"""Provider discovery and set-up.

Built-in providers are registered as entry points (group `portrait_studio.providers`), the
same way a third-party package adds its own. `open_providers` builds the ones a plan
needs; with no API key for a hosted provider it can start that provider's sandbox on
loopback instead, and every image made there is marked as sandbox output. That sandbox
keeps its tasks in `<home>/sandbox/<provider>/`, so they outlive the process.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import entry_points
from typing import Any, Literal

from ..config import Studio
from ..errors import CapabilityError, NotConfigured
from .base import Provider

__all__ = ["Provider", "SandboxMode", "open_providers", "provider_class", "provider_ids"]

SandboxMode = Literal["auto", "always", "never"]

_BUILTIN = {
    "bfl": "portrait_studio.providers.bfl:BflProvider",
    "fal": "portrait_studio.providers.fal:FalProvider",
    "replicate": "portrait_studio.providers.replicate:ReplicateProvider",
    "local": "portrait_studio.providers.local:LocalProvider",
}


def _registry() -> dict[str, str]:
    found = dict(_BUILTIN)
    for ep in entry_points(group="portrait_studio.providers"):
        found[ep.name] = ep.value
    return found


def provider_ids() -> list[str]:
    return list(_registry())


def provider_class(provider_id: str) -> type[Provider]:
    target = _registry().get(provider_id)
    if target is None:
        raise CapabilityError(f"unknown provider '{provider_id}'", hint=f"choose one of: {', '.join(_registry())}")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Provider)
    return cls


@contextmanager
def open_providers(
    studio: Studio,
    ids: Iterable[str],
    *,
    sandbox: SandboxMode = "auto",
    options: dict[str, dict[str, Any]] | None = None,
    sandbox_options: dict[str, Any] | None = None,
) -> Iterator[dict[str, Provider]]:
    """Providers for `ids`, ready to use; sandboxes (if any) stop when the block ends."""
    options = options or {}
    with ExitStack() as stack:
        built: dict[str, Provider] = {}
        for pid in dict.fromkeys(ids):
            cls = provider_class(pid)
            opts = {**studio.config.providers.get(pid, {}), **options.get(pid, {})}
            if not cls.hosted:
                built[pid] = cls.create(studio, **opts)
                continue
            key = studio.key(pid)
            use_sandbox = sandbox == "always" or (sandbox == "auto" and not key)
            if not use_sandbox:
                if not key:
                    studio.require_key(pid)  # raises NotConfigured naming the env var
                built[pid] = cls.create(studio, **opts)
                continue
            from ..testing.sandbox import start_sandbox

            # The sandbox keeps its account under the studio folder, like a real provider keeps
            # accepted tasks: `portrait resume` after a kill -9 finds them there; a second command
            # running at the same time joins the sandbox the first one serves.
            sb_opts = {"state_dir": studio.home / "sandbox" / pid, "busy": "join", **(sandbox_options or {})}
            handle = stack.enter_context(start_sandbox(pid, **sb_opts))
            built[pid] = cls.for_sandbox(handle, **opts)
        if not built:
            raise NotConfigured("no provider to run the plan")
        yield built  # the caller awaits each provider's aclose() inside its event loop
