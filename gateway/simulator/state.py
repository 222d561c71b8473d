"""The simulator's settings and state, and the helpers its routes share."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.simulator.faults import Fault, FaultPlan
from gateway.simulator.seed import (
    RECENT_IN_PROGRESS,
    BenchTemplate,
    LiveBenchTemplate,
    recent_sessions,
    seed_sessions,
)
from gateway.simulator.verify import (
    Flow,
    ListLimiter,
    is_loopback,
    new_code,
    now_text,
    send_callback,
    spawn,
)

CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRACKED_SESSIONS = 10_000


@dataclass(frozen=True)
class SimulatorSettings:
    """The credential it accepts, and its standing knobs."""

    auth_id: str
    auth_token: str = field(repr=False)
    latency_ms: float = 0.0
    fault: str | None = None
    bench: bool = False
    bench_live: bool = False  # any canonical uuid answers an in-progress session that changes
    extra_credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    code_expiry: float = 600.0
    expose_codes: bool = False
    list_per_minute: int = 20


class SimulatorState:
    """Sessions, knobs and counters of one simulator."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.sessions = {**seed_sessions(), **recent_sessions(datetime.now(UTC))}
        # Whose each session is: the account that started it; the seeded ones, the main one's.
        # Another account asking about it gets what Plivo answers for a uuid it does not know.
        self.owners = dict.fromkeys(self.sessions, settings.auth_id)
        self.latency_ms = settings.latency_ms
        self.faults = FaultPlan(Fault.parse(settings.fault) if settings.fault else None)
        self.bench: BenchTemplate | LiveBenchTemplate | None = (
            LiveBenchTemplate()
            if settings.bench_live
            else BenchTemplate()
            if settings.bench
            else None
        )
        self.traffic = Traffic()
        self.changes = 0
        self.callbacks: Counter[str] = Counter()
        self.served = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.by_status: Counter[int] = Counter()
        self.by_session: Counter[str] = Counter()
        # The recent in-progress session's code was sent at the start: it verifies, and expires.
        self.flows: dict[str, Flow] = {
            RECENT_IN_PROGRESS: Flow(
                settings.auth_id, new_code(), time.monotonic() + settings.code_expiry, None, "POST"
            )
        }
        self.lists_served = 0
        self.creates = 0
        self.lists = ListLimiter(settings.list_per_minute)
        self.tasks: set[asyncio.Task[None]] = set()
        accounts = ((settings.auth_id, settings.auth_token), *settings.extra_credentials)
        self.tokens = dict(accounts)
        self._expected_auth = {
            account: b"Basic " + base64.b64encode(f"{account}:{token}".encode())
            for account, token in accounts
        }

    def is_authorized(self, header: str | None, auth_id: str) -> bool:
        """Basic auth with a configured credential, for the account in the path."""
        given = (header or "").encode("latin-1", "replace")
        expected = self._expected_auth.get(auth_id)
        return expected is not None and hmac.compare_digest(given, expected)

    def session_of(self, account: str, session_uuid: str) -> dict[str, Any] | None:
        """The session's body when `account` owns it (expired first if due), else None."""
        key = session_uuid.lower()
        if self.owners.get(key) != account:
            return None
        self.expire_if_due(key)
        return self.sessions.get(key)

    def sessions_of(self, account: str) -> list[dict[str, Any]]:
        """Every session `account` owns."""
        return [body for key, body in self.sessions.items() if self.owners.get(key) == account]

    def add_session(self, account: str, body: dict[str, Any]) -> str:
        """Keep a new session as `account`'s; returns its uuid."""
        key = str(body["session_uuid"]).lower()
        self.sessions[key] = body
        self.owners[key] = account
        return key

    def expire_if_due(self, session_uuid: str) -> None:
        """An in-progress session past its code's expiry becomes expired (with a callback)."""
        flow, body = self.flows.get(session_uuid), self.sessions.get(session_uuid)
        if flow is None or body is None or body["status"] != "in-progress":
            return
        if time.monotonic() >= flow.expires_at:
            body["status"], body["updated_at"] = "expired", now_text()
            self.callback(session_uuid, "expired")

    def callback(self, session_uuid: str, session_status: str) -> None:
        """Send the session's status callback in the background."""
        flow, body = self.flows[session_uuid], self.sessions[session_uuid]
        token = self.tokens[flow.account]
        sending = send_callback(flow, dict(body), token, session_status)
        if flow.url is not None and is_loopback(flow.url):
            spawn(self.tasks, self.counted(sending))
        else:
            spawn(self.tasks, sending)

    async def counted(self, sending: Awaitable[int | None]) -> None:
        """Send a callback and count its answer."""
        self.answered_callback(await sending)

    def answered_callback(self, status: int | None) -> None:
        """Count a callback sent, by its HTTP answer ("failed" when none came)."""
        self.callbacks["failed" if status is None else str(status)] += 1

    def arrived(self, session_uuid: str) -> None:
        """Count a session request when it arrives (so a slow answer counts at once)."""
        self.served += 1
        self.traffic.record()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        key = session_uuid.lower()
        if key in self.by_session or len(self.by_session) < _TRACKED_SESSIONS:
            self.by_session[key] += 1

    def answered(self, status: int) -> None:
        """Count the status a session request was answered with."""
        self.by_status[status] += 1

    def left(self) -> None:
        """A session request is no longer being served (answered, or its client went away)."""
        self.in_flight -= 1

    def stats(self) -> dict[str, object]:
        return {
            "served": self.served,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_session": dict(self.by_session),
            "latency_ms": self.latency_ms,
            "bench": self.bench is not None,
            "bench_live": isinstance(self.bench, LiveBenchTemplate),
            "lists": self.lists_served,
            "creates": self.creates,
            "changes": self.changes,
            "callbacks_sent": sum(self.callbacks.values()),
            "callbacks_by_status": dict(sorted(self.callbacks.items())),
            "traffic_kept": len(self.traffic.times),
            "traffic_dropped": self.traffic.dropped,
        }

    def reset_stats(self) -> None:
        self.served = 0
        self.peak_in_flight = self.in_flight
        self.by_status.clear()
        self.by_session.clear()
        self.lists_served = 0
        self.creates = 0
        self.changes = 0
        self.callbacks.clear()
        self.traffic.clear()


class Traffic:
    """When session GETs arrived: `time.monotonic()` seconds (CLOCK_MONOTONIC, one clock for
    every process of the machine on Linux), the last `limit` of them within `keep` seconds.

    A benchmark reads them back (`GET /__simulator/traffic`) to find the most requests in any
    sliding window, as Plivo's account limit counts them.
    """

    def __init__(self, limit: int = 1_000_000, keep: float = 600.0) -> None:
        self.times: deque[float] = deque(maxlen=limit)
        self.keep = keep
        self.dropped = 0

    def record(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self.times
        if len(times) == times.maxlen:
            self.dropped += 1
        times.append(now)
        while times[0] < now - self.keep:
            times.popleft()
            self.dropped += 1

    def between(self, since: float, until: float) -> list[float]:
        """The times kept from `since` up to `until` (both included), oldest first."""
        return [t for t in self.times if since <= t <= until]

    def clear(self) -> None:
        self.times.clear()
        self.dropped = 0


def plivo_error(status: int, message: str) -> JSONResponse:
    """Plivo's error body shape: `{"api_id", "error"}`."""
    return JSONResponse({"api_id": str(uuid.uuid4()), "error": message}, status_code=status)


def request_fault(request: Request, state: SimulatorState, session_uuid: str) -> Fault | None:
    header = request.headers.get("x-simulator-fault")
    if header:
        try:
            return Fault.parse(header, retry_after=request.headers.get("x-simulator-retry-after"))
        except ValueError:
            return None
    return state.faults.take(session_uuid)


def status_fault(fault: Fault) -> Response:
    status = fault.status or 500
    messages = {
        401: "authentication credentials were not provided",
        403: "forbidden",
        429: "too many requests",
    }
    response = plivo_error(status, messages.get(status, "simulated failure"))
    if status == 429:
        response.headers["Retry-After"] = fault.retry_after or "1"
    return response


async def json_object(request: Request) -> dict[str, object] | Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    return body
