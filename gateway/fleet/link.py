"""The fleet's one Redis connection pool, its Lua scripts, and what an outage looks like to us.

Every call is bounded by a timeout. A call that fails or times out raises `Unreachable`, and for
`PROBE_INTERVAL` afterwards calls fail at once without waiting on Redis (an outage is logged once,
its end once). Each kind of state catches `Unreachable` and does what its row of the README's
degradation table says. Writes that must reach Redis eventually (an idempotent start's record, a
generation bump) are queued with `later` and replayed in order once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from aiocache import RedisCache
from aiocache.serializers import NullSerializer
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    ResponseError,
)

from gateway.errors import ConfigError
from gateway.fleet.scripts import SCRIPTS
from gateway.fleet.wire import Multiplexed

logger = logging.getLogger(__name__)
T = TypeVar("T")
PROBE_INTERVAL = 1.0
MAX_LATER = 10_000  # queued writes kept for replay; past that the oldest is dropped, logged


class Unreachable(Exception):
    """Redis did not answer in time, refused the call, or is known to be down just now.

    `sent` says whether the call went out (it may still run, late) or failed before sending.
    """

    def __init__(self, name: str, *, sent: bool) -> None:
        super().__init__(name)
        self.sent = sent


class RedisLink:
    """The pool (aiocache's Redis backend holds it), the scripts, the outage state."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self.name = f"{parts.hostname}:{parts.port or 6379}"
        self.timeout = timeout
        self.handshake = max(timeout, 1.0)  # connecting and subscribing, not a state call
        self.tls = parts.scheme == "rediss"
        self._cache: Any = RedisCache(
            serializer=NullSerializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(parts.path.strip("/") or "0"),
            password=unquote(parts.password) if parts.password else None,
            ssl=self.tls,
            create_connection_timeout=self.handshake,
            connection_pool_kwargs=_username(parts.username),
            timeout=None,
        )
        self.client: Any = self._cache.client  # redis-py: pub/sub and start-up checks
        self._wire = Multiplexed(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            db=int(parts.path.strip("/") or "0"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=self.tls,
            connect_timeout=self.handshake,
        )
        self.degraded = False
        self.peers = 1  # instances subscribed to the change feed when last counted
        self.listening = False  # whether this instance's subscription is up (landings heard)
        self._retry_at = 0.0
        self._shas = {
            name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
            for name, text in SCRIPTS.items()
        }
        self._later: deque[Callable[[], Awaitable[object]]] = deque()
        self._recovered: list[Callable[[], None]] = []
        self._replaying: asyncio.Task[None] | None = None
        self._overflowed = False  # logged once per outage

    async def verify(self) -> bool:
        """Load the scripts; False when Redis does not answer (start degraded, not ready).

        Raises ConfigError when Redis answers but refuses us: a wrong password or user name,
        a user without the commands we need, or TLS spoken to a server that does not.
        """
        try:
            async with asyncio.timeout(self.handshake):
                for text in SCRIPTS.values():
                    await self.client.script_load(text)
        except (AuthenticationError, NoPermissionError) as exc:
            raise ConfigError(
                [f"GATEWAY_CACHE_URL: Redis at {self.name} refused us ({exc})"]
            ) from None
        except ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "NOPERM" in str(exc):
                raise ConfigError(
                    [f"GATEWAY_CACHE_URL: Redis at {self.name} refused us ({exc})"]
                ) from None
            raise
        except (OSError, RedisError, TimeoutError) as exc:
            if self.tls and (_is_tls_failure(exc) or await self._speaks_plain_redis()):
                raise ConfigError(
                    [f"GATEWAY_CACHE_URL: rediss:// but {self.name} does not speak TLS to us"]
                ) from None
            self._failed(exc)
            return False
        return True

    async def _speaks_plain_redis(self) -> bool:
        """Whether the server answers a plain PING: TLS spoken to it only ever times out."""
        kwargs = self.client.connection_pool.connection_kwargs
        try:
            async with asyncio.timeout(self.handshake):
                reader, writer = await asyncio.open_connection(kwargs["host"], kwargs["port"])
                try:
                    writer.write(b"PING\r\n")
                    answer = await reader.read(16)
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return False
        return answer.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time Redis answers again after an outage."""
        self._recovered.append(callback)

    async def call(self, *args: object) -> Any:
        """One command on the multiplexed connection; Unreachable when Redis did not answer."""
        if self.degraded and time.monotonic() < self._retry_at:
            raise Unreachable(self.name, sent=False)
        try:
            result = await self._wire.call(args, self.timeout)
        except ResponseError as exc:
            if str(exc).startswith("NOSCRIPT"):
                raise NoScriptError(str(exc)) from None
            self._failed(exc)
            raise Unreachable(self.name, sent=True) from exc
        except (OSError, RedisError, TimeoutError) as exc:
            self._failed(exc)
            raise Unreachable(self.name, sent=True) from exc
        if self.degraded:
            await self._recover()
        return result

    async def script(self, name: str, keys: list[str], args: list[object]) -> Any:
        """One script call: one round trip (loaded again when the server does not know it)."""
        try:
            return await self.call("EVALSHA", self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", SCRIPTS[name])  # a restarted or flushed server
            return await self.call("EVALSHA", self._shas[name], len(keys), *keys, *args)

    def later(self, write: Callable[[], Awaitable[object]]) -> None:
        """Replay `write` once Redis answers again (in order, after what was queued before)."""
        if len(self._later) >= MAX_LATER:
            self._later.popleft()
            if not self._overflowed:
                logger.error("more than %d writes queued for Redis: the oldest go", MAX_LATER)
            self._overflowed = True
        self._later.append(write)

    async def ping(self) -> bool:
        """Whether Redis answers now (a probe: also ends an outage, and replays queued writes)."""
        self._retry_at = 0.0
        try:
            await self.call("PING")
        except Unreachable:
            return False
        return True

    async def close(self) -> None:
        self._wire.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def _failed(self, exc: BaseException) -> None:
        if not self.degraded:
            logger.warning(
                "fleet state: Redis at %s unavailable (%s); each kind of state falls back "
                "as the README's degradation table says",
                self.name,
                type(exc).__name__,
            )
        self.degraded = True
        self._retry_at = time.monotonic() + PROBE_INTERVAL

    async def _recover(self) -> None:
        logger.warning("fleet state: Redis at %s is back", self.name)
        self.degraded = False
        self._overflowed = False
        for callback in self._recovered:
            callback()
        if self._later and (self._replaying is None or self._replaying.done()):
            self._replaying = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        """Queued writes, oldest first, until one fails (the rest wait for the next recovery)."""
        while self._later:
            try:
                await self._later[0]()
            except Unreachable:
                return
            self._later.popleft()

    @property
    def pending(self) -> int:
        """Writes queued for replay."""
        return len(self._later)


def _username(name: str | None) -> dict[str, object]:
    return {"username": unquote(name)} if name else {}


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
