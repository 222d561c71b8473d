"""How many requests and websockets one client may hold open at once.

A client is the ASGI scope's client host: the peer's address, or the address uvicorn takes from
the proxy headers when it is told to trust them. Requests in flight and open websockets count;
beyond GATEWAY_MAX_CONNECTIONS_PER_CLIENT a request gets 429 and a websocket is refused at its
handshake. Every process counts its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import Receive, Scope, Send

from gateway.web.deadlines import CLOSE
from gateway.web.graphql_http import Reply, RequestError, error_reply

logger = logging.getLogger(__name__)
WARN_EVERY = 60.0  # seconds between two warnings about one address
RETRY_AFTER = 1  # seconds: a connection of the client's own is soon free


class ClientConnections:
    """Counts what each client address holds open; refuses one more beyond `limit`."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self._clock = limit, clock
        self._held: dict[str, int] = {}
        self._warned: dict[str, float] = {}

    def enter(self, address: str) -> bool:
        """Count one more for `address`, or refuse it (False) when it holds `limit` already."""
        held = self._held.get(address, 0)
        if held >= self.limit:
            self._warn(address)
            return False
        self._held[address] = held + 1
        return True

    def leave(self, address: str) -> None:
        """One of `address`'s requests or websockets is done."""
        held = self._held[address] - 1
        if held:
            self._held[address] = held
        else:
            del self._held[address]

    def held(self, address: str) -> int:
        """How many `address` holds now."""
        return self._held.get(address, 0)

    def _warn(self, address: str) -> None:
        """One line a minute per address at most: a client at its limit tries again and again."""
        now = self._clock()
        last = self._warned.get(address)
        if last is not None and now - last < WARN_EVERY:
            return
        if len(self._warned) >= 1024:  # forget addresses not warned about for a minute
            self._warned = {a: t for a, t in self._warned.items() if now - t < WARN_EVERY}
        self._warned[address] = now
        logger.warning(
            "client %r holds %d requests and websockets, GATEWAY_MAX_CONNECTIONS_PER_CLIENT: "
            "its new ones are refused (said at most once a minute per address)",
            address,
            self.limit,
        )


def over_limit(limit: int) -> Reply:
    """The 429 of a client at its limit."""
    error = RequestError(
        429,
        "RATE_LIMITED",
        f"this client has {limit} requests and websockets open, the most it may",
        extensions={
            "retryAfter": RETRY_AFTER,
            "limit": "connections_per_client",
            "maximum": limit,
        },
        headers={"Retry-After": str(RETRY_AFTER)},
    )
    return error_reply(error)


async def refuse(scope: Scope, receive: Receive, send: Send, reply: Reply) -> None:
    """Send `reply` to a request, or refuse a websocket's handshake with it."""
    if scope["type"] == "http":
        start = reply.start()
        start["headers"].append(CLOSE)  # a client at its limit gives a socket back
        await send(start)
        await send({"type": "http.response.body", "body": reply.body})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({**reply.start(), "type": "websocket.http.response.start"})
        await send({"type": "websocket.http.response.body", "body": reply.body})
    else:  # a server without the denial response: a plain refusal (HTTP 403)
        await send({"type": "websocket.close", "code": 1013})
