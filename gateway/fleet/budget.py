"""The Plivo budget: `PLIVO_BUDGET_REQUESTS` per `PLIVO_BUDGET_WINDOW`, as a ceiling.

It is a sliding-window counter (see `counters`), so it holds over any window of that length,
not only over aligned ones. With Redis it is fleet-wide, and a session fetch spends from it in
the same script that takes the fetch lock; while Redis does not answer each instance spends
from its share (the budget / the instances listening). In memory it holds per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.fleet.counters import Counters, Rate


@dataclass(frozen=True, slots=True)
class Budget:
    """A Plivo account's budget: its counter key and its rate."""

    key: str
    rate: Rate

    async def spend(self, counters: Counters) -> float | None:
        """Spend one request: None when it fits, else the seconds until the window has room."""
        return await counters.take(self.key, self.rate, strict=False)
