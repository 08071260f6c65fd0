"""`portrait sandbox`: run a provider sandbox on loopback until Ctrl-C."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import typer

from ..config import KEY_ENV_VARS
from ._common import JsonOption, console, plain, print_json
from ._options import PortOption, finite

__all__ = ["register"]

def _key(value: str) -> str:
    if not value.strip() or not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise typer.BadParameter("use visible ASCII characters without spaces")
    return value


def _announce(provider: str, handle: Any) -> None:
    console.print(f"[bold]{provider} sandbox[/] listening on", plain(handle.url), highlight=False)
    console.print(plain(f"  key: {handle.key}   (e.g. {KEY_ENV_VARS[provider]}={handle.key})"))
    if handle.ca_file:
        console.print(plain(f"  TLS certificate to trust: {handle.ca_file}"))
    console.print("  images are SANDBOX output, not FLUX; press Ctrl-C to stop", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("sandbox")
    def sandbox(
        provider: Annotated[Literal["bfl", "fal", "replicate"], typer.Option("--provider", help="Which API to serve.")] = "bfl",
        port: PortOption = 0,
        latency: Annotated[float, typer.Option("--latency", help="Seconds each task takes.",
                                               callback=finite(0.0, 3600.0))] = 2.0,
        credits: Annotated[float, typer.Option("--credits", help="Account balance.", callback=finite(0.0))] = 1000.0,
        key: Annotated[str, typer.Option("--key", help="The API key the sandbox accepts.", callback=_key)] = "sandbox-key",
        duration: Annotated[float, typer.Option("--duration", hidden=True, help="Stop after N seconds.",
                                                callback=finite(0.0))] = 0.0,
        json_out: JsonOption = False,
    ) -> None:
        """Serve a local sandbox of a provider's API (real HTTP, fake images from a public-domain photo)."""
        from ..testing.sandbox import start_sandbox

        handle = start_sandbox(provider, port=port, latency=latency, credits=credits, key=key)
        try:
            if json_out:
                print_json({"provider": provider, "url": handle.url, "key": handle.key, "env_var": KEY_ENV_VARS[provider],
                            "ca_file": str(handle.ca_file) if handle.ca_file else None}, line=True)
            else:
                _announce(provider, handle)
            started = time.monotonic()
            while not duration or time.monotonic() - started < duration:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            stats = handle.stats
            handle.stop()
            if json_out:
                print_json({"stopped": True, "tasks": stats.paid, "credits_spent": stats.credits_spent}, line=True)
            else:
                console.print(f"stopped: {stats.paid} tasks, {stats.credits_spent:g} credits spent", highlight=False)
