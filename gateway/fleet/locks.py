"""Single-flight and waiting on another instance: one implementation for every kind of lookup.

`SingleFlight` makes concurrent calls with one key in this process share one task (sessions,
pages, starts). Across instances the lock is part of each state's claim (`entries`, `memos`);
`Waiting` is how a caller waits for another instance to finish (a session's fetch, a start).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.05


class SingleFlight(Generic[K, T]):
    """Calls with the same key while one is in flight share its task (and its failure)."""

    def __init__(self, joined: Callable[[], None] | None = None) -> None:
        self._tasks: dict[K, asyncio.Future[T]] = {}
        self._joined = joined

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: K, make: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """The task in flight for `key`, or a new one; runs on even if every caller leaves."""
        task = self._tasks.get(key)
        if task is not None:
            if self._joined is not None:
                self._joined()
            return task
        task = asyncio.ensure_future(make())
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._landed(key, done))
        return task

    async def run(self, key: K, make: Callable[[], Awaitable[T]]) -> T:
        """Join or start the flight for `key`; a caller that is cancelled leaves it running."""
        return await asyncio.shield(self.start(key, make))

    async def run_here(self, key: K, make: Callable[[], Awaitable[T]]) -> T:
        """Fly for `key` in the calling task, not a task of its own; others join it as they
        join a task. For a caller that runs on whatever its own callers do (a flight of
        another SingleFlight): a new session's fetch within its lookup, one task less.
        `key` must not be in flight (`in_flight`, then `start` to join).
        """
        assert key not in self._tasks, "run_here for a key already in flight"
        flight: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._tasks[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        try:
            result = await make()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        flight.set_result(result)
        return result

    def in_flight(self, key: K) -> asyncio.Future[T] | None:
        """The flight for `key`, if any."""
        return self._tasks.get(key)

    def _landed(self, key: K, task: asyncio.Future[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure shared by callers is not "never retrieved"


class Waiting:
    """Waiting for another instance, until `deadline` (monotonic): pauses that back off.

    A pause ends early when `woken` completes (the other instance said it finished). A
    `patient` waiter, one that will be told, pauses until then or the deadline: it costs one
    probe, not one per pause.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._pause = FIRST_PAUSE

    @property
    def over(self) -> bool:
        """Whether the deadline passed."""
        return time.monotonic() >= self.deadline

    async def pause(self, woken: asyncio.Future[T] | None, *, patient: bool = False) -> T | None:
        """Sleep for the next pause, or until `woken`; what `woken` brought, if anything."""
        left = max(0.0, self.deadline - time.monotonic())
        timeout = left if patient and woken is not None else min(self._pause, left)
        self._pause = min(self._pause * 1.5, LONGEST_PAUSE)
        if woken is None:
            await asyncio.sleep(timeout)
            return None
        if not woken.done():
            await asyncio.wait([woken], timeout=timeout)
        return woken.result() if woken.done() and not woken.cancelled() else None
