"""The web studio's guards, as plain ASGI middleware.

- Loopback by default. Without a token, only loopback Host headers are served, which stops
  DNS-rebinding pages from talking to the studio through the user's browser. A team studio
  (its ledger has accounts) is served on any host: there, every request signs in
  (`web.accounts`), so a page that rebinds a name to it gets nothing.
- With a token (required to bind anywhere else), every request must carry it: the
  `?token=` link printed by `portrait serve` sets an HttpOnly, SameSite=Strict cookie.
- State-changing requests from another origin are refused (cross-site form posts).
- Request bodies are capped (`max_body` bytes) while they stream in, not after.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "MAX_BODY", "StudioGuard", "is_loopback"]

COOKIE = "portrait_token"
MAX_BODY = 20 * 1024 * 1024  # a reference photo; nothing else the studio accepts comes close
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _TooLarge(Exception):
    pass


async def _answer(send: Send, status: int, message: str, hint: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message, "hint": hint}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class StudioGuard:
    def __init__(self, app: ASGIApp, *, token: str | None = None, max_body: int = MAX_BODY,
                 accounts: Callable[[], bool] | None = None) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = urlsplit("//" + headers.get("host", "")).hostname or ""
        extra: list[tuple[bytes, bytes]] = []
        if self.token is None:
            if not is_loopback(host) and not (self.accounts is not None and self.accounts()):
                await _answer(send, 400, f"this studio answers on loopback only, not '{host}'",
                              "open http://127.0.0.1:PORT, or restart 'portrait serve' with --token to share it")
                return
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            cookie = SimpleCookie(headers.get("cookie", ""))
            offered = [
                headers.get("authorization", "").removeprefix("Bearer ").strip(),
                cookie[COOKIE].value if COOKIE in cookie else "",
                (query.get("token") or [""])[0],
            ]
            if not any(o and hmac.compare_digest(o, self.token) for o in offered):
                await _answer(send, 401, "this studio needs its access token",
                              "open the link 'portrait serve' printed (it ends in ?token=...)")
                return
            if (query.get("token") or [""])[0]:
                extra.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin and origin != "null" and urlsplit(origin).netloc != headers.get("host", ""):
                await _answer(send, 403, "cross-site request refused", "use the studio's own pages")
                return
            if headers.get("sec-fetch-site") == "cross-site":
                await _answer(send, 403, "cross-site request refused", "use the studio's own pages")
                return
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, f"upload too large ({int(length) / 1e6:.1f} MB; the limit is {self.max_body / 1e6:.0f} MB)",
                          "resize the photo (a 2-4 MP JPEG is plenty for a reference)")
            return

        seen = 0
        started = False
        too_large = False

        async def refuse() -> None:
            await _answer(send, 413, f"upload too large (over {self.max_body / 1e6:.0f} MB)",
                          "resize the photo (a 2-4 MP JPEG is plenty for a reference)")

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the framework turned our abort into its own answer; ours is the true one
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await refuse()
                return
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await refuse()


def describe(scope: dict[str, Any]) -> str:  # pragma: no cover - debugging aid
    return f"{scope.get('method')} {scope.get('path')}"
