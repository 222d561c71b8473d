"""The simulator's Starlette app: Plivo's Verify Session GET, plus an admin API under /__simulator.

Knobs: latency and a standing fault by setting or `PUT /__simulator/config`; one-off faults
queued with `POST /__simulator/faults`; per request, the `X-Simulator-Fault` and
`X-Simulator-Latency-Ms` headers. `GET /__simulator/stats` counts what was served.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.simulator.faults import Fault, FaultPlan
from gateway.simulator.seed import BenchTemplate, seed_sessions

_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRACKED_SESSIONS = 10_000


@dataclass(frozen=True)
class SimulatorSettings:
    """The credential it accepts, and its standing knobs."""

    auth_id: str
    auth_token: str = field(repr=False)
    latency_ms: float = 0.0
    fault: str | None = None
    bench: bool = False
    extra_credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)


class SimulatorState:
    """Sessions, knobs and counters of one simulator."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.sessions = seed_sessions()
        self.latency_ms = settings.latency_ms
        self.faults = FaultPlan(Fault.parse(settings.fault) if settings.fault else None)
        self.bench = BenchTemplate() if settings.bench else None
        self.served = 0
        self.by_status: Counter[int] = Counter()
        self.by_session: Counter[str] = Counter()
        accounts = ((settings.auth_id, settings.auth_token), *settings.extra_credentials)
        self._expected_auth = {
            account: b"Basic " + base64.b64encode(f"{account}:{token}".encode())
            for account, token in accounts
        }

    def is_authorized(self, header: str | None, auth_id: str) -> bool:
        """Basic auth with a configured credential, for the account in the path."""
        given = (header or "").encode("latin-1", "replace")
        expected = self._expected_auth.get(auth_id)
        return expected is not None and hmac.compare_digest(given, expected)

    def arrived(self, session_uuid: str) -> None:
        """Count a session request when it arrives (so a slow answer counts at once)."""
        self.served += 1
        key = session_uuid.lower()
        if key in self.by_session or len(self.by_session) < _TRACKED_SESSIONS:
            self.by_session[key] += 1

    def answered(self, status: int) -> None:
        """Count the status a session request was answered with."""
        self.by_status[status] += 1

    def stats(self) -> dict[str, object]:
        return {
            "served": self.served,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_session": dict(self.by_session),
            "latency_ms": self.latency_ms,
            "bench": self.bench is not None,
        }

    def reset_stats(self) -> None:
        self.served = 0
        self.by_status.clear()
        self.by_session.clear()


def plivo_error(status: int, message: str) -> JSONResponse:
    """Plivo's error body shape: `{"api_id", "error"}`."""
    return JSONResponse({"api_id": str(uuid.uuid4()), "error": message}, status_code=status)


class _DroppedConnection(Response):
    """Starts a response and returns before its body is whole: the server drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"api_id": "', "more_body": True})


async def get_session(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    auth_id, session_uuid = request.path_params["auth_id"], request.path_params["session_uuid"]
    state.arrived(session_uuid)
    fault = _request_fault(request, state, session_uuid)
    await _delay(request, state, fault)
    response = _answer(request, state, auth_id, session_uuid, fault)
    state.answered(response.status_code)
    return response


def _request_fault(request: Request, state: SimulatorState, session_uuid: str) -> Fault | None:
    header = request.headers.get("x-simulator-fault")
    if header:
        try:
            return Fault.parse(header, retry_after=request.headers.get("x-simulator-retry-after"))
        except ValueError:
            return None
    return state.faults.take(session_uuid)


async def _delay(request: Request, state: SimulatorState, fault: Fault | None) -> None:
    latency = state.latency_ms
    header = request.headers.get("x-simulator-latency-ms", "")
    if header.isdigit():
        latency = float(header)
    if fault is not None and fault.kind == "slow":
        latency += fault.delay_ms
    if latency > 0:
        await asyncio.sleep(latency / 1000)


def _answer(
    request: Request, state: SimulatorState, auth_id: str, session_uuid: str, fault: Fault | None
) -> Response:
    if fault is not None and fault.status is not None:
        return _status_fault(fault)
    if fault is not None and fault.kind == "garbage":
        return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="application/json")
    if fault is not None and fault.kind == "reset":
        return _DroppedConnection()
    if not state.is_authorized(request.headers.get("authorization"), auth_id):
        return plivo_error(401, "authentication credentials were not provided or are invalid")
    key = session_uuid.lower()
    if key in state.sessions:
        return JSONResponse(state.sessions[key])
    if state.bench is not None and _CANONICAL.fullmatch(key):
        return Response(state.bench.render(key, auth_id), media_type="application/json")
    return plivo_error(404, "not found")


def _status_fault(fault: Fault) -> Response:
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


async def method_not_allowed(request: Request) -> Response:
    return plivo_error(405, "method not allowed")


async def stats(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    if request.method == "POST":
        before = state.stats()
        state.reset_stats()
        return JSONResponse(before)
    return JSONResponse(state.stats())


async def config(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    if request.method == "PUT":
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        try:
            if "latency_ms" in body:
                state.latency_ms = _number(body["latency_ms"], "latency_ms")
            if "fault" in body:
                raw = body["fault"]
                state.faults.standing = Fault.parse(str(raw)) if raw else None
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
    standing = state.faults.standing
    return JSONResponse(
        {"latency_ms": state.latency_ms, "fault": standing.kind if standing else None}
    )


async def faults(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    if request.method == "DELETE":
        state.faults.clear()
        return JSONResponse({"cleared": True})
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    try:
        delay = body.get("delay_ms")
        fault = Fault.parse(
            str(body.get("fault", "")),
            retry_after=str(body["retry_after"]) if "retry_after" in body else None,
            delay_ms=_number(delay, "delay_ms") if delay is not None else None,
        )
        times = int(_number(body.get("times", 1), "times"))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    target = body.get("session_uuid")
    state.faults.add(fault, times=times, session_uuid=str(target) if target else None)
    return JSONResponse({"queued": fault.kind, "times": times}, status_code=201)


async def _json_object(request: Request) -> dict[str, object] | Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    return body


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of at least 0")
    return float(value)


def create_simulator(settings: SimulatorSettings) -> Starlette:
    """A Starlette app that answers like Plivo's Verify Session API."""
    session_path = "/v1/Account/{auth_id}/Verify/Session/{session_uuid}/"
    app = Starlette(
        routes=[
            Route(session_path, get_session, methods=["GET"]),
            Route(session_path, method_not_allowed, methods=["POST", "PUT", "PATCH", "DELETE"]),
            Route("/__simulator/stats", stats, methods=["GET", "POST"]),
            Route("/__simulator/config", config, methods=["GET", "PUT"]),
            Route("/__simulator/faults", faults, methods=["POST", "DELETE"]),
        ]
    )
    app.state.simulator = SimulatorState(settings)
    return app
