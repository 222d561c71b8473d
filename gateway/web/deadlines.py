"""A request body is due whole within GATEWAY_BODY_TIMEOUT of the request, or the request gets 408.

The front door hands the app a `receive` and a `send` of a `BodyDeadline`. Past the deadline the
app is told the client went away (so `read_body`, Starlette's `Request.body()` and everything
else that reads a body stop there), what it then sends is dropped, and the door answers 408 and
closes the connection. A reply that starts before the body was read whole (a 401 before the
body, say) also closes the connection after it: otherwise a client trickling the rest of the
body would keep it open.

A body that is there when the app reads it costs no timer: one is set only when a read has to
wait for the client, so the hot path (a whole small body in the first read) pays nothing for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from typing import Any, cast

from starlette.types import Message, Receive, Send

from gateway.web.graphql_http import Reply, RequestError, error_reply

CLOSE = (b"connection", b"close")
DISCONNECT: Message = {"type": "http.disconnect"}


def late_body(seconds: float) -> Reply:
    """The 408 of a body not whole in time; the connection closes after it."""
    error = RequestError(
        408,
        "REQUEST_TIMEOUT",
        f"the request body did not arrive whole within {seconds:g} s",
        extensions={"limit": "body_timeout", "maximum": seconds},
        headers={"Connection": "close"},
    )
    return error_reply(error)


class BodyDeadline:
    """One request whose body is due whole within `seconds` of its first wait for the client."""

    __slots__ = (
        "_receive",
        "_send",
        "_timer",
        "_waiter",
        "complete",
        "expired",
        "seconds",
        "started",
    )

    def __init__(self, receive: Receive, send: Send, seconds: float) -> None:
        self._receive, self._send, self.seconds = receive, send, seconds
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Task[Any] | None = None
        self.complete = self.started = self.expired = False

    async def receive(self) -> Message:
        """The next message; a disconnect once the deadline has passed."""
        if self.expired:
            return DISCONNECT
        if self.complete or self.started:
            return await self._receive()
        steps = self._receive().__await__()
        try:
            step = next(steps)  # the message, when it is there: no wait, no timer
        except StopIteration as done:
            message: Message = done.value
        else:
            message = await self._waited(steps, step)
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.complete = True
            self.close()
        return message

    async def _waited(self, steps: Iterator[Any], step: Any) -> Message:
        """The message of a read that had to wait for the client, by the deadline."""
        self.waiting()
        try:
            return await _Resumed(steps, step)
        except asyncio.CancelledError:
            task = self._waiter
            if not self.expired or task is None or task.uncancel():
                raise  # not (only) the deadline's cancellation
            return DISCONNECT
        finally:
            self._waiter = None

    def waiting(self) -> None:
        """A read waits for the client: the deadline runs from the first such wait."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.seconds, self._expire)
        self._waiter = asyncio.current_task()

    def _expire(self) -> None:
        if self.complete or self.started:
            return
        self.expired = True
        if self._waiter is not None:
            self._waiter.cancel()

    async def send(self, message: Message) -> None:
        """Pass on the app's message; none once the deadline has passed."""
        if self.expired:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.complete:  # the rest of the body will not be read: close after this
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
        await self._send(message)

    async def answer_late(self, request_id: str | None = None) -> bool:
        """Send the 408 when the deadline passed before any reply; whether it did."""
        if not self.expired or self.started:
            return False
        self.started = True
        await late_body(self.seconds).send(self._send, request_id)
        return True

    def close(self) -> None:
        """The body is whole, or the request done: no deadline any more."""
        if self._timer is not None:
            self._timer.cancel()


class _Resumed:
    """A read already started (its first step yielded `step`), awaited on as `await` would.

    Every later step is passed through as `yield from` does (PEP 380): the event loop's wake-up,
    and a cancellation, which the read itself handles when it can. A server's `receive` need
    not be a coroutine: granian's is a future whose iterator has neither `send` nor `throw`.
    """

    __slots__ = ("_step", "_steps")

    def __init__(self, steps: Iterator[Any], step: Any) -> None:
        self._steps, self._step = steps, step

    def __await__(self) -> Generator[Any, Any, Message]:
        return _resume(self._steps, self._step)


def _resume(steps: Iterator[Any], step: Any) -> Generator[Any, Any, Message]:
    """Go on with a started awaitable from its step `step`, passing each send and throw on."""
    while True:
        try:
            sent = yield step
        except GeneratorExit:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
            raise
        except BaseException as exc:  # a cancellation above all: the awaitable handles it
            throw = getattr(steps, "throw", None)
            if throw is None:
                raise  # an iterator that cannot take it: raised here, as `yield from` does
            try:
                step = throw(exc)
            except StopIteration as done:
                thrown: Message = done.value
                return thrown
        else:
            try:
                # None is what an event loop sends: an iterator's `next` does for it.
                step = (
                    next(steps)
                    if sent is None
                    else cast(Generator[Any, Any, Any], steps).send(sent)
                )
            except StopIteration as done:
                result: Message = done.value
                return result
