"""Run the web studio with uvicorn: in the foreground (`portrait serve`) or in a thread (tests)."""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from typing import Any

from ..config import Studio
from ..errors import StudioError
from .security import is_loopback

__all__ = ["ServerThread", "check_bind", "serve"]


def check_bind(host: str, token: str | None, *, accounts: bool = False) -> None:
    """Loopback needs nothing; any other address needs a token (the studio spends money) — or
    accounts (a team studio, where everyone signs in)."""
    if not is_loopback(host) and not token and not accounts:
        raise StudioError(
            f"binding to {host} would let anyone on that network spend your credits",
            hint="pass --token SECRET (share the printed link), set up accounts ('portrait team init'), "
            "or keep the default --host 127.0.0.1",
        )
    if token is not None and len(token) < 12:
        raise StudioError("the token is too short to guard the studio", hint="use at least 12 characters")


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they are TCP, and uvicorn
    # writes an answer's head and body separately (the body would wait ~40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise StudioError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ServerThread:
    """The app served by uvicorn on a background thread; `url` is ready when the constructor returns."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self._sock = _socket(host, port)
        self.host = host
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started and time.monotonic() < end:
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(studio: Studio, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          open_browser: bool = True, announce: Any = print, start_sandbox: Any = None, workers: int = 2) -> None:
    """Serve until Ctrl-C. Prints (and opens) the URL, with the token when there is one."""
    import uvicorn

    from ..ledger import Ledger
    from .app import create_app

    with Ledger(studio.ledger_path) as ledger:
        accounts = ledger.has_users()
        where = ledger.location
    check_bind(host, token, accounts=accounts)
    sock = _socket(host, port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    announce(f"Portrait Studio on {url}  (studio folder {studio.home}; ledger {where}"
             f"{'; team studio: sign in' if accounts else ''}; Ctrl-C stops)")
    if open_browser:
        threading.Timer(0.8, webbrowser.open, args=(url,)).start()
    app = create_app(studio, token=token, start_sandbox=start_sandbox, workers=workers)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    server.run(sockets=[sock])
