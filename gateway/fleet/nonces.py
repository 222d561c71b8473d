"""Nonces: the signatures of status callbacks already accepted, so none is accepted twice.

Each accepted (signature version, nonce) is kept for the replay window under a digest of the
pair, under the fleet's key prefix. `MemoryNonces` keeps them in this process, bounded (the
oldest goes first when full). `RedisNonces` keeps them fleet-wide, one SET NX PX each; while
Redis does not answer it refuses (`StateUnavailable`), since a replay cannot then be told from
a first delivery, and the nonce of a refused callback is released once Redis answers again, so
Plivo's next delivery of it is taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.errors import StateUnavailable
from gateway.fleet.link import RedisLink, Unreachable, milliseconds

logger = logging.getLogger(__name__)
Clock = Callable[[], float]
Nonce = tuple[str, str]  # (signature version, nonce)
MAX_NONCES = 100_000  # about 10 MB; a busy account's hour of callbacks is far fewer
RETRY_AFTER = 5.0  # seconds a refused callback is told to wait while Redis does not answer


def nonce_key(prefix: str, version: str, nonce: str) -> str:
    """Where a nonce is kept: a digest, so no caller's text becomes a key."""
    digest = hashlib.sha256(f"{version}:{nonce}".encode()).hexdigest()[:32]
    return f"{prefix}:nonce:{digest}"


class Nonces(Protocol):
    """The nonces of accepted callbacks, each kept for a replay window."""

    async def remember(self, nonces: Sequence[Nonce], ttl: float) -> bool:
        """Keep each for `ttl` seconds: True when none was kept yet (a first delivery).

        Raises StateUnavailable when it cannot tell.
        """
        ...


class MemoryNonces:
    """Nonces in this process: at most `max_entries`, the oldest dropped first."""

    def __init__(
        self, prefix: str = "pvg", max_entries: int = MAX_NONCES, clock: Clock = time.monotonic
    ) -> None:
        self.prefix, self.max_entries, self._clock = prefix, max_entries, clock
        self._until: OrderedDict[str, float] = OrderedDict()  # key: expiry, oldest first

    def __len__(self) -> int:
        return len(self._until)

    async def remember(self, nonces: Sequence[Nonce], ttl: float) -> bool:
        keys = [nonce_key(self.prefix, *nonce) for nonce in nonces]
        fresh = not any(self.has(key) for key in keys)
        for key in keys:
            self.add(key, ttl)
        return fresh

    def has(self, key: str) -> bool:
        """Whether `key` is kept and its window is open."""
        until = self._until.get(key)
        return until is not None and until > self._clock()

    def add(self, key: str, ttl: float) -> None:
        """Keep `key` for `ttl` seconds, unless it is kept already (as SET NX would)."""
        if self.has(key):
            return
        now = self._clock()
        self._until[key] = now + ttl
        self._until.move_to_end(key)
        while self._until and (
            len(self._until) > self.max_entries or next(iter(self._until.values())) <= now
        ):
            self._until.popitem(last=False)


class RedisNonces:
    """Nonces in Redis, fleet-wide, with a copy of those this instance accepted.

    The copy answers this instance's replays without a round trip, and still refuses them if
    Redis lost its data. While Redis does not answer, every callback is refused (logged once
    per outage); a nonce whose SET may have landed late is released when Redis is back.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        max_local: int = MAX_NONCES,
        clock: Clock = time.monotonic,
    ) -> None:
        self._link, self.prefix = link, prefix
        self._local = MemoryNonces(prefix, max_local, clock)
        self._owed: set[tuple[str, str]] = set()  # (key, marker) that a late SET may have left
        self._refusing = False
        link.owes(self._flush)

    async def remember(self, nonces: Sequence[Nonce], ttl: float) -> bool:
        keys = [nonce_key(self.prefix, *nonce) for nonce in nonces]
        if any(self._local.has(key) for key in keys):
            return False
        marker = secrets.token_hex(8)  # ours: a release never takes another delivery's nonce
        answers = await asyncio.gather(
            *(self._link.call("SET", k, marker, "NX", "PX", milliseconds(ttl)) for k in keys),
            return_exceptions=True,
        )
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            for exc in failed:
                if not isinstance(exc, Unreachable):
                    raise exc
            self._unreachable(keys, answers, marker)
            raise StateUnavailable(
                "callback nonces cannot be checked just now", retry_after=RETRY_AFTER
            )
        if self._refusing:
            self._refusing = False
            logger.warning("status callbacks are accepted again: Redis answers")
        for key in keys:
            self._local.add(key, ttl)
        return all(answer is not None for answer in answers)

    def _unreachable(self, keys: list[str], answers: list[object], marker: str) -> None:
        """Owe a release of every key this call may have set; say so once per outage."""
        for key, answer in zip(keys, answers, strict=True):
            maybe_set = answer is not None and not (
                isinstance(answer, Unreachable) and not answer.sent
            )
            if maybe_set:
                self._owed.add((key, marker))
        if not self._refusing:
            self._refusing = True
            logger.warning(
                "status callbacks are refused (503) while Redis at %s does not answer: "
                "a replay cannot be told from a first delivery",
                self._link.name,
            )

    async def _flush(self) -> None:
        """Release the nonces of callbacks refused during the outage (Plivo delivers again)."""
        for key, marker in list(self._owed):
            await self._link.script("memo_release", [key], [marker])  # compare and delete
            self._owed.discard((key, marker))
