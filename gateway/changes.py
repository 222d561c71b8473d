"""Changes: a session changed (a start, a validation, a status callback); the fleet hears it.

The instance that learns of a change forgets its copies (session cache, response cache), wakes
its watchers, and publishes the uuid on the shared cache's channel; every other instance does
the same when the message arrives. With a cache of one process there is no one else to tell.

What is published while an instance is not subscribed (starting, or during a Redis outage) is
lost to it, so each time it subscribes it drops what it holds of its own (`resync`: the response
cache, and a wake for every watcher); the session cache is the shared one, already up to date.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable

from gateway.cache import SessionCache
from gateway.errors import InvalidInput
from gateway.plivo.models import canonical_session_uuid

logger = logging.getLogger(__name__)


class Changes:
    """Applies a change here and tells the fleet; listens for the fleet's changes."""

    def __init__(
        self,
        cache: SessionCache,
        channel: str,
        apply: Callable[[str], Awaitable[None]],
        resync: Callable[[], None],
    ) -> None:
        self._cache, self._channel, self._apply, self._resync = cache, channel, apply, resync
        self.instance = secrets.token_hex(8)
        self._listening = asyncio.Event()

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
        message = json.dumps({"origin": self.instance, "uuid": uuid})
        await self._cache.publish(self._channel, message)

    async def listen(self) -> None:
        """Apply what other instances publish, until cancelled."""
        async for message in self._cache.messages(self._channel, self._heard):
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
        return asyncio.create_task(self.listen(), name="fleet-changes")
