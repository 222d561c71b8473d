"""The bulkhead: a cap on the requests in flight to Plivo, in all and for each credential.

Plivo answers each account at its own pace. With one pool of slots for every credential, one
account that answers slowly (a pass-through caller's, say) would hold every slot and the
others' cold lookups would wait behind it. So each credential may hold at most its share of
the slots (PLIVO_CREDENTIAL_SHARE of PLIVO_MAX_CONCURRENCY, rounded up), and all of them
together at most PLIVO_MAX_CONCURRENCY. A pass-through caller's share is its account's, whatever
the token: a caller alternating tokens of one account gets no more slots than one token would.
The configured credential's share is its own, even against a caller sending its account id.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType
from typing import Protocol


class Slots(Protocol):
    """What a request holds while it is in flight to Plivo (an asyncio.Semaphore will do)."""

    async def __aenter__(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class Bulkhead:
    """At most `total` requests in flight to Plivo, and `per_credential` for any one credential.

    Each credential holds its own share first, then a slot of the whole: one waiting for its
    own share holds nothing the others could use.
    """

    def __init__(self, total: int, share: float) -> None:
        self.total = total
        # round first: 10 x 0.3 is 3.0000000000000004 in binary, which ceil would make 4
        self.per_credential = max(1, min(total, math.ceil(round(total * share, 9))))
        self._shared = asyncio.Semaphore(total)
        # one share per account id, kept while a credential of that account is
        self._accounts: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    def for_credential(self, account: str | None = None) -> CredentialSlots:
        """A credential's way in: its account's share (`account`), or one of its own (None),
        of the whole."""
        if account is None:
            return CredentialSlots(asyncio.Semaphore(self.per_credential), self._shared)
        own = self._accounts.get(account)
        if own is None:
            own = self._accounts[account] = asyncio.Semaphore(self.per_credential)
        return CredentialSlots(own, self._shared)


class CredentialSlots:
    """One credential's slots in the bulkhead: its share first, then one of the whole."""

    def __init__(self, own: asyncio.Semaphore, shared: asyncio.Semaphore) -> None:
        self._own, self._shared = own, shared

    async def __aenter__(self) -> None:
        await self._own.acquire()
        try:
            await self._shared.acquire()
        except BaseException:  # cancelled while waiting for the whole: give the share back
            self._own.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shared.release()
        self._own.release()
