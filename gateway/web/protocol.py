"""uvicorn's HTTP/1.1 protocol (httptools), with each response written to the socket once.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and its body when the app sends `http.response.body`: two writes, two system calls, and on
a small response two TCP segments. The gateway's answers are small and whole (a cached answer
is one `bytes`), and on a hot cache those two writes were the largest single cost of a
request (BENCHMARKS.md, the profile of S1). Here the writes of one turn of the event loop
are joined and written together at its end: the head and body of a response go out as one.

Writing at the end of the turn also batches: the client's next request arrives with others,
and the loop reads more of them a wake-up (writing each response at once, as it completes,
cost a hit 25-30 µs more in alternated runs). A client's end of stream flushes what is kept
before the transport closes: a client that half-closes after its request (`shutdown(SHUT_WR)`,
as socat does) still gets its answer. The transport's flow control, closing and its other
calls are the real transport's. `serve`, `demo` and the tests' servers run with this protocol
(`http=`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWrites:
    """An asyncio transport whose writes of one loop turn reach the socket as one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep `data` for the end of this loop turn (what else is written in it joins it)."""
        if not data:
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        """Keep each chunk, as `write` does."""
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what is kept now, as one write (nothing once the transport is closing)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Write what is kept, then close (the transport sends it before closing)."""
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        """Write what is kept, then half-close."""
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        """What waits to be written, kept here or in the transport."""
        kept = sum(len(chunk) for chunk in self._pending or ())
        return kept + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through `JoinedWrites`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both have what is used.
        self._joined = JoinedWrites(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, self._joined))

    def eof_received(self) -> None:
        """The client's end of stream: what is kept goes out before the transport closes."""
        self._joined.flush()
        super().eof_received()


# How every server of the gateway runs uvicorn's HTTP (`serve`, `demo`, the tests' servers):
# each response one write, and no `server: uvicorn` header (nothing to fingerprint).
HTTP_SERVING: dict[str, Any] = {"http": JoinedWritesProtocol, "server_header": False}
