"""The CLI's way into the engine: open it with the providers a command needs (a sandbox when there
is no key — the CLI is a surface, so it may hand the sandboxes in), run the work in one event
loop, say SANDBOX loudly, and turn 'nothing was made' into a non-zero exit with the real fix."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from rich.markup import escape

from ..config import Studio
from ..engine import Engine
from ._common import err_console

T = TypeVar("T")

__all__ = ["run_with_engine", "sandbox_notice", "sandbox_starter"]


def sandbox_starter(studio: Studio, **options: Any) -> Callable[[str], AbstractContextManager[Any]]:
    """Start a provider's sandbox on loopback, its task state kept under the studio folder so that
    `portrait resume` after a kill -9 finds the tasks it accepted (like the real API would)."""

    def start(provider_id: str) -> AbstractContextManager[Any]:
        import inspect

        from ..testing.sandbox import start_sandbox

        opts = dict(options)
        if "state_dir" in inspect.signature(start_sandbox).parameters:
            opts.setdefault("state_dir", studio.home / "sandbox" / provider_id)
            opts.setdefault("busy", "join")  # a second command at the same time shares the running sandbox
        return start_sandbox(provider_id, **opts)

    return start


def sandbox_notice(engine: Engine) -> None:
    names = sorted(pid for pid, p in engine.providers.items() if p.sandbox)
    if names:
        err_console.print(
            f"[bold magenta]SANDBOX[/] ({escape(', '.join(names))}): no API key set, so images come from a local "
            "sandbox that follows the provider's API contract — test images, not real ones, and no money is spent",
            highlight=False, soft_wrap=True,
        )


def run_with_engine(
    studio: Studio,
    provider_ids: Iterable[str],
    work: Callable[[Engine], Awaitable[T]],
    *,
    sandbox: str = "auto",
    weights: str | None = None,
    sign: bool = True,
    checker: Any = "default",
    quiet: bool = False,
    accept_licence: str | None = None,
) -> T:
    """Open the engine, announce sandboxes, run `work(engine)` and close everything."""
    options: dict[str, dict[str, Any]] = {"local": {"weights": weights}} if weights else {}

    async def go() -> T:
        async with Engine.open(studio, provider_ids, sandbox=sandbox, options=options,
                               start_sandbox=sandbox_starter(studio), checker=checker, sign=sign) as engine:
            if accept_licence and "local" in engine.providers:
                engine.providers["local"].accept_licence(accept_licence)  # type: ignore[attr-defined]
            if not quiet:
                sandbox_notice(engine)
            return await work(engine)

    return asyncio.run(go())
