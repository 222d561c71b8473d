"""One connection to Redis that carries every call of the request path at once.

redis-py takes a connection from its pool for each call, writes, reads and gives it back: about
200 µs of this process's CPU per round trip, which cost a new session half its throughput
(`make bench`, S2). Here every call is written as it comes on one connection (pipelined), the
writes of one event-loop turn go out in one system call, and hiredis parses the replies, which
Redis sends in the order of the calls. Pub/sub, start-up checks and script loading stay on
redis-py.

A call that times out closes the connection (the replies still owed on it could only arrive
late, or never from a server that stopped answering); calls after it open a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

# hiredis's stubs type the argument as a one-element tuple; it takes any number of arguments.
_pack = cast(Callable[[tuple[object, ...]], bytes], hiredis.pack_command)


class Wire(asyncio.Protocol):
    """The protocol: writes batched per loop turn, replies matched to calls in order."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: Any = None  # asyncio's or uvloop's transport
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command` (already packed); its reply's future."""
        if self._transport is None or self._transport.is_closing():
            raise RedisConnectionError("the connection to Redis is closed")
        loop = asyncio.get_running_loop()
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(command)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(future)
        return future

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._pending:
                self.close()  # a reply nobody asked for: nothing after it can be trusted
                return
            future = self._pending.popleft()
            if future.done():
                continue  # its caller gave up; the reply is dropped
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"the connection to Redis was lost ({exc!r})")
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Close the connection; every call still waiting fails."""
        if self._transport is not None:
            self._transport.close()


class Multiplexed:
    """The connection, opened on first use and again after it closed."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int,
        username: str | None,
        password: str | None,
        tls: bool,
        connect_timeout: float,
    ) -> None:
        self._host, self._port, self._db = host, port, db
        self._username, self._password, self._tls = username, password, tls
        self._connect_timeout = connect_timeout
        self._wire: Wire | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, args: tuple[object, ...], deadline: float) -> Any:
        """Send one command and wait up to `deadline` seconds for its reply.

        Raises redis-py's ConnectionError or ResponseError, or TimeoutError.
        """
        wire = self._wire
        if wire is None or wire.closed.done():
            wire = await self._open()
        future = wire.send(_pack(args))
        loop = asyncio.get_running_loop()
        timer = loop.call_later(deadline, _expire, future, wire)
        try:
            return await future
        finally:
            timer.cancel()

    async def _open(self) -> Wire:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._wire is not None and not self._wire.closed.done():
                return self._wire
            loop = asyncio.get_running_loop()
            context = ssl.create_default_context() if self._tls else None
            async with asyncio.timeout(self._connect_timeout):
                _, wire = await loop.create_connection(
                    Wire,
                    self._host,
                    self._port,
                    ssl=context,
                    server_hostname=self._host if context else None,
                )
                await self._hello(wire)
            self._wire = wire
            return wire

    async def _hello(self, wire: Wire) -> None:
        try:
            if self._password is not None:
                credentials = (
                    (self._username, self._password) if self._username else (self._password,)
                )
                await wire.send(_pack(("AUTH", *credentials)))
            if self._db:
                await wire.send(_pack(("SELECT", self._db)))
        except BaseException:
            wire.close()
            raise

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._wire is not None:
            self._wire.close()
            self._wire = None


def _expire(future: asyncio.Future[Any], wire: Wire) -> None:
    if not future.done():
        future.set_exception(TimeoutError("Redis did not answer in time"))
        with contextlib.suppress(Exception):
            wire.close()
