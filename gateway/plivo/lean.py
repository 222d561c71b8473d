"""LeanUpstream: HTTP/1.1 to Plivo on asyncio protocols and httptools, with nothing else.

What PlivoClient needs and no more: GET and POST (a JSON body), a bounded keep-alive pool to
the one origin of PLIVO_API_URL (connections reused last-in first-out, dropped when the server
closed them or after KEEPALIVE seconds idle), TLS with the same verified default context as
aiohttp (SNI, hostname checked, ALPN http/1.1), Content-Length, chunked and close-delimited
bodies, gzip and deflate decoded as they arrive within PLIVO_MAX_RESPONSE_BYTES, and the same
timeouts as aiohttp's: connect (waiting for a pooled connection included) and read (between
bytes). Failures map as AiohttpUpstream maps them (tests/plivo/test_lean_transport.py holds
both to it), but for a body that is not valid gzip or deflate: a BrokenAnswer, as httpx's
and as BrokenAnswer says, where aiohttp's payload error makes it UpstreamUnavailable and so
retried, though the same bytes would come back. A GET that fails on a reused connection
before any byte of its answer arrived is sent once more on a new connection: the server
closed it while it was idle. See docs/performance.md for why it exists.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from urllib.parse import quote, urlencode, urlsplit

import orjson

from gateway.plivo.connection import Connection, ConnectionClosed
from gateway.plivo.transport import (
    DEFAULT_MAX_BODY,
    UpstreamResponse,
    timeout_error,
    unavailable_error,
)

KEEPALIVE = 15.0  # seconds an idle connection is kept (aiohttp's default)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # what may not stand in a request line or a header


def default_ssl_context() -> ssl.SSLContext:
    """The system's trusted roots, hostnames checked: what aiohttp uses by default."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


class Pool:
    """At most `limit` connections to one origin; idle ones reused last-in first-out."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._limit, self._connect_timeout = limit, connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[Connection] = []
        self._counted: set[Connection] = set()  # open or reserved for the limit
        self._reserved = 0  # slots held by connections being opened
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False

    async def acquire(self, *, fresh: bool) -> tuple[Connection, bool]:
        """A connection and whether it was used before; `fresh` never takes an idle one."""
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        if not fresh:
            idle = self._take_idle()
            if idle is not None:
                return idle, True
        elif self._idle and self._size() >= self._limit:
            self._discard(self._idle.pop(0))  # make room: the oldest idle one goes
        async with asyncio.timeout(self._connect_timeout):
            if self._size() < self._limit:
                self._reserved += 1
                return await self._open(), False
            handed = await self._wait()
            if handed is None:  # a slot was handed over, reserved for us
                return await self._open(), False
            return handed, True

    def release(self, connection: Connection) -> None:
        """Back to the pool (or to a waiter) when reusable; closed and forgotten otherwise."""
        if not connection.reusable or self._closed:
            self._discard(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)

    def lost(self, connection: Connection) -> None:
        """The connection ended (either side): forget it, and free its slot."""
        if connection in self._idle:
            self._idle.remove(connection)
        self._discard(connection)

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._counted):
            connection.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("the upstream client is closed"))

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        return sum(not waiter.done() for waiter in self._waiters)

    def _size(self) -> int:
        return len(self._counted) + self._reserved

    def _take_idle(self) -> Connection | None:
        expired = asyncio.get_running_loop().time() - KEEPALIVE
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and connection.idle_since > expired:
                return connection
            self._discard(connection)
        return None

    async def _open(self) -> Connection:
        """A new connection, in a slot already reserved."""
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: Connection(self._read_timeout, self.lost),
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        except BaseException:
            self._reserved -= 1
            self._hand_room()
            raise
        self._reserved -= 1
        if self._closed:
            connection.close()
            raise ConnectionError("the upstream client is closed")
        if connection.is_open:
            self._counted.add(connection)
        else:  # lost already: its slot is free again
            self._hand_room()
        return connection

    async def _wait(self) -> Connection | None:
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over as we were cancelled: pass it on
                if handed is None:
                    self._reserved -= 1
                    self._hand_room()
                else:
                    self.release(handed)
            raise

    def _discard(self, connection: Connection) -> None:
        connection.close()
        if connection in self._counted:
            self._counted.discard(connection)
            self._hand_room()

    def _hand_room(self) -> None:
        """A slot is free: the first live waiter gets it, reserved."""
        while self._waiters and self._size() < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._reserved += 1
                waiter.set_result(None)
                return


class LeanUpstream:
    """Over one `Pool` to the origin of `base_url`; built inside the running event loop."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        headers: dict[str, str],
        max_body: int = DEFAULT_MAX_BODY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("the upstream URL must be http:// or https:// with a host")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        self._prefix = url.path.rstrip("/")
        self._max_body = max_body
        self._pool = Pool(
            url.hostname,
            port,
            tls=(ssl_context or default_ssl_context()) if tls else None,
            limit=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        fixed = {"Host": host if port == (443 if tls else 80) else f"{host}:{port}"}
        fixed |= {**headers, "Accept-Encoding": "gzip, deflate"}
        _check_headers(fixed)
        self._fixed = {name.lower(): f"{name}: {value}\r\n" for name, value in fixed.items()}
        self._fixed_block = "".join(self._fixed.values())

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        subject: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, object] | None = None,
    ) -> UpstreamResponse:
        request = self._request(method, path, headers, params, json)
        fresh = False
        while True:
            try:
                connection, reused = await self._pool.acquire(fresh=fresh)
            except TimeoutError as exc:
                raise timeout_error(path, subject, method) from exc
            except OSError as exc:
                raise unavailable_error(path, subject, exc, method) from exc
            try:
                return await connection.exchange(request, method, path, subject, self._max_body)
            except ConnectionClosed as exc:
                if reused and not exc.answered and not fresh and method in IDEMPOTENT:
                    fresh = True  # it was closed while idle: once more, on a new connection
                    continue
                raise unavailable_error(path, subject, exc, method) from exc
            except TimeoutError as exc:
                raise timeout_error(path, subject, method) from exc
            finally:
                self._pool.release(connection)

    def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        params: dict[str, str] | None,
        json: dict[str, object] | None,
    ) -> bytes:
        """The request's bytes: line, headers (the caller's over the defaults), body."""
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        if _UNSAFE.search(target) or _UNSAFE.search(method):
            raise ValueError("the request line to Plivo would hold a space or a control character")
        _check_headers(headers)
        fixed = self._fixed_block
        if any(name.lower() in self._fixed for name in headers):
            given = {name.lower() for name in headers}
            fixed = "".join(v for k, v in self._fixed.items() if k not in given)
        lines = [f"{method} {target} HTTP/1.1\r\n", fixed]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        body = b""
        if json is not None or method not in ("GET", "HEAD"):
            body = orjson.dumps(json) if json is not None else b""
            lines.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body

    def idle_connections(self) -> int:
        """How many connections wait in the pool for a request."""
        return self._pool.idle

    def waiting(self) -> int:
        """How many requests wait for a connection."""
        return self._pool.waiting

    async def close(self) -> None:
        await self._pool.close()


def _check_headers(headers: dict[str, str]) -> None:
    """No header may carry a line break: it would inject headers (the value is not named)."""
    for name, value in headers.items():
        if _UNSAFE.search(name) or "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"a header for Plivo ({name[:40]!r}) holds a forbidden character")
