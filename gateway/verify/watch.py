"""SessionWatcher: live status for subscriptions, one upstream poller per credential and uuid.

However many subscribers watch a session in this process, one poller reads it (through the
session cache, so a fleet sharing Redis mostly reads the cache) and pushes each change of its
status or attempts to all of them. It reads fresh copies only, never one served while it is
refreshed: it reads again when its copy stops being fresh (an interval that follows the number
of sessions polled, or the callbacks' safety TTL), at once when a status callback or a mutation
changed the session, and when the budget has room again if it was spent (meanwhile it keeps
the last copy, and its subscribers keep their state). It ends at a terminal status or when its
last subscriber leaves. Each API key may hold at most its share of this instance's pollers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, Hashable
from dataclasses import dataclass, field

from gateway.errors import Throttled, UpstreamRejected
from gateway.plivo.models import Session, canonical_session_uuid
from gateway.verify.sessions import SessionService

logger = logging.getLogger(__name__)
_END = object()


@dataclass
class _Poller:
    queues: dict[asyncio.Queue[object], str] = field(default_factory=dict)  # -> API key name
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last: object = None

    @property
    def payer(self) -> str:
        """Who pays for its reads: its longest-standing subscriber's key."""
        return next(iter(self.queues.values()), "anonymous")


class SessionWatcher:
    """Pollers by (credential namespace, uuid), shared by their subscribers."""

    def __init__(
        self,
        interval: float = 1.0,
        max_interval: float = 10.0,
        max_pollers: int = 1000,
        key_share: float = 1.0,
    ) -> None:
        self.interval, self.max_interval = interval, max_interval
        self.max_pollers = max_pollers  # each polls Plivo: a bound on what watchers can cost
        self.per_key = max(1, math.floor(max_pollers * key_share))
        self._pollers: dict[tuple[str, str], _Poller] = {}

    @property
    def pollers(self) -> int:
        """How many pollers run (one per watched credential and uuid)."""
        return len(self._pollers)

    def wake(self, session_uuid: str) -> None:
        """The session changed (a callback, a mutation): every poller of it reads at once."""
        for (_, uuid), poller in self._pollers.items():
            if uuid == session_uuid:
                poller.wake.set()

    def wake_all(self) -> None:
        """Every poller reads at once (changes may have been missed)."""
        for poller in self._pollers.values():
            poller.wake.set()

    def held_by(self, caller: str) -> int:
        """How many of this instance's pollers `caller` subscribes to."""
        return sum(1 for poller in self._pollers.values() if caller in poller.queues.values())

    async def watch(
        self, service: SessionService, session_uuid: str, caller: str = "anonymous"
    ) -> AsyncGenerator[Session | None, None]:
        """The session now, then at each change; ends at a terminal status or None (no session)."""
        uuid = canonical_session_uuid(session_uuid)
        key = (service.namespace, uuid)
        poller = self._pollers.get(key)
        joins = poller is not None and caller in poller.queues.values()
        if not joins and self.held_by(caller) >= self.per_key:
            raise Throttled(
                f"this API key already watches {self.per_key} sessions on this instance,"
                " its share (GATEWAY_KEY_BUDGET_SHARE)",
                retry_after=10.0,
            )
        if poller is None and len(self._pollers) >= self.max_pollers:
            raise Throttled(
                f"this instance already watches {self.max_pollers} sessions", retry_after=10.0
            )
        if poller is None or (poller.task is not None and poller.task.done()):
            poller = self._pollers[key] = _Poller()
            poller.task = asyncio.create_task(self._poll(key, poller, service, uuid))
        queue: asyncio.Queue[object] = asyncio.Queue()
        if isinstance(poller.last, Session):
            queue.put_nowait(poller.last)  # a late subscriber gets the current state first
        poller.queues[queue] = caller
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert item is None or isinstance(item, Session)
                yield item
                if item is None or item.status.is_terminal:
                    return
        finally:
            poller.queues.pop(queue, None)
            if not poller.queues and self._pollers.get(key) is poller:  # the last one left
                del self._pollers[key]
                if poller.task is not None:
                    poller.task.cancel()

    async def _poll(
        self, key: Hashable, poller: _Poller, service: SessionService, uuid: str
    ) -> None:
        delay, seen = self.interval, _END
        while True:
            poller.wake.clear()
            try:
                lookup = await service.get(uuid, caller=poller.payer, watched=True)
            except UpstreamRejected as exc:  # 401, 403, 400: polling again will not help
                self._push(poller, exc)
                return
            except Exception as exc:  # transient, or the budget is spent and there is no copy
                logger.info("polling session %s failed (%s); backing off", uuid, type(exc).__name__)
                delay = min(
                    max(delay * 2, getattr(exc, "retry_after", None) or 0), self.max_interval
                )
            else:
                session = lookup.session
                state = _state(session)
                if state != seen:
                    seen = state
                    poller.last = session
                    self._push(poller, session)
                    if session is None or session.status.is_terminal:
                        return
                if lookup.source != "stale":  # read again when the copy stops being fresh
                    delay = min(max(self.interval, lookup.fresh_for), self.max_interval)
                elif lookup.retry_in > 0:  # the budget was spent: when it has room again
                    delay = min(max(self.interval, lookup.retry_in), self.max_interval)
                else:  # Plivo failed, and the last copy was served: back off
                    delay = min(delay * 2, self.max_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await poller.wake.wait()
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a cancel that arrived as a timeout
                raise asyncio.CancelledError

    @staticmethod
    def _push(poller: _Poller, item: object) -> None:
        for queue in poller.queues:
            queue.put_nowait(item)


def _state(session: Session | None) -> object:
    """What a change is: the status, and each attempt's uuid and status."""
    if session is None:
        return None
    return (session.status, tuple((a.attempt_uuid, a.status) for a in session.attempts))
