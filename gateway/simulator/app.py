"""The simulator's Starlette app: Plivo's Verify Session resource, and an admin API.

Knobs: latency and a standing fault by setting or `PUT /__simulator/config`; one-off faults
queued with `POST /__simulator/faults`; per request, the `X-Simulator-Fault` and
`X-Simulator-Latency-Ms` headers. `GET /__simulator/stats` counts what was served.
Accounts are kept apart: a session is its starter's (a seeded one, the main account's), and
any other account's get, validate and list see it no more than an unknown uuid.
Live bench mode (`bench_live`): `GET /__simulator/traffic` and `/__simulator/bench/changes`
(gateway/simulator/live.py).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.simulator.faults import Fault
from gateway.simulator.flow_routes import code, create_session, list_sessions, validate_session
from gateway.simulator.live import changes, traffic
from gateway.simulator.state import (
    CANONICAL,
    SimulatorSettings,
    SimulatorState,
    json_object,
    plivo_error,
    request_fault,
    status_fault,
)

__all__ = ["SimulatorSettings", "create_simulator"]


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
    try:
        fault = request_fault(request, state, session_uuid)
        await _delay(request, state, fault)
        response = _answer(request, state, auth_id, session_uuid, fault)
    finally:
        state.left()
    state.answered(response.status_code)
    return response


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
        return status_fault(fault)
    if fault is not None and fault.kind == "garbage":
        return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="application/json")
    if fault is not None and fault.kind == "reset":
        return _DroppedConnection()
    if not state.is_authorized(request.headers.get("authorization"), auth_id):
        return plivo_error(401, "authentication credentials were not provided or are invalid")
    key = session_uuid.lower()
    body = state.session_of(auth_id, key)  # another account's session: as if unknown
    if body is not None:
        return JSONResponse(body)
    if state.bench is not None and CANONICAL.fullmatch(key):
        return Response(state.bench.render(key, auth_id), media_type="application/json")
    return plivo_error(404, "not found")


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
        body = await json_object(request)
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
    body = await json_object(request)
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


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of at least 0")
    return float(value)


def create_simulator(settings: SimulatorSettings) -> Starlette:
    """A Starlette app that answers like Plivo's Verify Session API."""
    session_path = "/v1/Account/{auth_id}/Verify/Session/{session_uuid}/"
    list_path = "/v1/Account/{auth_id}/Verify/Session/"
    app = Starlette(
        routes=[
            Route(list_path, list_sessions, methods=["GET"]),
            Route(list_path, create_session, methods=["POST"]),
            Route(list_path, method_not_allowed, methods=["PUT", "PATCH", "DELETE"]),
            Route(session_path, get_session, methods=["GET"]),
            Route(session_path, validate_session, methods=["POST"]),
            Route(session_path, method_not_allowed, methods=["PUT", "PATCH", "DELETE"]),
            Route("/__simulator/codes/{session_uuid}", code, methods=["GET"]),
            Route("/__simulator/stats", stats, methods=["GET", "POST"]),
            Route("/__simulator/config", config, methods=["GET", "PUT"]),
            Route("/__simulator/faults", faults, methods=["POST", "DELETE"]),
            Route("/__simulator/traffic", traffic, methods=["GET"]),
            Route("/__simulator/bench/changes", changes, methods=["GET", "POST", "DELETE"]),
        ]
    )
    app.state.simulator = SimulatorState(settings)
    app.state.changes = None
    return app
