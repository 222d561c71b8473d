"""One HTTP/1.1 connection to Plivo on an asyncio protocol, its answers parsed by httptools.

A request is written whole; its answer is read in the protocol's callbacks (status, the few
headers the client needs, the body decoded and counted against the limit as it arrives), and
the waiting request is woken once: when the answer is complete or has failed. A connection
that failed in any way is closed, never reused.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, cast

import httptools

from gateway.plivo.transport import BrokenAnswer, Inflater, Reading, UpstreamResponse

if TYPE_CHECKING:
    from collections.abc import Callable

_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})
MAX_HEAD = 65_536  # bytes of status line and headers (httptools would gather a header unbounded)


class ConnectionClosed(ConnectionError):
    """The connection ended before the answer did; `answered` if any byte of it had arrived."""

    def __init__(self, what: str, *, answered: bool) -> None:
        super().__init__(what)
        self.answered = answered


class AnswerTimeout(TimeoutError):
    """No byte of the answer arrived for the read timeout."""


class Connection(asyncio.Protocol):
    """Writes one request at a time and reads its answer; `reusable` once it was read cleanly."""

    def __init__(self, read_timeout: float, on_lost: Callable[[Connection], None]) -> None:
        self._read_timeout = read_timeout
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.is_open = False
        self.idle_since = 0.0  # loop time it was last put back in the pool
        self._waiter: asyncio.Future[None] | None = None  # the answer being read, if any
        self._timer: asyncio.TimerHandle | None = None
        self._last_byte = 0.0
        self._reset("GET", "", "", 0)

    def _reset(self, method: str, path: str, subject: str, limit: int) -> None:
        self._method, self._path, self._subject, self._limit = method, path, subject, limit
        self._answered = self._headers_done = self._complete = False
        self._head_size = 0
        self._reusable = self._chunked = False
        self._status = 0
        self._length: int | None = None
        self._encoding = ""
        self._retry_after: str | None = None
        self._reading: Reading | None = None
        self._inflater: Inflater | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._error: BaseException | None = None

    @property
    def reusable(self) -> bool:
        """Its last answer was read whole, the server keeps it alive, and nothing else came."""
        return self._reusable and self.is_open and self._waiter is None

    async def exchange(
        self, request: bytes, method: str, path: str, subject: str, limit: int
    ) -> UpstreamResponse:
        """Write `request` and wait for its whole answer, or raise what went wrong."""
        transport = self._transport
        if transport is None or not self.is_open or transport.is_closing():
            raise ConnectionClosed("closed before the request was sent", answered=False)
        self._reset(method, path, subject, limit)
        self._waiter = waiter = self._loop.create_future()
        transport.write(request)
        self._last_byte = self._loop.time()
        self._timer = self._loop.call_at(self._last_byte + self._read_timeout, self._check_time)
        try:
            await waiter
        finally:
            self._timer.cancel()
            self._waiter = None
            if not self._reusable:  # failed, cancelled, or the server will close it
                self.close()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        return UpstreamResponse(self._status, body, self._retry_after)

    def close(self) -> None:
        self._reusable = False
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.is_open = True

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._complete:
            self.close()  # nothing was asked: a server that breaks keep-alive's rules
            return
        self._answered = True
        self._last_byte = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:  # a callback stopped it, saying why
            self._fail(self._error or self._broken("not HTTP"))
        except httptools.HttpParserUpgrade:
            self._fail(self._broken("a protocol upgrade"))
        except httptools.HttpParserError:  # the head or a chunk's framing (as aiohttp's parser)
            self._fail(self._broken("not HTTP"))
        else:
            if not self._headers_done:
                self._head_size += len(data)
                if self._head_size > MAX_HEAD:
                    self._fail(self._broken("its headers are too large"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        self._reusable = False
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._chunked and self._length is None:
                self._finish()  # a body delimited by the connection's end: complete now
            else:
                what = "reset" if exc is not None else "closed"
                self._fail(ConnectionClosed(f"{what} by Plivo", answered=self._answered))
        self._on_lost(self)

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            self._stop(None)  # more than one answer to one request: never reuse this

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"content-length":
            self._length = int(value) if value.strip().isdigit() else None
        elif key == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif key == b"content-encoding":
            self._encoding = value.decode("latin-1").strip().lower()
        elif key == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # an interim answer: the real one follows
        self._status, self._headers_done = status, True
        self._reading = reading = Reading(
            self._subject, self._method, self._path, status, self._limit
        )
        try:
            reading.check_declared(self._length)
        except BrokenAnswer as exc:
            self._stop(exc)
        if self._encoding in _ENCODINGS:
            self._inflater = Inflater(self._encoding)
        elif self._encoding not in ("identity", ""):
            self._stop(
                reading.broken(f"content encoding {self._encoding[:20]!r} was not asked for")
            )

    def on_body(self, data: bytes) -> None:
        reading = self._reading
        if reading is None:
            return
        if self._inflater is not None:
            try:
                data = self._inflater.feed(data, reading.limit - self._size)
            except zlib.error as exc:
                self._stop(reading.broken(f"not valid {self._encoding}"), exc)
        self._size += len(data)
        self._body.append(data)
        try:
            reading.check_read(self._size)
        except BrokenAnswer as exc:
            self._stop(exc)

    def on_message_complete(self) -> None:
        if not self._headers_done:
            self._length, self._chunked, self._encoding = None, False, ""  # after an interim one
            return
        self._reusable = self._parser.should_keep_alive()
        self._finish()

    # the end of an answer

    def _stop(self, error: BaseException | None, cause: BaseException | None = None) -> None:
        """Stop parsing from a callback; `error` is what the request gets (None: nothing)."""
        if error is not None:
            error.__cause__ = cause
        self._error = error
        self._reusable = False
        raise _Stopped

    def _finish(self) -> None:
        self._complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self.close()
        if self._complete:
            return  # what came after a whole answer: it stands, the connection does not
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _broken(self, what: str) -> BrokenAnswer:
        if self._reading is not None:
            return self._reading.broken(what)
        return BrokenAnswer(
            f"Plivo's answer for {self._subject} is unreadable ({what})",
            method=self._method,
            path=self._path,
        )

    def _check_time(self) -> None:
        due = self._last_byte + self._read_timeout
        if self._loop.time() < due:  # bytes came since: wait the rest of it
            self._timer = self._loop.call_at(due, self._check_time)
            return
        self._fail(AnswerTimeout())


class _Stopped(Exception):
    """Raised inside a parser callback to stop parsing; httptools wraps it."""
