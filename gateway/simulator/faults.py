"""Faults the simulator can play, standing (a setting) or queued for the next requests."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

NAMED_FAULTS = ("garbage", "reset", "slow")


@dataclass(frozen=True)
class Fault:
    """One fault: an HTTP status (4xx/5xx), or garbage, reset or slow."""

    kind: str
    retry_after: str | None = None
    delay_ms: float = 10_000.0

    @property
    def status(self) -> int | None:
        """The HTTP status this fault answers with, when it is one."""
        return int(self.kind) if self.kind.isdigit() else None

    @classmethod
    def parse(
        cls, kind: str, *, retry_after: str | None = None, delay_ms: float | None = None
    ) -> Fault:
        """Validate a fault given by name or status."""
        kind = kind.strip().lower()
        if not (kind in NAMED_FAULTS or (kind.isdigit() and 400 <= int(kind) <= 599)):
            raise ValueError("fault must be an HTTP status from 400 to 599, garbage, reset or slow")
        if delay_ms is not None and not 0 <= delay_ms <= 600_000:
            raise ValueError("delay_ms must be from 0 to 600000")
        return cls(
            kind, retry_after=retry_after, delay_ms=10_000.0 if delay_ms is None else delay_ms
        )


@dataclass
class _Queued:
    fault: Fault
    remaining: int
    session_uuid: str | None


class FaultPlan:
    """The standing fault and the queue of one-off faults, matched in order."""

    def __init__(self, standing: Fault | None = None) -> None:
        self.standing = standing
        self._queue: deque[_Queued] = deque()

    def add(self, fault: Fault, *, times: int = 1, session_uuid: str | None = None) -> None:
        """Play `fault` on the next `times` requests (for one session uuid, if given)."""
        self._queue.append(_Queued(fault, times, session_uuid.lower() if session_uuid else None))

    def clear(self) -> None:
        """Drop the standing fault and every queued one."""
        self.standing = None
        self._queue.clear()

    def take(self, session_uuid: str) -> Fault | None:
        """The fault for this request, consuming one use of a queued fault."""
        for queued in self._queue:
            if queued.session_uuid in (None, session_uuid.lower()):
                queued.remaining -= 1
                if queued.remaining <= 0:
                    self._queue.remove(queued)
                return queued.fault
        return self.standing
