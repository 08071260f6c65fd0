"""The web studio's guards, as plain ASGI middleware.

- Loopback by default. Without a token, only loopback Host headers are served, which stops
  DNS-rebinding pages from talking to the studio through the user's browser.
- With a token (required to bind anywhere else), every request must carry it: the
  `?token=` link printed by `portrait serve` sets an HttpOnly, SameSite=Strict cookie.
- State-changing requests must come from the studio's own pages: an `Origin` that is not this
  server's (including the opaque `Origin: null` of sandboxed frames, `file:` pages and
  redirects) or a `Sec-Fetch-Site: cross-site` is refused.
- Request bodies are capped (`max_body` bytes) while they stream in, not after.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "MAX_BODY", "StudioGuard", "is_loopback", "same_origin", "size_text"]

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


def _hostname(host: str) -> str:
    """The host name of a Host header; '' for one that does not parse (answered as not loopback)."""
    try:
        return urlsplit("//" + host).hostname or ""
    except ValueError:
        return ""


def size_text(n: int) -> str:
    """Bytes in binary units, as file managers show them: 20 MiB is '20 MiB', not '21 MB'."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def same_origin(origin: str | None, host: str, fetch_site: str | None = None) -> bool:
    """Whether a state-changing request may come from where it says it comes from.

    Browsers send `Origin` with every POST; its host and port must be this server's (the scheme
    is not compared, so a TLS proxy in front keeps working; one port cannot serve both). `null` (sandboxed frames, `file:` pages, cross-site redirects) never does. Without an
    `Origin` (scripts, curl) the request is not a browser's cross-site post, unless
    `Sec-Fetch-Site` says it is.
    """
    if fetch_site == "cross-site":
        return False
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return False
    return parts.netloc.lower() == host.strip().lower()


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
    def __init__(self, app: ASGIApp, *, token: str | None = None, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _hostname(headers.get("host", ""))
        extra: list[tuple[bytes, bytes]] = []
        if self.token is None:
            if not is_loopback(host):
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
            expected = self.token.encode("utf-8")
            if not any(o and hmac.compare_digest(o.encode("utf-8", "surrogateescape"), expected) for o in offered):
                await _answer(send, 401, "this studio needs its access token",
                              "open the link 'portrait serve' printed (it ends in ?token=...)")
                return
            if (query.get("token") or [""])[0]:
                extra.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not same_origin(
                headers.get("origin"), headers.get("host", ""), headers.get("sec-fetch-site")):
            await _answer(send, 403, "cross-site request refused", "use the studio's own pages")
            return
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, f"upload too large ({size_text(int(length))}; the limit is {size_text(self.max_body)})",
                          "resize the photo (a 2-4 MP JPEG is plenty for a reference)")
            return

        seen = 0
        started = False
        too_large = False

        async def refuse() -> None:
            await _answer(send, 413, f"upload too large (over {size_text(self.max_body)})",
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
