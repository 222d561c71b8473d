"""The Plivo budget: `PLIVO_BUDGET_REQUESTS` per `PLIVO_BUDGET_WINDOW`, as a ceiling.

It is a sliding-window counter (see `counters`), so it holds over any window of that length,
not only over aligned ones. With Redis it is fleet-wide, and a session fetch spends from it in
the same script that takes the fetch lock; while Redis does not answer each instance spends
from its share (the budget / the instances listening). In memory it holds per process.

Three things shape a spend:

- **Priority.** Urgent requests (mutations, and reads of a session with no copy at all) may use
  the whole budget. Refreshes of a copy someone is watching or polling stop at `WATCHED` of it,
  and other refreshes at `REST`: the rest is headroom that refreshes never take. A copy older
  than twice its planned refresh interval goes one step up (rest to watched, watched to
  `OVERDUE`): when refreshes must be refused, the most recently refreshed are refused first.
- **The caller's share.** Each API key spends from its own counter too, at most `share` of the
  budget, so that no key can take the others' (`GATEWAY_KEY_BUDGET_SHARE`). The priorities hold
  within a share as well: a key's own refreshes leave a quarter of its share to its first
  reads and mutations. The share is kept
  per account id, not per token: requests with a wrong token are charged to the key's share,
  and never to the budget of the credential Plivo accepts.
- **The credential.** The budget itself is kept per credential digest: a caller who knows an
  account's id but not its token spends a budget of its own, never the account's.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Literal

from gateway.fleet.counters import Counters, Rate

Priority = Literal["urgent", "overdue", "watched", "rest"]
WATCHED = 0.75  # the part of the budget refreshes of watched or polled sessions may use
OVERDUE = 0.875  # ... of watched or polled sessions whose copy is twice as old as planned
REST = 0.5  # the part other refreshes may use
PRIORITY_PART: dict[Priority, float] = {
    "urgent": 1.0,
    "overdue": OVERDUE,
    "watched": WATCHED,
    "rest": REST,
}


@functools.lru_cache(maxsize=1024)
def caller_digest(caller: str) -> str:
    """A digest of an API key's name, for the keys of its counters (names are few: cached)."""
    return hashlib.sha256(caller.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Budget:
    """A Plivo credential's budget: its counter key, its rate, and each caller's share of it."""

    key: str
    rate: Rate
    share: float = 1.0
    shares: str = ""  # the prefix of the callers' counters: names the account, not the token

    def limit(self, priority: Priority) -> int:
        """How much of the window `priority` may use (at least one request)."""
        return max(1, math.floor(self.rate[0] * PRIORITY_PART[priority]))

    def share_limit(self, priority: Priority = "urgent") -> int:
        """How much of the window one caller may use at `priority` (at least one request)."""
        return max(1, math.floor(self.rate[0] * self.share * PRIORITY_PART[priority]))

    def share_key(self, caller: str) -> str:
        """The caller's counter, under a digest of its name (never the name itself)."""
        return f"{self.shares or self.key}:share:{caller_digest(caller)}"

    async def spend(
        self, counters: Counters, caller: str, priority: Priority = "urgent"
    ) -> float | None:
        """Spend one request: None when it fits, else the seconds until there is room."""
        return await counters.take_pair(
            self.key,
            self.limit(priority),
            self.share_key(caller),
            self.share_limit(priority),
            self.rate[1],
        )
