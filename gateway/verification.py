"""VerificationService: the rest of the Verify flow for one credential: list, start, validate.

Lists are read through a short cache (per credential, filter and page) and fill the session
cache. Starts and validations are sent once, never retried; both make every instance forget its
copy of the session (`Changes`), and are audit-logged: key name, operation, session uuid and
outcome, never the code. A start with an Idempotency-Key within the window returns the first
result; starts are throttled per API key and per recipient.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.cache import SessionCache
from gateway.errors import GatewayError, IdempotencyConflict, InvalidInput, Throttled
from gateway.plivo.flow import (
    MAX_PAGE,
    ListFilter,
    SessionPage,
    Started,
    StartOutcome,
    StartParams,
    Validation,
)
from gateway.plivo.models import MalformedSession, dump_session, parse_session
from gateway.ratelimit import Throttle
from gateway.sessions import SessionService

audit = logging.getLogger("gateway.audit")
logger = logging.getLogger(__name__)
RECIPIENT = re.compile(r"^\+?[0-9]{6,16}$")
LIST_RATE = (20, 60.0)  # Plivo's limit on list requests, per account


class FlowClient(Protocol):
    """What the flow sends to Plivo (ResilientClient)."""

    async def list_sessions(self, where: ListFilter, *, limit: int, offset: int) -> SessionPage: ...

    async def create_session(self, params: StartParams) -> Started: ...

    async def validate_session(self, session_uuid: str, otp: str) -> Validation: ...


class FlowObserver(Protocol):
    """Hears each start's and validation's outcome (metrics implement it)."""

    def flow(self, operation: str, outcome: str) -> None: ...


class _Unobserved:
    def flow(self, operation: str, outcome: str) -> None:
        pass


@dataclass(frozen=True)
class FlowPolicy:
    """Cache, idempotency and throttle settings, and where Plivo sends status callbacks."""

    list_ttl: float = 5.0
    idempotency_window: float = 600.0
    starts_per_key: tuple[int, float] = (30, 60.0)
    starts_per_recipient: tuple[int, float] = (5, 600.0)
    callback_url: str | None = None
    key_prefix: str = "pvg"
    lease: float = 6.0


class Memos:
    """Idempotent starts' results in this process, kept apart from the session cache so that
    no burst of reads can push one out before its window ends (bounded, oldest out)."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def remember(self, key: str, value: str, ttl: float) -> None:
        self._items[key] = (value, time.monotonic() + ttl)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def recall(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] <= time.monotonic():
            return None
        return item[0]


class VerificationService:
    """List, start and validate for one credential."""

    def __init__(
        self,
        client: FlowClient,
        sessions: SessionService,
        cache: SessionCache,
        policy: FlowPolicy,
        *,
        changed: Callable[[str], Awaitable[None]],
        throttle: Throttle,
        observer: FlowObserver | None = None,
    ) -> None:
        self._client, self._sessions, self._cache = client, sessions, cache
        self._policy, self._changed, self._throttle = policy, changed, throttle
        self._pages: dict[str, asyncio.Task[SessionPage]] = {}
        self._starts: dict[str, tuple[asyncio.Task[Started], str]] = {}
        self._memos = Memos()
        self._observer: FlowObserver = observer or _Unobserved()

    async def list(self, where: ListFilter, *, first: int, offset: int) -> SessionPage:
        """One page, from the short list cache or from Plivo (concurrent reads share one)."""
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput(f"first must be from 1 to {MAX_PAGE} (Plivo pages 20 at a time)")
        key = f"{self._policy.key_prefix}:list:{self._sessions.namespace}:{where.digest}"
        key = f"{key}:{first}:{offset}"
        cached = _read_page(await self._cache.recall(key), offset)
        if cached is not None:
            return cached
        task = self._pages.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_page(key, where, first, offset))
            self._pages[key] = task
            task.add_done_callback(lambda done: self._pages.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch_page(
        self, key: str, where: ListFilter, first: int, offset: int
    ) -> SessionPage:
        lists = f"{self._policy.key_prefix}:lists:{self._sessions.credential.auth_id}"
        wait = await self._throttle.take(lists, LIST_RATE)
        if wait is not None:  # Plivo's own limit: better refused here than spent there
            raise Throttled("Plivo allows 20 list requests a minute", retry_after=round(wait, 3))
        page = await self._client.list_sessions(where, limit=first, offset=offset)
        for session in page.sessions:
            await self._sessions.store(session)
        await self._cache.remember(key, _write_page(page), self._policy.list_ttl)
        return page

    async def start(
        self, caller: str, params: StartParams, idempotency_key: str | None
    ) -> StartOutcome:
        """Send a code (once), or return what the same Idempotency-Key got earlier."""
        check_start(params)
        try:
            if idempotency_key is None:
                return StartOutcome(await self._start(caller, params), replayed=False)
            return await self._start_once(caller, params, idempotency_key)
        except GatewayError as exc:
            self._audit(caller, "startVerification", None, type(exc).__name__)
            raise

    async def _start_once(self, caller: str, params: StartParams, key: str) -> StartOutcome:
        digest = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
        memo = f"{self._policy.key_prefix}:idem:{self._sessions.namespace}:{digest}"
        asked = params_digest(params)
        earlier = _read_started(await self._recall(memo), asked)
        if earlier is None:
            flying = self._starts.get(memo)
            if flying is not None:  # the same key, in flight in this process
                if flying[1] != asked:
                    raise InvalidInput(
                        "this Idempotency-Key was used for a start with other parameters"
                    )
                earlier = await asyncio.shield(flying[0])
            elif not await self._cache.try_lock(f"{memo}:lock", digest, self._policy.lease):
                earlier = await self._await_elsewhere(memo, asked)
        if earlier is not None:
            self._audit(caller, "startVerification", earlier.session_uuid, "replayed")
            return StartOutcome(earlier, replayed=True)
        task = asyncio.create_task(self._start(caller, params))
        self._starts[memo] = (task, asked)
        try:
            started = await asyncio.shield(task)
            record = _write_started(started, asked)
            await self._remember(memo, record, self._policy.idempotency_window)
            return StartOutcome(started, replayed=False)
        finally:
            self._starts.pop(memo, None)
            await self._cache.unlock(f"{memo}:lock", digest)

    async def _await_elsewhere(self, memo: str, asked: str) -> Started:
        deadline = time.monotonic() + self._policy.lease
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            earlier = _read_started(await self._recall(memo), asked)
            if earlier is not None:
                return earlier
        raise IdempotencyConflict("a start with this Idempotency-Key is still in flight")

    def _audit(self, caller: str, operation: str, session_uuid: str | None, outcome: str) -> None:
        _audit_log(caller, operation, session_uuid, outcome)
        self._observer.flow(operation, outcome)

    async def _remember(self, key: str, value: str, ttl: float) -> None:
        if self._cache.shared:
            await self._cache.remember(key, value, ttl)
        else:
            self._memos.remember(key, value, ttl)

    async def _recall(self, key: str) -> str | None:
        return await self._cache.recall(key) if self._cache.shared else self._memos.recall(key)

    async def _start(self, caller: str, params: StartParams) -> Started:
        policy = self._policy
        wait = await self._throttle.take(
            f"{policy.key_prefix}:starts:key:{caller}", policy.starts_per_key
        )
        if wait is not None:
            raise Throttled("too many starts for this API key", retry_after=round(wait, 3))
        recipient = hashlib.sha256(params.recipient.lstrip("+").encode()).hexdigest()[:32]
        wait = await self._throttle.take(
            f"{policy.key_prefix}:starts:recipient:{recipient}", policy.starts_per_recipient
        )
        if wait is not None:
            raise Throttled("too many starts for this recipient", retry_after=round(wait, 3))
        if policy.callback_url is not None:
            params = replace(params, url=policy.callback_url, method="POST")
        started = await self._client.create_session(params)
        try:
            await self._changed(started.session_uuid)
        except InvalidInput:  # Plivo's uuid is not canonical: nothing of ours is keyed by it
            logger.warning("Plivo answered a start with a session uuid that is not canonical")
        self._audit(caller, "startVerification", started.session_uuid, "started")
        return started

    async def validate(self, caller: str, session_uuid: str, otp: str) -> Validation:
        """Check a code (once); the session is forgotten everywhere whatever the outcome."""
        if not otp.strip() or len(otp) > 16:
            raise InvalidInput("otp must be the code that was sent (at most 16 characters)")
        try:
            validation = await self._client.validate_session(session_uuid, otp)
        except GatewayError as exc:
            self._audit(caller, "validateSession", session_uuid, type(exc).__name__)
            raise
        await self._changed(validation.session_uuid)
        self._audit(caller, "validateSession", validation.session_uuid, validation.result.value)
        return validation


def check_start(params: StartParams) -> None:
    """Refuse what Plivo would refuse, before sending anything."""
    if not RECIPIENT.fullmatch(params.recipient):
        raise InvalidInput("recipient must be a phone number: 6 to 16 digits, + allowed first")
    if params.channel not in ("sms", "voice"):
        raise InvalidInput("channel must be SMS or VOICE")
    if params.code_length is not None and not 4 <= params.code_length <= 8:
        raise InvalidInput("codeLength must be from 4 to 8")
    if params.otp is not None and not (params.otp.isdigit() and 4 <= len(params.otp) <= 8):
        raise InvalidInput("otp must be 4 to 8 digits")


def _audit_log(caller: str, operation: str, session_uuid: str | None, outcome: str) -> None:
    audit.info(
        "audit %s by %s on %s: %s",
        operation,
        caller,
        session_uuid or "-",
        outcome,
        extra={
            "audit": {
                "key": caller,
                "operation": operation,
                "session_uuid": session_uuid,
                "outcome": outcome,
            }
        },
    )


def _write_page(page: SessionPage) -> str:
    sessions = [dump_session(session) for session in page.sessions]
    return json.dumps({"n": page.has_next, "s": sessions}, separators=(",", ":"))


def _read_page(raw: str | None, offset: int) -> SessionPage | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        sessions = tuple(parse_session(item) for item in record["s"])
        return SessionPage(sessions, offset, bool(record["n"]))
    except (ValueError, KeyError, TypeError, MalformedSession):
        logger.warning("unreadable cached page ignored")
        return None


def params_digest(params: StartParams) -> str:
    """Names a start's parameters, so a key reused for another start is caught."""
    return hashlib.sha256(json.dumps(params.body(), sort_keys=True).encode()).hexdigest()[:32]


def _write_started(started: Started, asked: str) -> str:
    record = {"u": started.session_uuid, "m": started.message, "a": started.api_id, "p": asked}
    return json.dumps(record, separators=(",", ":"))


def _read_started(raw: str | None, asked: str) -> Started | None:
    """The start a memo kept; InvalidInput when it was made with other parameters."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        started = Started(str(record["u"]), record.get("m"), record.get("a"))
    except (ValueError, KeyError, TypeError):
        return None
    if record.get("p") != asked:
        raise InvalidInput("this Idempotency-Key was used for a start with other parameters")
    return started
