"""The fleet's one Redis connection pool, its Lua scripts, and what an outage looks like to us.

Every call is bounded by a timeout. A call that fails or times out raises `Unreachable`, and for
`PROBE_INTERVAL` afterwards calls fail at once without waiting on Redis (an outage is logged once,
its end once). Each kind of state catches `Unreachable` and does what its row of the degradation
table (docs/caching-and-fleet.md) says. Writes that must reach Redis eventually (an idempotent
start's record, a generation bump) are queued with `later` and replayed in order once Redis
answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import secrets
import ssl
import time
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


LOSS_GRACE = 5.0  # seconds after Redis lost its data while instances write back their records
_RECOVERING: contextvars.ContextVar[bool] = contextvars.ContextVar("recovering", default=False)


class Unreachable(Exception):
    """Redis did not answer in time, refused the call, or is known to be down just now.

    `sent` says whether the call went out (it may still run, late) or failed before sending.
    """

    def __init__(self, name: str, *, sent: bool) -> None:
        super().__init__(name)
        self.sent = sent


class RedisLink:
    """The pool (aiocache's Redis backend holds it), the scripts, the outage state."""

    def __init__(self, url: str, *, timeout: float, prefix: str = "pvg") -> None:
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
        self.peers_known = False  # whether they were ever counted
        self.listening = False  # whether this instance's subscription is up (landings heard)
        self._retry_at = 0.0
        self._shas = {
            name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
            for name, text in SCRIPTS.items()
        }
        self._flushes: list[Callable[[], Awaitable[None]]] = []
        self._recovered: list[Callable[[], None]] = []
        self._recovering: asyncio.Task[None] | None = None
        self._epoch_key = f"{prefix}:epoch"
        self.epoch: bytes | None = None  # names this Redis's data set; a new one: data lost
        self.lost_at = -1e9  # monotonic time Redis was last seen to have lost its data

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
        except ResponseError as exc:  # answered, but with an error: AUTH, SELECT, ACLs...
            raise ConfigError(
                [f"GATEWAY_CACHE_URL: Redis at {self.name} refused us ({exc})"]
            ) from None
        except (OSError, RedisError, TimeoutError) as exc:
            if self.tls and (_is_tls_failure(exc) or await self._speaks_plain_redis()):
                raise ConfigError(
                    [f"GATEWAY_CACHE_URL: rediss:// but {self.name} does not speak TLS to us"]
                ) from None
            self._failed(exc)
            return False
        try:  # the request path's own connection says who it is too (AUTH, SELECT)
            await self._wire.call(("PING",), self.handshake)
            await self._check_epoch()
        except ResponseError as exc:
            raise ConfigError(
                [f"GATEWAY_CACHE_URL: Redis at {self.name} refused us ({exc})"]
            ) from None
        except (OSError, RedisError, TimeoutError) as exc:
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

    def owes(self, flush: Callable[[], Awaitable[None]]) -> None:
        """`flush` writes what a kind of state owes Redis; it runs when Redis answers again.

        It raises Unreachable when it could not finish (it is run again at the next recovery).
        """
        self._flushes.append(flush)

    async def _check_epoch(self) -> None:
        """Whether Redis kept its data since we last looked (a restart without persistence, or
        a flush, loses it): each data set is named by a random epoch key."""
        await self._send(("SET", self._epoch_key, secrets.token_hex(8), "NX"))
        epoch = await self._send(("GET", self._epoch_key))
        if self.epoch is not None and epoch != self.epoch:
            logger.error("fleet state: Redis at %s lost its data (restarted or flushed)", self.name)
            self.lost_at = time.monotonic()
        self.epoch = epoch

    @property
    def lost_recently(self) -> bool:
        """Whether Redis lost its data in the last `LOSS_GRACE` seconds."""
        return time.monotonic() - self.lost_at < LOSS_GRACE

    async def call(self, *args: object) -> Any:
        """One command on the multiplexed connection; Unreachable when Redis did not answer.

        After an outage, the first call waits until what every kind of state owes Redis is
        written (the takes, records and changes made meanwhile), so that no decision is taken
        on counts that miss them.
        """
        if (self.degraded or self._is_recovering()) and not _RECOVERING.get():
            await self._recovery()
        return await self._send(args)

    def _is_recovering(self) -> bool:
        return self._recovering is not None and not self._recovering.done()

    async def _send(self, args: tuple[object, ...]) -> Any:
        try:
            return await self._wire.call(args, self.timeout)
        except ResponseError as exc:
            if str(exc).startswith("NOSCRIPT"):
                raise NoScriptError(str(exc)) from None
            self._failed(exc)
            raise Unreachable(self.name, sent=True) from exc
        except (OSError, RedisError, TimeoutError) as exc:
            self._failed(exc)
            raise Unreachable(self.name, sent=True) from exc

    async def script(self, name: str, keys: list[str], args: list[object]) -> Any:
        """One script call: one round trip (loaded again when the server does not know it)."""
        try:
            return await self.call("EVALSHA", self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", SCRIPTS[name])  # a restarted or flushed server
            return await self.call("EVALSHA", self._shas[name], len(keys), *keys, *args)

    async def ping(self) -> bool:
        """Whether Redis answers now (a probe: also ends an outage, writing what is owed)."""
        self._retry_at = 0.0
        try:
            await self.call("PING")
        except Unreachable:
            return False
        return True

    async def writable(self) -> bool:
        """Whether Redis answers and takes writes (an out-of-memory or read-only one does not).

        A probe, like `ping`: it ends an outage, writing what is owed.
        """
        self._retry_at = 0.0
        try:
            await self.call("SET", self._epoch_key + ":probe", "1", "PX", 10_000)
        except Unreachable:
            return False
        return True

    async def _recovery(self) -> None:
        """Unreachable while Redis is known down; else probe once, shared by every caller."""
        if time.monotonic() < self._retry_at:
            raise Unreachable(self.name, sent=False)
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovering)
        if self.degraded:
            raise Unreachable(self.name, sent=True)

    async def _recover(self) -> None:
        _RECOVERING.set(True)  # this task's own calls go straight through; others wait for it
        try:
            await self._send(("PING",))
            self.degraded = False
            await self._check_epoch()
            for callback in self._recovered:
                callback()
            for flush in self._flushes:
                await flush()
        except Unreachable:
            self.degraded = True
            return
        logger.warning("fleet state: Redis at %s is back", self.name)

    async def close(self) -> None:
        self._wire.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def _failed(self, exc: BaseException) -> None:
        if not self.degraded:
            logger.warning(
                "fleet state: Redis at %s unavailable (%s%s); each kind of state falls back "
                "as the degradation table in docs/caching-and-fleet.md says",
                self.name,
                type(exc).__name__,
                f": {exc}" if isinstance(exc, ResponseError) else "",
            )
        self.degraded = True
        self._retry_at = time.monotonic() + PROBE_INTERVAL


def milliseconds(seconds: float) -> int:
    """A TTL for Redis's PX: whole milliseconds, at least one."""
    return max(1, int(seconds * 1000))


def _username(name: str | None) -> dict[str, object]:
    return {"username": unquote(name)} if name else {}


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
