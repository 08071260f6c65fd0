"""A lean HTTP/1.1 transport for the hosted clients: asyncio streams under `httpx`.

Polling a hosted task is many small GETs. httpx's default transport (httpcore, anyio, h11)
costs about 1.5 ms of CPU per call on a small machine, several times the cost of the
socket work itself; this transport keeps `httpx.AsyncClient` (redirects, timeouts,
decoding, errors) and replaces only the wire part: keep-alive connections per origin,
HTTP/1.1 requests written in one go, responses parsed with `StreamReader.readuntil`,
bodies by Content-Length, chunked or until close. TLS comes from the same SSL context
httpx would use.

What the submission logic relies on is kept exact: a failure to *connect* raises
`httpx.ConnectError` / `ConnectTimeout` (nothing was sent, safe to retry); once the
request may have been written, failures raise `WriteError`, `ReadError`,
`RemoteProtocolError` or `ReadTimeout` (the outcome is unknown; never re-sent blindly).
An idle connection the server closed is never reused, and only idempotent methods are
retried once on a fresh connection when a reused one fails before any answer.

Proxies are not spoken here: `lean_transport()` returns None when a proxy is configured
in the environment, and the client falls back to httpx's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import httpx

__all__ = ["LeanTransport", "lean_transport"]

_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?\[\]!$&'()*+,;=%]+")  # nothing httpx would re-encode
_LIMIT = 1 << 20  # longest status line + headers accepted
_CHUNK = 1 << 16
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


TlsContext = ssl.SSLContext | Callable[[], ssl.SSLContext] | None
"""A TLS context, or what makes one on the first https connection (loading the CA bundle costs
20-35 ms: a client that only talks plain HTTP to a local sandbox never pays it)."""


def lean_transport(ssl_context: TlsContext) -> LeanTransport | None:
    """The lean transport, or None where httpx's own is needed (a proxy is configured)."""
    if any(os.environ.get(name) for name in _PROXY_VARS):
        return None
    return LeanTransport(ssl_context)


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    def healthy(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing() or self.reader._buffer)  # type: ignore[attr-defined]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio streams (see the module docstring)."""

    # Host lookups, shared by every client in the process (one per web job or batch worker):
    # a lookup runs in a thread, which costs a poll's worth of CPU several times over.
    _dns: ClassVar[dict[str, tuple[list[str], float]]] = {}

    def __init__(self, ssl_context: TlsContext = None, max_idle_per_origin: int = 64) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, int], list[_Connection]]] = (
            weakref.WeakKeyDictionary())

    def _pool(self) -> dict[tuple[str, str, int], list[_Connection]]:
        loop = asyncio.get_running_loop()
        pool = self._idle.get(loop)
        if pool is None:
            pool = self._idle[loop] = {}
        return pool

    async def aclose(self) -> None:
        """Close this loop's idle connections (left open, each would be closed by the garbage
        collector later, with a ResourceWarning whose text alone costs more than a poll)."""
        with contextlib.suppress(RuntimeError):
            for idle in self._idle.pop(asyncio.get_running_loop(), {}).values():
                for conn in idle:
                    conn.close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeout = request.extensions.get("timeout", {})
        body = request.content if hasattr(request, "_content") else b"".join([c async for c in request.stream])  # type: ignore[union-attr]
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        status, headers, data = await self._exchange(origin, request.method, self._head(request, body), body,
                                                     timeout.get("connect"), timeout.get("read"),
                                                     timeout.get("write"))
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(data),
                              extensions={"http_version": b"HTTP/1.1"}, request=request)

    async def request(self, method: str, url: str | httpx.URL, headers: dict[str, str], timeout: float | None,
                      body: bytes = b"") -> httpx.Response | None:
        """Send one request straight on the wire with exactly `headers` (plus Host and the
        body's length), without httpx's request machinery: most of a poll's CPU is that
        machinery. Failures raise as `handle_async_request` does. None when httpx must
        answer instead: a URL this does not take apart, or a redirect to follow (nothing
        was accepted at a URL that redirects). The body is decoded as httpx would."""
        target = _target(url)
        if target is None:
            return None
        origin, netloc, path = target
        lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: " + netloc]
        lines.extend(name.encode() + b": " + value.encode() for name, value in headers.items())
        if body or method == "POST":
            lines.append(b"Content-Length: " + str(len(body)).encode())
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        status, answer, data = await self._exchange(origin, method, head, body, timeout, timeout, timeout)
        if 300 <= status < 400 and any(n.lower() == b"location" for n, _ in answer):
            return None
        # No `request` on it: building one parses the URL again (nothing here reads it).
        response = httpx.Response(status, headers=answer, stream=httpx.ByteStream(data),
                                  extensions={"http_version": b"HTTP/1.1"})
        if any(n.lower() == b"content-encoding" and v.strip().lower() not in (b"", b"identity") for n, v in answer):
            response.read()  # httpx's decoders
        else:
            response._content = data  # what read() would store, without its chunked iteration
        return response

    async def _exchange(self, origin: tuple[str, str, int], method: str, head: bytes, body: bytes,
                        connect_timeout: float | None, read_timeout: float | None,
                        write_timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        for attempt in (1, 2):
            conn = await self._acquire(origin, connect_timeout)
            reused = conn.used
            conn.used = True
            answered = False
            # One timer for the whole exchange when the write and read limits agree (they do for
            # every call the clients make): a timer per read costs more than the read.
            whole_limit = read_timeout if read_timeout == write_timeout else None
            step_read, step_write = (None, None) if whole_limit is not None else (read_timeout, write_timeout)
            written = False
            try:
                try:
                    async with asyncio.timeout(whole_limit):
                        try:
                            conn.writer.write(head + body if len(body) < _CHUNK else head)
                            if len(body) >= _CHUNK:
                                conn.writer.write(body)
                            if conn.writer.transport.get_write_buffer_size():  # only a big body waits here
                                await _with_timeout(conn.writer.drain(), step_write, httpx.WriteTimeout)
                        except (OSError, ConnectionError) as exc:
                            raise httpx.WriteError(f"{type(exc).__name__}: {exc}") from None
                        written = True
                        status, headers, keep = await self._read_head(conn.reader, step_read)
                        answered = True
                        data, whole = await self._read_body(conn.reader, method, status, headers, step_read)
                except TimeoutError:
                    kind = httpx.ReadTimeout if written else httpx.WriteTimeout
                    raise kind(f"no answer within {whole_limit:g} s") from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                conn.close()
                if reused and not answered and attempt == 1 and method in _IDEMPOTENT:
                    continue  # a kept-alive connection died under us; the request is safe to send again
                raise exc
            except BaseException:
                conn.close()
                raise
            if keep and whole:
                self._release(origin, conn)
            else:
                conn.close()
            return status, headers, data
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _head(request: httpx.Request, body: bytes) -> bytes:
        target = request.url.raw_path or b"/"
        lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
        has_length = False
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower == b"content-length":
                has_length = True
                value = str(len(body)).encode()
            elif lower == b"transfer-encoding":
                continue  # the body is sent whole, with its length
            lines.append(name + b": " + value)
        if body and not has_length:
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _acquire(self, origin: tuple[str, str, int], connect_timeout: float | None) -> _Connection:
        idle = self._pool().get(origin)
        while idle:
            conn = idle.pop()
            if conn.healthy():
                return conn
            conn.close()
        scheme, host, port = origin
        tls: Any = None
        if scheme == "https":
            if callable(self._ssl):
                self._ssl = self._ssl()
            tls = self._ssl or ssl.create_default_context()
        try:
            addresses = await _with_timeout(self._addresses(host, port), connect_timeout, httpx.ConnectTimeout)
        except OSError as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        failure: BaseException | None = None
        for address in addresses:  # each address in turn, as a browser would without racing them
            try:
                reader, writer = await _with_timeout(
                    asyncio.open_connection(address, port, ssl=tls, server_hostname=host if tls else None,
                                            limit=_LIMIT),
                    connect_timeout, httpx.ConnectTimeout)
                return _Connection(reader, writer)
            except (OSError, ssl.SSLError) as exc:
                failure = exc
        self._dns.pop(host, None)
        raise httpx.ConnectError(f"{type(failure).__name__}: {failure}") from None

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The host's addresses, looked up once a minute per process."""
        if _is_ip(host):
            return [host]
        cached = self._dns.get(host)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"no address for {host}")
        self._dns[host] = (addresses, now + 60.0)
        return addresses

    def _release(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._pool().setdefault(origin, [])
        if len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(conn)

    async def _read_head(self, reader: asyncio.StreamReader,
                         read_timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]], bool]:
        while True:
            block = await _read(reader.readuntil(b"\r\n\r\n"), read_timeout)
            status_line, _, rest = block.partition(b"\r\n")
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise httpx.RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and friends come before the real answer
            headers = list(_header_lines(rest))
            connection = b",".join(v for n, v in headers if n.lower() == b"connection").lower()
            keep = b"close" not in connection if parts[0] == b"HTTP/1.1" else b"keep-alive" in connection
            return status, headers, keep

    async def _read_body(self, reader: asyncio.StreamReader, method: str, status: int,
                         headers: list[tuple[bytes, bytes]], read_timeout: float | None) -> tuple[bytes, bool]:
        """(body, whether the connection can carry another request: not if the body ran to its close)."""
        if method == "HEAD" or status in (204, 304):
            return b"", True
        encoding = b",".join(v for n, v in headers if n.lower() == b"transfer-encoding").lower()
        if b"chunked" in encoding:
            chunks: list[bytes] = []
            while True:
                size_line = await _read(reader.readuntil(b"\r\n"), read_timeout)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("malformed chunk size") from None
                if size == 0:
                    while (await _read(reader.readuntil(b"\r\n"), read_timeout)) != b"\r\n":
                        pass  # trailers
                    return b"".join(chunks), True
                chunks.append(await _read_exactly(reader, size, read_timeout))
                await _read(reader.readuntil(b"\r\n"), read_timeout)
        lengths = [v for n, v in headers if n.lower() == b"content-length"]
        if lengths:
            try:
                length = int(lengths[0])
            except ValueError:
                raise httpx.RemoteProtocolError("malformed Content-Length") from None
            return await _read_exactly(reader, length, read_timeout), True
        chunks = []
        while chunk := await _read(reader.read(_CHUNK), read_timeout):
            chunks.append(chunk)
        return b"".join(chunks), False


def _target(url: str | httpx.URL) -> tuple[tuple[str, str, int], bytes, bytes] | None:
    """(origin, Host value, request target) of an http(s) URL, or None for one to leave to httpx.

    A plain URL string (printable ASCII, no user info, no fragment: what providers hand out)
    is split without httpx's parser, which costs more than the rest of a poll."""
    if isinstance(url, httpx.URL):
        if url.scheme not in ("http", "https") or not url.host:
            return None
        port = url.port or (443 if url.scheme == "https" else 80)
        return (url.scheme, url.host, port), url.netloc, url.raw_path or b"/"
    if not _PLAIN_URL.fullmatch(url):
        return None
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return None
    netloc, slash, path = rest.partition("/")
    if "/." in "/" + path.partition("?")[0]:
        return None  # dot segments: httpx normalises them
    slash = "/"
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
        path = "?" + query
    host, colon, port_text = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
    if not colon:
        host = netloc
    elif not port_text.isdigit():
        return None
    host = host.lower()
    if not host or host.startswith("["):
        return None  # IPv6 literals: httpx's parser
    default = 443 if scheme == "https" else 80
    port = int(port_text) if colon else default
    if colon and port == default:
        netloc = host  # httpx leaves a default port out of Host
    return (scheme, host, port), netloc.lower().encode(), (slash + path).encode()


def _header_lines(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        yield name.strip(), value.strip()


async def _read_exactly(reader: asyncio.StreamReader, size: int, read_timeout: float | None) -> bytes:
    parts = []
    left = size
    while left > 0:
        chunk = await _read(reader.read(min(left, _CHUNK)), read_timeout)
        if not chunk:
            raise httpx.RemoteProtocolError(f"the connection closed {left} bytes before the end of the body")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


async def _read(awaitable: Any, read_timeout: float | None) -> Any:
    try:
        return await _with_timeout(awaitable, read_timeout, httpx.ReadTimeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise httpx.RemoteProtocolError("the server disconnected without sending a response") from None
        raise httpx.RemoteProtocolError("the connection closed in the middle of a response") from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("the response headers are too long") from None
    except (OSError, ConnectionError) as exc:
        raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None


async def _with_timeout(awaitable: Any, seconds: float | None, error: type[httpx.TimeoutException]) -> Any:
    if seconds is None:
        return await awaitable
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise error(f"no progress for {seconds:g} s") from None


@functools.lru_cache(maxsize=64)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
