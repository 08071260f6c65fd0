"""Provider discovery and set-up.

Built-in providers are registered as entry points (group `portrait_studio.providers`), the
same way a third-party package adds its own. `open_providers` builds the ones a plan
needs; with no API key for a hosted provider it can use that provider's sandbox on
loopback instead — started by the surface that hands in `start_sandbox` (the library never
imports the sandboxes) — and every image made there is marked as sandbox output.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from importlib.metadata import entry_points
from typing import Any, Literal

from ..config import Studio
from ..errors import CapabilityError, NotConfigured
from .base import Provider

__all__ = ["Provider", "SandboxMode", "SandboxStarter", "open_providers", "provider_class", "provider_ids"]

SandboxMode = Literal["auto", "always", "never"]
SANDBOX_MODES: tuple[str, ...] = SandboxMode.__args__  # type: ignore[attr-defined]

SandboxStarter = Callable[[str], AbstractContextManager[Any]]
"""provider id -> a context manager yielding a running sandbox handle (`testing.sandbox.start_sandbox`)."""

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
    start_sandbox: SandboxStarter | None = None,
) -> Iterator[dict[str, Provider]]:
    """Providers for `ids`, ready to use; sandboxes (if any) stop when the block ends.

    Every key is checked before any provider is built, so a missing key is reported before
    anything else happens (no run is recorded for a plan that cannot start).
    """
    if sandbox not in SANDBOX_MODES:
        from ..errors import UsageError

        raise UsageError(f"'{sandbox}' is not a sandbox mode", field="--sandbox",
                         hint=f"choose one of: {', '.join(SANDBOX_MODES)}")
    options = options or {}
    wanted = list(dict.fromkeys(ids))
    classes = {pid: provider_class(pid) for pid in wanted}
    for pid, cls in classes.items():
        if cls.hosted and not studio.key(pid) and (sandbox == "never" or start_sandbox is None) and sandbox != "always":
            studio.require_key(pid)  # raises NotConfigured naming the env var
        if cls.hosted and sandbox == "always" and start_sandbox is None:
            raise NotConfigured(f"no sandbox is available for '{pid}' here", provider=pid,
                                hint="sandboxes are started by the portrait command and web studio")
    with ExitStack() as stack:
        built: dict[str, Provider] = {}
        for pid, cls in classes.items():
            opts = {**studio.config.providers.get(pid, {}), **options.get(pid, {})}
            if not cls.hosted:
                built[pid] = cls.create(studio, **opts)
                continue
            use_sandbox = sandbox == "always" or (sandbox == "auto" and not studio.key(pid))
            if not use_sandbox:
                built[pid] = _remembering(cls.create(studio, **opts), studio)
                continue
            assert start_sandbox is not None
            handle = stack.enter_context(start_sandbox(pid))
            provider = cls.for_sandbox(handle, **opts)
            provider.sandbox = True
            built[pid] = _remembering(provider, studio)
        if not built:
            raise NotConfigured("no provider to run the plan")
        yield built  # the caller awaits each provider's aclose() inside its event loop


def _remembering(provider: Provider, studio: Studio) -> Provider:
    """A hosted client that starts from the latencies this studio learnt before and saves what
    it learns (`<studio>/latency.json`), so the next command's first poll is well placed."""
    remember = getattr(provider, "remember_latencies", None)
    if remember is not None:
        from .latency_store import LATENCY_FILE, LatencyStore

        remember(LatencyStore(studio.home / LATENCY_FILE))
    return provider
