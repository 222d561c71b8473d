"""VerificationService: the rest of the Verify flow for one credential: list, start, validate.

Lists are read through a short cache (per credential, filter and page) and fill the session
cache. Starts and validations are sent once, never retried; both make every instance forget its
copy of the session (`Changes`), and are audit-logged: key name, operation, session uuid and
outcome, never the code. A start with an Idempotency-Key within the window returns the first
result; starts are throttled per API key and per recipient of the account (the number read as
E.164, and kept under an HMAC: see `guards`). Validations are limited per API key and per
session (Plivo refuses an eleventh try; the gateway forwards none it would refuse), and a
session known to have ended is answered without Plivo.

Each request sent to Plivo (a page, a start, a validation) is urgent: it spends from the
credential's budget and the caller's share of it. A page also counts against Plivo's list
limit, kept per credential, of which each API key may use its share.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from gateway.errors import (
    NOT_SENT_PATH,
    GatewayError,
    IdempotencyConflict,
    InvalidInput,
    StateUnavailable,
    Throttled,
    UpstreamRateLimited,
    UpstreamRejected,
)
from gateway.fleet import Counters, Entries, Memos, SingleFlight, Waiting
from gateway.plivo.flow import (
    MAX_PAGE,
    MESSAGES,
    ListFilter,
    SessionPage,
    Started,
    StartOutcome,
    StartParams,
    Validation,
    plivo_recipient,
)
from gateway.plivo.models import MalformedSession, dump_session, parse_session
from gateway.verify.guards import EndedSessions, recipient_id, recipient_key
from gateway.verify.sessions import SessionService, payer

audit = logging.getLogger("gateway.audit")
logger = logging.getLogger(__name__)
LIST_RATE = (20, 60.0)  # Plivo's limit on list requests, per account
# A start that failed with one of these reached no Plivo code path that sends: its key is free.
NOT_SENT = (InvalidInput, Throttled, StateUnavailable, UpstreamRejected, UpstreamRateLimited)


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
    """Cache, idempotency and throttle settings, and where Plivo sends status callbacks.

    `recipient_key` keys recipients at rest (see `guards`); None: one derived from the token of
    each service's own credential. `ended_for`: how long an ended session is remembered.
    """

    list_ttl: float = 5.0
    idempotency_window: float = 600.0
    starts_per_key: tuple[int, float] = (30, 60.0)
    starts_per_recipient: tuple[int, float] = (5, 600.0)
    validations_per_session: tuple[int, float] = (10, 600.0)
    validations_per_key: tuple[int, float] = (120, 60.0)
    ended_for: float = 3600.0
    callback_url: str | None = None
    key_prefix: str = "pvg"
    lease: float = 6.0
    recipient_key: bytes | None = field(default=None, repr=False)


class VerificationService:
    """List, start and validate for one credential."""

    def __init__(
        self,
        client: FlowClient,
        sessions: SessionService,
        policy: FlowPolicy,
        *,
        entries: Entries,
        counters: Counters,
        memos: Memos,
        changed: Callable[[str], Awaitable[None]],
        observer: FlowObserver | None = None,
    ) -> None:
        self._client, self._sessions, self._policy = client, sessions, policy
        self._entries, self._counters, self._memos = entries, counters, memos
        self._changed = changed
        self._pages: SingleFlight[str, SessionPage] = SingleFlight()
        self._starts: SingleFlight[tuple[str, str], StartOutcome] = SingleFlight()
        self._observer: FlowObserver = observer or _Unobserved()
        self._ended = EndedSessions(
            entries, sessions, prefix=policy.key_prefix, keep_for=policy.ended_for
        )

    @functools.cached_property
    def _recipient_key(self) -> bytes:
        """The policy's key for recipients at rest, else one derived from this credential's."""
        given = self._policy.recipient_key
        return given or recipient_key(None, self._sessions.credential.auth_token)

    async def list(
        self, where: ListFilter, *, first: int, offset: int, caller: str = "anonymous"
    ) -> SessionPage:
        """One page, from the short list cache or from Plivo (concurrent reads share one)."""
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput(f"first must be from 1 to {MAX_PAGE} (Plivo pages 20 at a time)")
        # keyed by an HMAC of the filter: a recipient filter is not kept under a bare hash
        named = hmac.new(self._recipient_key, where.digest.encode(), hashlib.sha256).hexdigest()
        key = f"{self._policy.key_prefix}:list:{self._sessions.namespace}:{named[:32]}"
        key = f"{key}:{first}:{offset}"
        cached = _read_page(await self._entries.recall(key), offset)
        if cached is not None:
            return cached
        return await self._pages.run(
            key, lambda: self._fetch_page(key, where, first, offset, caller)
        )

    async def _fetch_page(
        self, key: str, where: ListFilter, first: int, offset: int, caller: str
    ) -> SessionPage:
        # Plivo's own list limit, per credential (a wrong token's calls are not the account's),
        # and each caller's share of it: better refused here than spent there.
        payer.set(caller)  # this task's own context: a retry is charged to the caller
        budget = self._sessions.budget
        lists = replace(
            budget, key=f"{budget.key}:lists", rate=LIST_RATE, shares=f"{budget.shares}:lists"
        )
        wait = await lists.spend(self._counters, caller)
        if wait is not None:
            raise Throttled(
                "Plivo allows 20 list requests a minute (this API key may use"
                f" {lists.share_limit()} of them)",
                retry_after=round(wait, 3),
            )
        await self._spend(caller, "GET")
        page = await self._client.list_sessions(where, limit=first, offset=offset)
        for session in page.sessions:
            await self._sessions.store(session)
        await self._entries.remember(key, _write_page(page), self._policy.list_ttl)
        return page

    async def start(
        self, caller: str, params: StartParams, idempotency_key: str | None
    ) -> StartOutcome:
        """Send a code (once), or return what the same Idempotency-Key got earlier."""
        params = checked_start(params)
        if idempotency_key is not None and not idempotency_key.strip():
            raise InvalidInput("Idempotency-Key must not be empty")
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
        joined = self._starts.in_flight((memo, asked)) is not None
        outcome = await self._starts.run(
            (memo, asked), lambda: self._claimed_start(caller, params, memo, asked)
        )
        if joined and not outcome.replayed:  # the same key, in flight in this process
            self._audit(caller, "startVerification", outcome.started.session_uuid, "replayed")
            return StartOutcome(outcome.started, replayed=True)
        return outcome

    async def _claimed_start(
        self, caller: str, params: StartParams, memo: str, asked: str
    ) -> StartOutcome:
        """Claim the key (re-reading its record in the same step), then send or replay."""
        marker, window = secrets.token_hex(8), self._policy.idempotency_window
        waiting = Waiting(time.monotonic() + self._policy.lease)
        while True:
            claim = await self._memos.claim(memo, marker, window)
            if claim.record is not None:
                earlier = _read_started(claim.record, asked)
                self._audit(caller, "startVerification", earlier.session_uuid, "replayed")
                return StartOutcome(earlier, replayed=True)
            if claim.mine:
                break
            if waiting.over:
                raise IdempotencyConflict(
                    "a start with this Idempotency-Key is still in flight", retry_after=1.0
                )
            await waiting.pause(None)
        try:
            started = await self._start(caller, params)
        except NOT_SENT:
            await self._memos.release(memo, marker)  # nothing reached Plivo: the key is free
            raise
        except BaseException:
            # Plivo may have sent the code (a timeout, a 5xx, a reset): the key keeps that.
            await self._memos.settle(memo, marker, _write_unknown(asked), window)
            raise
        await self._memos.settle(memo, marker, _write_started(started, asked), window)
        return StartOutcome(started, replayed=False)

    async def _spend(self, caller: str, method: str = "POST") -> None:
        """One urgent request from the budget and the caller's share, or UpstreamRateLimited."""
        wait = await self._sessions.budget.spend(self._counters, caller, "urgent")
        if wait is not None:
            raise UpstreamRateLimited(
                "the fleet's Plivo request budget (or this API key's share of it) is spent",
                method=method,
                path=NOT_SENT_PATH,
                retry_after=round(wait, 3),
            )

    def _audit(self, caller: str, operation: str, session_uuid: str | None, outcome: str) -> None:
        _audit_log(caller, operation, session_uuid, outcome)
        self._observer.flow(operation, outcome)

    async def _start(self, caller: str, params: StartParams) -> Started:
        policy = self._policy
        wait = await self._counters.take(
            f"{policy.key_prefix}:starts:key:{caller}", policy.starts_per_key
        )
        if wait is not None:
            raise Throttled("too many starts for this API key", retry_after=round(wait, 3))
        credential = self._sessions.credential
        recipient = recipient_id(self._recipient_key, credential, params.recipient)
        wait = await self._counters.take(
            f"{policy.key_prefix}:starts:recipient:{credential.auth_id}:{recipient}",
            policy.starts_per_recipient,
        )
        if wait is not None:
            raise Throttled("too many starts for this recipient", retry_after=round(wait, 3))
        if policy.callback_url is not None:
            params = replace(params, url=policy.callback_url, method="POST")
        await self._spend(caller)
        started = await self._client.create_session(params)
        try:
            if policy.callback_url is not None:  # its changes will be called back: no polling
                await self._sessions.cover(started.session_uuid)
            await self._changed(started.session_uuid)
        except InvalidInput:  # Plivo's uuid is not canonical: nothing of ours is keyed by it
            logger.warning("Plivo answered a start with a session uuid that is not canonical")
        self._audit(caller, "startVerification", started.session_uuid, "started")
        return started

    async def validate(self, caller: str, session_uuid: str, otp: str) -> Validation:
        """Check a code (once); the session is forgotten everywhere whatever the outcome.

        A session known to have ended is answered without Plivo; otherwise the try counts
        against the API key's and the session's limits before it is sent.
        """
        if not otp.strip() or len(otp) > 16:
            raise InvalidInput("otp must be the code that was sent (at most 16 characters)")
        try:
            known = await self._ended.answer(session_uuid)
            if known is not None:
                self._audit(caller, "validateSession", session_uuid, f"known_{known.value}")
                return Validation(session_uuid, known, MESSAGES[known])
            await self._take_validation(caller, session_uuid)
            await self._spend(caller)
            validation = await self._client.validate_session(session_uuid, otp)
        except GatewayError as exc:
            self._audit(caller, "validateSession", session_uuid, type(exc).__name__)
            raise
        await self._ended.learn(validation.session_uuid, validation.result)
        await self._changed(validation.session_uuid)
        self._audit(caller, "validateSession", validation.session_uuid, validation.result.value)
        return validation

    async def _take_validation(self, caller: str, session_uuid: str) -> None:
        """One try from the API key's limit, then from the session's (whatever the key)."""
        policy = self._policy
        # Not strict: while Redis is away each instance takes its share of what is left, so
        # people can still sign in and the fleet still sends no more tries than the limit.
        wait = await self._counters.take(
            f"{policy.key_prefix}:validations:key:{caller}",
            policy.validations_per_key,
            strict=False,
        )
        if wait is not None:
            raise Throttled("too many validations for this API key", retry_after=round(wait, 3))
        wait = await self._counters.take(
            f"{policy.key_prefix}:validations:session:{self._sessions.namespace}:{session_uuid}",
            policy.validations_per_session,
            strict=False,
        )
        if wait is not None:
            raise Throttled(
                f"too many validations of session {session_uuid} (at most "
                f"{policy.validations_per_session[0]} tries: Plivo refuses more)",
                retry_after=round(wait, 3),
            )


def checked_start(params: StartParams) -> StartParams:
    """Refuse what Plivo would refuse, before sending anything; the recipient read as E.164."""
    params = replace(params, recipient=plivo_recipient(params.recipient))
    if params.channel not in ("sms", "voice"):
        raise InvalidInput("channel must be SMS or VOICE")
    if params.code_length is not None and not 4 <= params.code_length <= 8:
        raise InvalidInput("codeLength must be from 4 to 8")
    if params.otp is not None and not (params.otp.isdigit() and 4 <= len(params.otp) <= 8):
        raise InvalidInput("otp must be 4 to 8 digits")
    return params


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


def _write_unknown(asked: str) -> str:
    return json.dumps({"x": "unknown", "p": asked}, separators=(",", ":"))


def _read_started(raw: str, asked: str) -> Started:
    """The start a memo kept; InvalidInput when it was made with other parameters."""
    try:
        record = json.loads(raw)
        if record.get("x") == "unknown":
            raise IdempotencyConflict(
                "the first start with this Idempotency-Key got no answer from Plivo, so whether "
                "it sent a code is unknown: use a new key to start again"
            )
        started = Started(str(record["u"]), record.get("m"), record.get("a"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IdempotencyConflict("the record of this Idempotency-Key is unreadable") from None
    if record.get("p") != asked:
        raise InvalidInput("this Idempotency-Key was used for a start with other parameters")
    return started
