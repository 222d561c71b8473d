"""Retries, a circuit breaker and a bulkhead around the Plivo client.

- Reads are retried on connection errors, timeouts, 502, 503, 504 and 429 (after its
  Retry-After when that fits the deadline), with jittered exponential backoff, all inside
  one overall deadline. Other 4xx are never retried. (tenacity does the retrying.)
- The breaker counts transport errors, timeouts, 5xx and broken answers (over the size limit,
  or not HTTP) once per request, after retries; N in a row open it for a cool-down, then one
  probe goes through. A broken answer is not retried: the same one would come back.
- The bulkhead caps the requests in flight to Plivo: in all, and for any one credential (its
  share), so one slow account cannot take every slot from the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from gateway.errors import (
    UpstreamError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.plivo.bulkhead import Slots
from gateway.plivo.client import Credential, PlivoClient
from gateway.plivo.flow import ListFilter, SessionPage, Started, StartParams, Validation
from gateway.plivo.models import Session
from gateway.plivo.transport import BrokenAnswer

T = TypeVar("T")
RETRIED_STATUSES = frozenset({502, 503, 504})
BreakerState = Literal["closed", "open", "half_open"]


class CircuitOpen(UpstreamUnavailable):
    """The breaker is open: Plivo failed too often just now, so no request is sent."""


class UpstreamObserver(Protocol):
    """Hears about retries and breaker changes (metrics implement it)."""

    def retried(self, reason: str) -> None: ...

    def breaker_changed(self, name: str, state: BreakerState) -> None: ...


class NoObserver:
    """Hears nothing."""

    def retried(self, reason: str) -> None:
        """Nothing."""

    def breaker_changed(self, name: str, state: BreakerState) -> None:
        """Nothing."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try; the deadline bounds the whole call, retries included."""

    attempts: int = 3
    deadline: float = 5.0
    initial_backoff: float = 0.05
    max_backoff: float = 1.0


class CircuitBreaker:
    """Opens after `threshold` failures in a row, for `cooldown` seconds, then lets one probe."""

    def __init__(
        self, name: str, threshold: int, cooldown: float, observer: UpstreamObserver
    ) -> None:
        self.name, self.threshold, self.cooldown = name, threshold, cooldown
        self.state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._observer = observer

    def admit(self, method: str, path: str) -> None:
        """Let a request through, or raise CircuitOpen."""
        if self.state == "closed":
            return
        if self.state == "open" and time.monotonic() - self._opened_at >= self.cooldown:
            self._move("half_open")  # this caller is the probe
            return
        raise CircuitOpen("Plivo is failing; requests are paused", method=method, path=path)

    def succeeded(self) -> None:
        """Plivo answered (any status but 5xx)."""
        self._failures = 0
        if self.state != "closed":
            self._move("closed")

    def failed(self) -> None:
        """A request failed with a transport error, a timeout or a 5xx, after its retries."""
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.threshold:
            self._opened_at = time.monotonic()
            self._move("open")

    def _move(self, state: BreakerState) -> None:
        self.state = state
        self._observer.breaker_changed(self.name, state)


def is_outage(error: BaseException) -> bool:
    """What the breaker counts: transport errors, timeouts, 5xx and broken answers."""
    if isinstance(error, BrokenAnswer):
        return True
    if isinstance(error, UpstreamFailed):
        return error.status_code is not None and error.status_code >= 500
    return isinstance(error, UpstreamTimeout | UpstreamUnavailable)


def retry_reason(error: BaseException) -> str | None:
    """Why `error` may be retried, or None when it may not."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnavailable) and not isinstance(error, CircuitOpen):
        return "connection"
    if isinstance(error, BrokenAnswer):
        return None
    if isinstance(error, UpstreamFailed) and error.status_code in RETRIED_STATUSES:
        return str(error.status_code)
    if isinstance(error, UpstreamRateLimited):
        return "429"
    return None


async def _always() -> bool:
    return True


class ResilientClient:
    """A PlivoClient whose reads go through retries, the breaker and the bulkhead.

    Each retry is a request to Plivo like any other: `admit_retry` says whether the budget can
    afford it (False: no more retries, the last error stands).
    """

    def __init__(
        self,
        client: PlivoClient,
        *,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        bulkhead: Slots,
        observer: UpstreamObserver,
        admit_retry: Callable[[], Awaitable[bool]] = _always,
    ) -> None:
        self._client, self._policy = client, policy
        self.breaker, self._bulkhead, self._observer = breaker, bulkhead, observer
        self.admit_retry = admit_retry
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
        )

    @property
    def credential(self) -> Credential:
        """The credential used upstream."""
        return self._client.credential

    async def get_session(self, session_uuid: str) -> Session:
        """One session, with retries inside the deadline; raises like PlivoClient."""
        path = self._client.session_path(session_uuid)
        return await self._guarded(
            lambda: self._call(lambda: self._client.get_session(session_uuid), path), path
        )

    async def list_sessions(self, where: ListFilter, *, limit: int, offset: int) -> SessionPage:
        """One page of the list: a read, so retried like a get."""
        path = self._client.list_path
        return await self._guarded(
            lambda: self._call(
                lambda: self._client.list_sessions(where, limit=limit, offset=offset), path
            ),
            path,
        )

    async def create_session(self, params: StartParams) -> Started:
        """A start, sent once: a retry could send a second code."""
        path = self._client.list_path
        return await self._guarded(
            lambda: self._once(lambda: self._client.create_session(params), "POST", path),
            path,
            "POST",
        )

    async def validate_session(self, session_uuid: str, otp: str) -> Validation:
        """A validation, sent once: a retry would spend one of the session's tries."""
        path = self._client.session_path(session_uuid)
        return await self._guarded(
            lambda: self._once(
                lambda: self._client.validate_session(session_uuid, otp), "POST", path
            ),
            path,
            "POST",
        )

    async def _guarded(self, call: Callable[[], Awaitable[T]], path: str, method: str = "GET") -> T:
        """Through the breaker: it counts outages, and refuses while open."""
        self.breaker.admit(method, path)
        try:
            result = await call()
        except UpstreamError as exc:
            if is_outage(exc):
                self.breaker.failed()
            else:
                self.breaker.succeeded()
            raise
        self.breaker.succeeded()
        return result

    async def _once(self, call: Callable[[], Awaitable[T]], method: str, path: str) -> T:
        try:
            async with asyncio.timeout(self._policy.deadline), self._bulkhead:
                return await call()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Plivo did not answer within the {self._policy.deadline:g} s deadline",
                method=method,
                path=path,
            ) from exc

    async def _call(self, call: Callable[[], Awaitable[T]], path: str) -> T:
        started = time.monotonic()
        try:  # the first attempt without the retry machinery: most calls need nothing more
            async with asyncio.timeout(self._policy.deadline), self._bulkhead:
                return await call()
        except TimeoutError as exc:
            raise self._past_deadline(path) from exc
        except UpstreamError as exc:
            if self._policy.attempts <= 1 or retry_reason(exc) is None:
                raise
            if not self._may_retry(exc, started):
                raise
            await asyncio.sleep(self._first_wait(exc))
            if not await self.admit_retry():  # paid when it is sent: after Retry-After
                raise
            self._observer.retried(retry_reason(exc) or "other")
        return await self._retries(call, path, started)

    async def _retries(self, call: Callable[[], Awaitable[T]], path: str, started: float) -> T:
        remaining = self._policy.deadline - (time.monotonic() - started)
        failed: list[BaseException] = []

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if error is not None:
                failed.append(error)
            self._before_sleep(state)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.attempts - 1) | stop_before_delay(remaining),
            wait=self._wait,
            retry=lambda state: self._should_retry(state, started),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                async for attempt in retrying:
                    if failed and not await self.admit_retry():
                        raise failed[-1]  # the budget cannot afford another try
                    with attempt:
                        async with self._bulkhead:
                            return await call()
        except TimeoutError as exc:
            raise self._past_deadline(path) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _past_deadline(self, path: str) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"Plivo did not answer within the {self._policy.deadline:g} s deadline",
            method="GET",
            path=path,
        )

    def _may_retry(self, error: BaseException, started: float) -> bool:
        if retry_reason(error) is None:
            return False
        if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
            remaining = self._policy.deadline - (time.monotonic() - started)
            return error.retry_after < remaining
        return True

    def _first_wait(self, error: BaseException) -> float:
        if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
            return error.retry_after
        return self._policy.initial_backoff * random.random()  # noqa: S311  (jitter, not secrets) + self._policy.initial_backoff

    def _should_retry(self, state: RetryCallState, started: float) -> bool:
        error = state.outcome.exception() if state.outcome else None
        return error is not None and self._may_retry(error, started)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state)) * 2

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self._observer.retried(retry_reason(error) or "other" if error else "other")
