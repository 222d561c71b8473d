"""What resolvers get: a per-request Context of plain services behind Protocols."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import strawberry
from graphql import DocumentNode
from strawberry.dataloader import DataLoader

from gateway.errors import Forbidden
from gateway.plivo.flow import ListFilter, SessionPage, StartOutcome, StartParams, Validation
from gateway.plivo.models import Session


class SessionLookup(Protocol):
    """A session (None when Plivo has none), where it came from and its age in seconds."""

    @property
    def session(self) -> Session | None: ...

    @property
    def source(self) -> str: ...

    @property
    def age(self) -> float: ...

    @property
    def fresh_for(self) -> float: ...


class SessionReader(Protocol):
    """Reads one Verify session; `refresh` asks for a copy fresh from Plivo.

    `caller` (the API key's name) pays for what reaches Plivo, from its share of the budget.
    """

    async def get(
        self, session_uuid: str, *, refresh: bool = False, caller: str = "anonymous"
    ) -> SessionLookup: ...


class VerificationFlow(Protocol):
    """List, start and validate for the caller's credential."""

    async def list(
        self, where: ListFilter, *, first: int, offset: int, caller: str = "anonymous"
    ) -> SessionPage: ...

    async def start(
        self, caller: str, params: StartParams, idempotency_key: str | None
    ) -> StartOutcome: ...

    async def validate(self, caller: str, session_uuid: str, otp: str) -> Validation: ...


SessionWatch = Callable[[str], AsyncIterator[Session | None]]
# A field whose resolver may send one request to Plivo: admission counts it (GATEWAY_MAX_COST).
PLIVO_REQUEST: Mapping[str, int] = MappingProxyType({"cost": 1})


def plivo_request_each(argument: str) -> Mapping[str, object]:
    """A field that may send one request to Plivo for each item of its list `argument`:
    admission counts the items, given literally or in a variable (GATEWAY_MAX_COST)."""
    return MappingProxyType({"cost": 1, "each": argument})


@dataclass
class Context:
    """Per-request context: the reader, a DataLoader over it, and what the cache did.

    `freshness` keeps, per uuid served fresh, when its copy was stored and until when it is
    fresh (wall-clock seconds): the response cache lives no longer than the shortest of them.
    """

    sessions: SessionReader
    refresh: bool = False
    scopes: frozenset[str] = frozenset()  # least privilege: without a principal, no scope
    cache_report: dict[str, dict[str, object]] = field(default_factory=dict)
    freshness: dict[str, tuple[float, float]] = field(default_factory=dict)
    caller: str = "anonymous"
    flow: VerificationFlow | None = None
    watch: SessionWatch | None = None
    idempotency_key: str | None = None
    mutated: bool = False  # a mutation ran: the response is never cached
    untracked: bool = False  # the flow was used: read what `freshness` does not track
    changing: bool = False  # a session read is not terminal: it may change while fresh
    # The operation's document, parsed and validated by the pipeline: Strawberry does neither again.
    document: DocumentNode | None = None
    _loader: DataLoader[str, Session | None] | None = field(default=None, init=False, repr=False)

    @property
    def loader(self) -> DataLoader[str, Session | None]:
        """The request's DataLoader, made on first use."""
        if self._loader is None:
            self._loader = DataLoader(load_fn=self._load_sessions)
        return self._loader

    async def load_one(self, uuid: str) -> Session | None:
        """One session without the DataLoader: for operations that read a single one."""
        return self._record(
            uuid, await self.sessions.get(uuid, refresh=self.refresh, caller=self.caller)
        )

    async def _load_sessions(self, uuids: list[str]) -> Sequence[Session | BaseException | None]:
        lookups = await asyncio.gather(
            *(self.sessions.get(uuid, refresh=self.refresh, caller=self.caller) for uuid in uuids),
            return_exceptions=True,
        )
        return [
            lookup if isinstance(lookup, BaseException) else self._record(uuid, lookup)
            for uuid, lookup in zip(uuids, lookups, strict=True)
        ]

    def _record(self, uuid: str, lookup: SessionLookup) -> Session | None:
        self.cache_report[uuid] = {"status": lookup.source, "age": round(lookup.age, 3)}
        if lookup.source != "stale":
            now = time.time()
            self.freshness[uuid] = (now - lookup.age, now + lookup.fresh_for)
        if lookup.session is not None and not lookup.session.status.is_terminal:
            self.changing = True
        return lookup.session


Info = strawberry.Info[Context, None]


def require(context: Context, scope: str) -> None:
    """Raise Forbidden unless the caller's key holds `scope`."""
    if scope not in context.scopes:
        raise Forbidden(f"this API key lacks the {scope} scope")


def flow_of(context: Context) -> VerificationFlow:
    """The flow, which every app context carries (a schema test without one is a bug).

    What it reads (a page of the list) or does has no freshness the context tracks: the
    answer is marked `untracked`, so that no cache reuses it without asking again.
    """
    if context.flow is None:
        raise RuntimeError("this context has no verification flow")
    context.untracked = True
    return context.flow
