"""Changes: a session changed (a start, a validation, a status callback); the fleet hears it.

The instance that learns of a change forgets its own copies (response cache, watchers), and
announces it: with Redis, one script bumps the session's generation (every credential's cached
copy is gone at once) and publishes the uuid on the change channel; every other instance then
forgets its own copies too. With a single process there is no one else to tell.

What is published while an instance is not subscribed (starting, or during a Redis outage) is
lost to it, so each time it subscribes it drops what it holds of its own (`resync`: the response
cache, and a wake for every watcher); the session cache is the shared one, already up to date.
The same subscription carries the landed channel, on which a fetch lock's holder hands what it
fetched to the instances waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.errors import InvalidInput
from gateway.fleet.link import PROBE_INTERVAL, RedisLink, Unreachable, milliseconds
from gateway.plivo.models import canonical_session_uuid

logger = logging.getLogger(__name__)
PING_EVERY = 1.0  # seconds of silence on the subscription before its connection is pinged
COUNT_EVERY = 5.0  # seconds between counts of the instances listening (for local shares)
Listening = Callable[[bool], None]


class MemoryFeed:
    """A single process: nobody else to tell, nothing to hear."""

    async def announce(self, uuid: str, message: str) -> None:
        """Nothing to tell."""

    async def messages(self, listening: Listening) -> AsyncIterator[str]:
        """Nothing, ever (subscribed at once)."""
        listening(True)
        await asyncio.Event().wait()
        yield ""  # pragma: no cover  (never reached: makes this an async generator)


class RedisFeed:
    """Redis pub/sub: the change channel, and the landed channel for fetch-lock waiters."""

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        landed: Callable[[str], None],
        generation_ttl: float,
        ping_every: float = PING_EVERY,
    ) -> None:
        self._link, self._landed, self._ping_every = link, landed, ping_every
        self.channel = f"{prefix}:changes"
        self.landed_channel = f"{prefix}:landed"
        self._prefix, self._generation_ttl = prefix, generation_ttl
        self._counted_at = 0.0
        self._owed: dict[str, tuple[list[str], list[object]]] = {}  # changes not yet in Redis
        link.owes(self._flush)

    async def announce(self, uuid: str, message: str) -> None:
        """Bump the session's generation and publish the change: one round trip."""
        keys = [f"{self._prefix}:gen:{uuid}"]
        args: list[object] = [milliseconds(self._generation_ttl), self.channel, message]

        try:
            await self._link.script("bump", keys, args)
        except Unreachable:
            self._owed[uuid] = (keys, args)  # one write per session, however often it changed

    async def _flush(self) -> None:
        """Changes that could not reach Redis reach it now (or wait for the next recovery)."""
        for uuid in list(self._owed):
            keys, args = self._owed[uuid]
            await self._link.script("bump", keys, args)
            del self._owed[uuid]

    async def messages(self, listening: Listening) -> AsyncIterator[str]:
        """Change messages, subscribing again after an outage (what was sent meanwhile is lost).

        After `ping_every` seconds of silence the subscription is pinged; no answer within the
        link's handshake time (GATEWAY_CACHE_TIMEOUT, at least 1 s) counts as an outage: a
        server that stopped answering without closing the connection would otherwise look
        like a quiet channel forever. An outage is logged once when it starts and once when
        it ends, however long it lasts.
        """
        down_since: float | None = None
        while True:
            _raise_if_cancelled()
            pubsub = self._link.client.pubsub()
            try:
                async with asyncio.timeout(self._link.handshake):
                    await pubsub.subscribe(self.channel, self.landed_channel)
                    await self._count()
                self._link.listening = True
                await self._link.ping()  # after an outage: what this instance owes goes now
                if down_since is not None:
                    logger.warning(
                        "listening to %s again, after %.1f s deaf",
                        self.channel,
                        time.monotonic() - down_since,
                    )
                    down_since = None
                listening(True)
                async for data in self._listen(pubsub):
                    yield data
            except (OSError, RedisError, TimeoutError) as exc:
                _raise_if_cancelled()  # a cancellation that arrived as a timeout
                self._link.listening = False
                listening(False)
                if down_since is None:
                    down_since = time.monotonic()
                    logger.warning(
                        "not listening to %s (%r): other instances' changes are not heard;"
                        " trying again every %.0f s",
                        self.channel,
                        exc,
                        PROBE_INTERVAL,
                    )
                await asyncio.sleep(PROBE_INTERVAL)
            finally:
                await _close(pubsub, self._link.handshake)

    async def _listen(self, pubsub: Any) -> AsyncIterator[str]:
        pinged = False
        while True:
            wait = self._link.handshake if pinged else self._ping_every
            item = await pubsub.get_message(timeout=wait)
            if time.monotonic() > self._counted_at + COUNT_EVERY:
                async with asyncio.timeout(self._link.handshake):
                    await self._count()
            if item is None:
                if pinged:
                    raise TimeoutError(f"no answer to a ping in {wait} s")
                async with asyncio.timeout(self._link.handshake):
                    await pubsub.ping()
                pinged = True
                continue
            pinged = False  # anything heard shows the connection is alive
            if item.get("type") != "message":
                continue
            channel, data = _text(item["channel"]), _text(item["data"])
            if channel == self.landed_channel:
                self._landed(data)
            else:
                yield data

    async def _count(self) -> None:
        """How many instances listen: each one's share of a limit while Redis is away."""
        counts = await self._link.client.pubsub_numsub(self.channel)
        self._link.peers = max(1, int(counts[0][1])) if counts else 1
        self._link.peers_known = True
        self._counted_at = time.monotonic()


Feed = MemoryFeed | RedisFeed


class Changes:
    """Applies a change here and tells the fleet; listens for the fleet's changes."""

    def __init__(
        self,
        feed: Feed,
        apply: Callable[[str], Awaitable[None]],
        resync: Callable[[], None],
    ) -> None:
        self._feed, self._apply, self._resync = feed, apply, resync
        self.instance = secrets.token_hex(8)
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether this instance hears the fleet's changes now."""
        return self._listening.is_set()

    async def subscribed(self) -> None:
        """Returns once this instance hears the fleet's changes."""
        await self._listening.wait()

    def _heard(self, listening: bool) -> None:
        if listening:
            self._resync()  # what was published while not subscribed is not heard
            self._listening.set()
        else:
            self._listening.clear()

    async def changed(self, session_uuid: str) -> None:
        """This instance learnt that the session changed."""
        uuid = canonical_session_uuid(session_uuid)
        await self._apply(uuid)
        await self._feed.announce(uuid, json.dumps({"origin": self.instance, "uuid": uuid}))

    async def listen(self) -> None:
        """Apply what other instances publish, until cancelled."""
        async for message in self._feed.messages(self._heard):
            try:
                record = json.loads(message)
                if record.get("origin") == self.instance:
                    continue
                uuid = canonical_session_uuid(record["uuid"])
            except (ValueError, KeyError, TypeError, AttributeError, InvalidInput):
                logger.warning("an unreadable change message was ignored")
                continue
            try:
                await self._apply(uuid)
            except Exception:
                logger.exception("applying a change of session %s failed", uuid)

    def start(self) -> asyncio.Task[None]:
        """The listener as a task of the running loop."""
        self._task = asyncio.create_task(self.listen(), name="fleet-changes")
        return self._task

    async def stop(self, within: float = 5.0) -> None:
        """Cancel the listener and wait for it to end (it closes its connection)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=within)
        if not done:
            logger.warning("the change listener did not stop within %.0f s", within)


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library turned into a timeout or an error.

    A loop that retries after errors must not outlive its cancellation: with Python 3.11, a
    cancel that lands as a wait completes can arrive as TimeoutError, or not at all.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close(pubsub: Any, within: float) -> None:
    """Close the subscription's connection, never waiting longer than `within`."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await pubsub.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
