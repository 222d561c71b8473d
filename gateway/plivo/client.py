"""PlivoClient: builds every Plivo URL, sends it through one pooled transport, maps errors.

The transport (`plivo.transport.UpstreamHTTP`) is `plivo.lean.LeanUpstream` by default,
aiohttp or httpx when PLIVO_HTTP_CLIENT says so, httpx when a test hands in an
`httpx.MockTransport`.
Only this module knows Plivo's HTTP: statuses become `UpstreamError`s, bodies become
`plivo.models` objects. Neither a credential nor a raw body ever reaches a message.
"""

from __future__ import annotations

import base64
import logging
import platform
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import quote

import httpx
import orjson

from gateway import __version__
from gateway.errors import (
    SessionNotFound,
    UpstreamError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.plivo.credentials import Credential
from gateway.plivo.flow import (
    MESSAGES,
    ListFilter,
    SessionPage,
    Started,
    StartParams,
    Validation,
    ValidationResult,
    failed_validation,
    parse_page,
    parse_started,
)
from gateway.plivo.models import MalformedSession, Session, canonical_session_uuid, parse_session
from gateway.plivo.transport import AnswerTooLarge, BrokenAnswer, UpstreamHTTP, UpstreamResponse
from gateway.request_context import request_id

logger = logging.getLogger(__name__)

USER_AGENT = (
    f"plivo-verify-gateway/{__version__} "
    f"(httpx/{httpx.__version__}; Python {platform.python_version()})"
)


DEFAULT_HEADERS = {"Accept": "application/json", "User-Agent": USER_AGENT}


def create_http_client(
    base_url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    max_connections: int = 100,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The pooled httpx client behind `HttpxUpstream`; `transport` replaces the network."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        headers=DEFAULT_HEADERS,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        follow_redirects=False,
        trust_env=False,
    )


class RequestObserver(Protocol):
    """Hears about every request sent to Plivo: its status (or failure) and latency."""

    def upstream(self, status: str, seconds: float) -> None: ...


class PlivoClient:
    """Reads Verify sessions from Plivo's REST API (or the built-in simulator)."""

    def __init__(
        self,
        http: UpstreamHTTP,
        credential: Credential,
        observer: RequestObserver | None = None,
    ) -> None:
        self._http = http
        self.credential = credential
        self._observer = observer
        basic = base64.b64encode(f"{credential.auth_id}:{credential.auth_token}".encode())
        self._authorization = f"Basic {basic.decode()}"

    def session_path(self, session_uuid: str) -> str:
        """The path of one session; the uuid is validated and percent-encoded."""
        uuid = quote(canonical_session_uuid(session_uuid), safe="")
        return f"/v1/Account/{quote(self.credential.auth_id, safe='')}/Verify/Session/{uuid}/"

    async def get_session(self, session_uuid: str) -> Session:
        """One session; raises `SessionNotFound` for Plivo's 404, `UpstreamError` otherwise."""
        uuid = canonical_session_uuid(session_uuid)
        path = self.session_path(uuid)
        response = await self._send(path, subject=f"session {uuid}")
        return _read_session(response, path, uuid)

    @property
    def list_path(self) -> str:
        """The path of the session list (and of a start)."""
        return f"/v1/Account/{quote(self.credential.auth_id, safe='')}/Verify/Session/"

    async def list_sessions(self, where: ListFilter, *, limit: int, offset: int) -> SessionPage:
        """One page of sessions (Plivo pages at most 20 at a time, by offset)."""
        params = {**where.params(), "limit": str(limit), "offset": str(offset)}
        response = await self._send(
            self.list_path, subject="the session list", params=params, method="GET"
        )
        try:
            return parse_page(orjson.loads(response.body), offset)
        except (ValueError, RecursionError) as exc:
            raise _unreadable("the session list", "GET", self.list_path, response, exc) from exc

    async def create_session(self, params: StartParams) -> Started:
        """Start a verification: Plivo sends the code. Never retried by the caller."""
        path = self.list_path
        response = await self._send(
            path, subject="a new session", method="POST", json=params.body()
        )
        try:
            return parse_started(orjson.loads(response.body))
        except (ValueError, RecursionError) as exc:
            raise _unreadable("a new session", "POST", path, response, exc) from exc

    async def validate_session(self, session_uuid: str, otp: str) -> Validation:
        """Check a code; a wrong, expired or exhausted one is an outcome, not an error."""
        uuid = canonical_session_uuid(session_uuid)
        path = self.session_path(uuid)
        subject = f"session {uuid}"
        response = await self._send(
            path, subject=subject, method="POST", json={"otp": otp}, check=False
        )
        if 200 <= response.status < 300:
            result = ValidationResult.VERIFIED
        elif response.status == 404:
            result = ValidationResult.NOT_FOUND
        else:
            outcome = (
                failed_validation(_error_text(response)) if response.status in (400, 422) else None
            )
            if outcome is None:
                _raise_for_status(response, "POST", path, subject)
                raise UpstreamFailed(
                    f"Plivo's answer for {subject} is unreadable (HTTP {response.status})",
                    method="POST",
                    path=path,
                    status_code=response.status,
                )
            result = outcome
        return Validation(uuid, result, MESSAGES[result])

    async def _send(
        self,
        path: str,
        *,
        subject: str,
        method: str = "GET",
        params: dict[str, str] | None = None,
        json: dict[str, object] | None = None,
        check: bool = True,
    ) -> UpstreamResponse:
        headers = {"Authorization": self._authorization}
        rid = request_id.get()
        if rid:
            headers["X-Request-ID"] = rid
        started = time.perf_counter()
        try:
            response = await self._http.send(
                method, path, headers, subject, params=params, json=json
            )
        except UpstreamTimeout:
            self._observe("timeout", started)
            raise
        except UpstreamUnavailable:
            self._observe("connection", started)
            raise
        except BrokenAnswer as exc:
            self._observe("too_large" if isinstance(exc, AnswerTooLarge) else "unreadable", started)
            raise
        elapsed = self._observe(str(response.status), started)
        logger.debug("plivo %s %s -> %d in %.1f ms", method, path, response.status, elapsed * 1e3)
        if check:
            _raise_for_status(response, method, path, subject)
        return response

    def _observe(self, status: str, started: float) -> float:
        elapsed = time.perf_counter() - started
        if self._observer is not None:
            self._observer.upstream(status, elapsed)
        return elapsed


def _raise_for_status(response: UpstreamResponse, method: str, path: str, subject: str) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    if status == 404:
        raise SessionNotFound(method=method, path=path)
    if status == 429:
        raise UpstreamRateLimited(
            f"Plivo rate-limited the request for {subject}",
            method=method,
            path=path,
            retry_after=retry_after_seconds(response.retry_after),
        )
    if status >= 500:
        raise UpstreamFailed(
            f"Plivo failed (HTTP {status}) for {subject}",
            method=method,
            path=path,
            status_code=status,
        )
    raise UpstreamRejected(
        f"Plivo rejected the request (HTTP {status}) for {subject}",
        method=method,
        path=path,
        status_code=status,
    )


def _error_text(response: UpstreamResponse) -> str:
    """The `error` string of Plivo's error body, or "" (never shown to a caller)."""
    try:
        body = orjson.loads(response.body)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else ""


def _unreadable(
    subject: str, method: str, path: str, response: UpstreamResponse, exc: Exception
) -> UpstreamFailed:
    reason = str(exc) if isinstance(exc, MalformedSession) else "not JSON"
    return UpstreamFailed(
        f"Plivo's answer for {subject} is unreadable ({reason})",
        method=method,
        path=path,
        status_code=response.status,
    )


def _read_session(response: UpstreamResponse, path: str, uuid: str) -> Session:
    try:
        session = parse_session(orjson.loads(response.body))
    except (ValueError, RecursionError) as exc:  # orjson's JSONDecodeError, MalformedSession
        reason = str(exc) if isinstance(exc, MalformedSession) else "not JSON"
        raise UpstreamFailed(
            f"Plivo's answer for session {uuid} is unreadable ({reason})",
            method="GET",
            path=path,
            status_code=response.status,
        ) from exc
    if session.session_uuid.lower() != uuid:
        raise UpstreamFailed(
            f"Plivo answered with another session than {uuid}",
            method="GET",
            path=path,
            status_code=response.status,
        )
    return session


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


__all__ = ["Credential", "PlivoClient", "UpstreamError", "create_http_client"]
