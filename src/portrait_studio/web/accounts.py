"""Signing in to a team studio: who is asking, what their role lets them do, and CSRF.

A studio with no accounts (the one-person default) passes straight through: no login, nothing
scoped, exactly as before. Once the ledger has accounts, every request but the login page and
static files needs one of:

- a session cookie (`portrait_session`: random, HttpOnly, SameSite=Lax, Secure unless the studio is
  on loopback), set by signing in; state-changing requests with it must also carry the session's
  CSRF token (`X-CSRF-Token` header, or a `csrf` form field) — pages carry it in a meta tag;
- an API token (`Authorization: Bearer pst_...`) for scripts and the CLI (no CSRF: no cookie).

The acting person is put in a context variable for the request; the app's ledger reads through
it, so every query is scoped to their team (another team's image is simply not found) and every
row written is signed by them. Roles are checked here per route, before anything runs, and again
in the ledger where money or approvals are at stake.
"""

from __future__ import annotations

import json
import re
import time
from contextvars import ContextVar
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..accounts import Actor, Permission
from ..errors import AccessError, Forbidden, LoginRequired, TooManyAttempts
from ..ledger import Ledger
from .security import is_loopback

__all__ = ["SESSION_COOKIE", "AccountGuard", "current_actor", "permission_for", "session_cookie"]

SESSION_COOKIE = "portrait_session"
_actor: ContextVar[Actor | None] = ContextVar("portrait_actor", default=None)
_csrf: ContextVar[str | None] = ContextVar("portrait_csrf", default=None)

OPEN_PATHS = re.compile(r"^/(login|api/login|static/.*|favicon\.ico)$")
WRITE_RULES: list[tuple[re.Pattern[str], Permission | None]] = [
    (re.compile(r"^/logout$"), None),
    (re.compile(r"^/api/brief/preview$"), "view"),                      # computes; changes nothing
    (re.compile(r"^/api/images/[^/]+/(pick|export|review)$"), "review"),
    (re.compile(r"^/api/exports/approved$"), "review"),
]
"""State-changing routes that need something other than 'spend' (the default, so a route added
later is closed to viewers and reviewers until it is listed here)."""


def current_actor() -> Actor | None:
    """Who is signed in for the request being served (None: the one-person studio)."""
    return _actor.get()


def current_csrf() -> str | None:
    return _csrf.get()


def permission_for(method: str, path: str) -> Permission | None:
    if method in ("GET", "HEAD", "OPTIONS"):
        return "view"
    for pattern, permission in WRITE_RULES:
        if pattern.match(path):
            return permission
    return "spend"


def session_cookie(secret: str, *, host: str, max_age: int) -> str:
    secure = "" if is_loopback(host) else "; Secure"
    return f"{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"


async def _answer(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _error(exc: AccessError) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    status = {LoginRequired: 401, Forbidden: 403, TooManyAttempts: 429}.get(type(exc), 403)
    headers = [(b"retry-after", str(int(exc.retry_after) + 1).encode())] if isinstance(exc, TooManyAttempts) else []
    return status, {"error": exc.message, "hint": exc.hint, "type": type(exc).__name__}, headers


class AccountGuard:
    """ASGI middleware: resolves the acting person (team studios only), checks their role and CSRF."""

    def __init__(self, app: ASGIApp, ledger: Ledger, *, refresh_s: float = 1.0) -> None:
        self.app = app
        self.ledger = ledger
        self.refresh_s = refresh_s
        self._accounts: tuple[float, bool] = (0.0, False)

    def accounts(self) -> bool:
        """Whether the studio has accounts (asked of the database at most every `refresh_s`)."""
        known = self._known()
        if known is None:
            known = self.ledger.has_users()
            self._accounts = (time.monotonic(), known)
        return known

    def _known(self) -> bool | None:
        at, value = self._accounts
        return value if time.monotonic() - at <= self.refresh_s else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from fastapi.concurrency import run_in_threadpool

        accounts = self._known()
        if accounts is None:
            accounts = await run_in_threadpool(self.accounts)
        if not accounts:
            _actor.set(None)
            _csrf.set(None)
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            actor, csrf = await run_in_threadpool(self._who, headers)
        except AccessError as exc:
            status, body, extra = _error(exc)
            await _answer(send, status, body, extra)
            return
        _actor.set(actor)
        _csrf.set(csrf)
        if OPEN_PATHS.match(path):
            await self.app(scope, receive, send)
            return
        if actor is None:
            if method == "GET" and "text/html" in headers.get("accept", ""):
                target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", f"/login?next={quote(target)}".encode()), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await _answer(send, 401, {"error": "sign in first", "hint": "open /login, or send Authorization: Bearer TOKEN",
                                      "type": "LoginRequired"})
            return
        permission = permission_for(method, path)
        try:
            if permission is not None:
                actor.require(permission)
            if csrf is not None and method not in ("GET", "HEAD", "OPTIONS"):
                await self._check_csrf(scope, headers, csrf)
        except AccessError as exc:
            status, body, extra = _error(exc)
            await _answer(send, status, body, extra)
            return
        await self.app(scope, receive, send)

    def _who(self, headers: dict[str, str]) -> tuple[Actor | None, str | None]:
        """(actor, CSRF token or None when the request needs none) from a bearer token or the session cookie."""
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            return self.ledger.authenticate_token(bearer[7:].strip()), None
        cookie = SimpleCookie(headers.get("cookie", ""))
        if SESSION_COOKIE in cookie:
            found = self.ledger.session(cookie[SESSION_COOKIE].value)
            if found is not None:
                return found
        return None, None

    @staticmethod
    async def _check_csrf(scope: Scope, headers: dict[str, str], csrf: str) -> None:
        import hmac

        offered = headers.get("x-csrf-token", "")
        if not offered:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            offered = (query.get("csrf") or [""])[0]
        if not offered or not hmac.compare_digest(offered, csrf):
            raise Forbidden("this request did not carry the page's CSRF token",
                            hint="reload the page (forms and buttons send the token themselves)")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this studio only (never another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target

