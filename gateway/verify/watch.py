"""SessionWatcher: live status for subscriptions, one upstream poller per credential and uuid.

However many subscribers watch a session in this process, one poller reads it (through the
session cache, so a fleet sharing Redis mostly reads the cache) and pushes each change of its
status or attempts to all of them. The poller backs off while nothing changes, wakes at once
when a status callback or a mutation changed the session, and ends at a terminal status or
when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Hashable
from dataclasses import dataclass, field

from gateway.errors import Throttled, UpstreamRejected
from gateway.plivo.models import Session, canonical_session_uuid
from gateway.verify.sessions import SessionService

logger = logging.getLogger(__name__)
_END = object()


@dataclass
class _Poller:
    queues: set[asyncio.Queue[object]] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last: object = None


class SessionWatcher:
    """Pollers by (credential namespace, uuid), shared by their subscribers."""

    def __init__(
        self, interval: float = 1.0, max_interval: float = 10.0, max_pollers: int = 1000
    ) -> None:
        self.interval, self.max_interval = interval, max_interval
        self.max_pollers = max_pollers  # each polls Plivo: a bound on what watchers can cost
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

    async def watch(
        self, service: SessionService, session_uuid: str
    ) -> AsyncGenerator[Session | None, None]:
        """The session now, then at each change; ends at a terminal status or None (no session)."""
        uuid = canonical_session_uuid(session_uuid)
        key = (service.namespace, uuid)
        poller = self._pollers.get(key)
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
        poller.queues.add(queue)
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
            poller.queues.discard(queue)
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
                lookup = await service.get(uuid)
            except UpstreamRejected as exc:  # 401, 403, 400: polling again will not help
                self._push(poller, exc)
                return
            except Exception as exc:  # transient: keep the subscribers, back off
                logger.info("polling session %s failed (%s); backing off", uuid, type(exc).__name__)
                delay = min(delay * 2, self.max_interval)
            else:
                session = lookup.session
                state = _state(session)
                if state != seen:
                    seen, delay = state, self.interval
                    poller.last = session
                    self._push(poller, session)
                    if session is None or session.status.is_terminal:
                        return
                else:
                    delay = min(delay * 1.5, self.max_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poller.wake.wait(), delay)

    @staticmethod
    def _push(poller: _Poller, item: object) -> None:
        for queue in poller.queues:
            queue.put_nowait(item)


def _state(session: Session | None) -> object:
    """What a change is: the status, and each attempt's uuid and status."""
    if session is None:
        return None
    return (session.status, tuple((a.attempt_uuid, a.status) for a in session.attempts))
