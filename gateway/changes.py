"""Changes: a session changed (a start, a validation, a status callback); the fleet hears it.

The instance that learns of a change forgets its copies (session cache, response cache), wakes
its watchers, and publishes the uuid on the shared cache's channel; every other instance does
the same when the message arrives. With a cache of one process there is no one else to tell.
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
        self, cache: SessionCache, channel: str, apply: Callable[[str], Awaitable[None]]
    ) -> None:
        self._cache, self._channel, self._apply = cache, channel, apply
        self.instance = secrets.token_hex(8)

    async def changed(self, session_uuid: str) -> None:
        """This instance learnt that the session changed."""
        uuid = canonical_session_uuid(session_uuid)
        await self._apply(uuid)
        message = json.dumps({"origin": self.instance, "uuid": uuid})
        await self._cache.publish(self._channel, message)

    async def listen(self) -> None:
        """Apply what other instances publish, until cancelled."""
        async for message in self._cache.messages(self._channel):
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
