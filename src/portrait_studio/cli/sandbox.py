"""`portrait sandbox`: run a provider sandbox on loopback until Ctrl-C."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ._common import console

__all__ = ["register"]

_ENV = {"bfl": "BFL_API_KEY", "fal": "FAL_KEY", "replicate": "REPLICATE_API_TOKEN"}


def register(app: typer.Typer) -> None:
    @app.command("sandbox")
    def sandbox(
        provider: Annotated[str, typer.Option("--provider", help="bfl, fal or replicate")] = "bfl",
        port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1 (0 picks a free one)")] = 0,
        latency: Annotated[float, typer.Option("--latency", help="seconds each task takes")] = 2.0,
        credits: Annotated[float, typer.Option("--credits", help="account balance")] = 1000.0,
        key: Annotated[str, typer.Option("--key", help="the API key the sandbox accepts")] = "sandbox-key",
        duration: Annotated[float, typer.Option("--duration", hidden=True, help="stop after N seconds")] = 0.0,
    ) -> None:
        """Serve a local sandbox of a provider's API (real HTTP, fake images from a public-domain photo)."""
        from ..errors import StudioError
        from ..testing.sandbox import start_sandbox

        if provider not in _ENV:
            raise StudioError(f"no sandbox for provider '{provider}'", hint="use --provider bfl, fal or replicate")
        handle = start_sandbox(provider, port=port, latency=latency, credits=credits, key=key)
        try:
            console.print(f"[bold]{provider} sandbox[/] listening on {handle.url}", highlight=False)
            console.print(f"  key: {handle.key}   (e.g. {_ENV[provider]}={handle.key})", highlight=False)
            if handle.ca_file:
                console.print(f"  TLS certificate to trust: {handle.ca_file}", highlight=False)
            console.print("  images are SANDBOX output, not FLUX; press Ctrl-C to stop", highlight=False)
            started = time.monotonic()
            while not duration or time.monotonic() - started < duration:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            stats = handle.stats
            handle.stop()
            console.print(f"stopped: {stats.paid} tasks, {stats.credits_spent:g} credits spent", highlight=False)
