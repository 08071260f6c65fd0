"""Running library work on the engine in tests: the surfaces' way, with sandboxes handed in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from portrait_studio.brief import Rights
from portrait_studio.config import Studio
from portrait_studio.consent import require_rights
from portrait_studio.engine import Engine
from portrait_studio.ledger import Ledger
from portrait_studio.testing.sandbox import start_sandbox

T = TypeVar("T")

CONSENT = Rights(who="Eileen Collins (NASA portrait, public domain)", source="scikit-image sample data",
                 permission="public domain; test use")


def starter(**options: Any) -> Callable[[str], Any]:
    return lambda pid: start_sandbox(pid, **options)


def on_engine(studio: Studio, provider_ids: Iterable[str], work: Callable[[Engine], Awaitable[T]], *,
              sandbox: str = "always", latency: float = 0.02, checker: Any = None,
              options: dict[str, dict[str, Any]] | None = None) -> T:
    async def go() -> T:
        async with Engine.open(studio, provider_ids, sandbox=sandbox, start_sandbox=starter(latency=latency),
                               checker=checker, options=options) as engine:
            return await work(engine)

    return asyncio.run(go())


def consent(studio: Studio, *paths: Path) -> None:
    """Record the rights for real test photos (the engine refuses to send a person's photo without them)."""
    with Ledger(studio.ledger_path) as ledger:
        for path in paths:
            require_rights(ledger, path, CONSENT)
