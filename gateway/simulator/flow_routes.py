"""The simulator's create, list and validate routes, and the demo's code endpoint."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.simulator.state import (
    SimulatorState,
    json_object,
    plivo_error,
    request_fault,
    status_fault,
)
from gateway.simulator.verify import (
    EXPIRED,
    MAX_TRIES,
    NOT_OPEN,
    TOO_MANY,
    VERIFIED_ALREADY,
    WRONG_CODE,
    Flow,
    create_problem,
    list_page,
    new_attempt,
    new_code,
    new_session,
    now_text,
)


def _account(request: Request) -> tuple[SimulatorState, str, Response | None]:
    state: SimulatorState = request.app.state.simulator
    auth_id = request.path_params["auth_id"]
    if not state.is_authorized(request.headers.get("authorization"), auth_id):
        error = plivo_error(401, "authentication credentials were not provided or are invalid")
        return state, auth_id, error
    return state, auth_id, None


async def create_session(request: Request) -> Response:
    """POST .../Verify/Session/: send a code (a new session, or a new attempt of an open one)."""
    state, account, refused = _account(request)
    if refused is not None:
        return refused
    params = await json_object(request)
    if isinstance(params, Response):
        return plivo_error(400, "the body must be a JSON object")
    state.creates += 1
    fault = request_fault(request, state, "")
    if fault is not None and fault.status is not None:
        return status_fault(fault)
    problem = create_problem(params)
    if problem is not None:
        return plivo_error(400, problem)
    channel = str(params.get("channel", "sms"))
    recipient = str(params["recipient"]).lstrip("+")
    open_uuid = next(
        (
            key
            for key, flow in state.flows.items()
            if flow.account == account
            and state.sessions[key]["recipient"] == recipient
            and state.sessions[key]["status"] == "in-progress"
            and time.monotonic() < flow.expires_at
        ),
        None,
    )
    if open_uuid is None:
        open_uuid = state.add_session(account, new_session(account, params, channel))
        length = int(str(params.get("code_length") or 6))
        code = str(params.get("otp") or new_code(length))
        expires = time.monotonic() + state.settings.code_expiry
        url = params.get("url")
        state.flows[open_uuid] = Flow(
            account, code, expires, str(url) if url else None, str(params.get("method", "POST"))
        )
        asyncio.get_running_loop().call_later(
            state.settings.code_expiry + 0.01, state.expire_if_due, open_uuid
        )
    new_attempt(state.sessions[open_uuid], channel)
    state.callback(open_uuid, "in-progress")
    body = {"api_id": str(uuid.uuid4()), "message": "Session initiated", "session_uuid": open_uuid}
    return JSONResponse(body, status_code=202)


async def list_sessions(request: Request) -> Response:
    """GET .../Verify/Session/: filters, limit (1 to 20), offset; 20 requests a minute."""
    state, account, refused = _account(request)
    if refused is not None:
        return refused
    state.lists_served += 1
    if not state.lists.allow(account):
        return plivo_error(429, "too many requests")
    query = dict(request.query_params)
    limit, offset = query.pop("limit", "20"), query.pop("offset", "0")
    if not limit.isdigit() or not 0 < int(limit) <= 20 or not offset.isdigit():
        return plivo_error(400, "limit must be from 1 to 20 and offset at least 0")
    if query.get("status") not in (None, "in-progress", "verified", "expired"):
        return plivo_error(400, "status must be in-progress, verified or expired")
    for key in list(state.flows):
        state.expire_if_due(key)
    try:
        page = list_page(state.sessions_of(account), query, account, int(limit), int(offset))
    except ValueError:
        return plivo_error(400, "session_time must be YYYY-MM-DD HH:MM[:ss[.uuuuuu]]")
    return JSONResponse(page)


async def validate_session(request: Request) -> Response:
    """POST .../Verify/Session/{uuid}/ with {"otp"}: at most 10 tries, before the expiry.

    The order of the refusals, and why, is in gateway/simulator/verify.py's docstring.
    """
    state, account, refused = _account(request)
    if refused is not None:
        return refused
    key = request.path_params["session_uuid"].lower()
    fault = request_fault(request, state, key)
    if fault is not None and fault.status is not None:
        return status_fault(fault)
    params = await json_object(request)
    if isinstance(params, Response) or not isinstance(params.get("otp"), str | int):
        return plivo_error(400, "otp is required")
    body = state.session_of(account, key)  # another account's session: as if unknown
    if body is None:
        return plivo_error(404, "not found")
    status = str(body["status"]).lower()  # Plivo's docs example says "Expired"
    if status == "expired":
        return plivo_error(400, EXPIRED)
    if status == "verified":
        return plivo_error(400, VERIFIED_ALREADY)
    flow = state.flows.get(key)
    if flow is None:  # a seeded in-progress session: no code of it was sent here
        return plivo_error(400, NOT_OPEN)
    if flow.tries >= MAX_TRIES:
        return plivo_error(400, TOO_MANY)
    flow.tries += 1
    if not hmac.compare_digest(str(params["otp"]), flow.code):
        return plivo_error(400, WRONG_CODE)
    body["status"], body["updated_at"] = "verified", now_text()
    body["charges"]["validation_charge"] = "0.0500"
    total = sum(float(c["charge"]) for c in body["charges"]["attempt_charges"]) + 0.05
    body["charges"]["total_charge"] = f"{total:.5f}"
    state.callback(key, "verified")
    message = "session validated successfully."
    return JSONResponse({"api_id": str(uuid.uuid4()), "message": message, "session_uuid": key})


async def code(request: Request) -> Response:
    """The demo's way to read a code: GET /__simulator/codes/{uuid} (only when exposed)."""
    state: SimulatorState = request.app.state.simulator
    flow = state.flows.get(request.path_params["session_uuid"].lower())
    if not state.settings.expose_codes or flow is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse({"code": flow.code})
