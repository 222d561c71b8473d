"""Plivo's signed status callbacks.

Callbacks arrive at `GATEWAY_PUBLIC_URL` + `/plivo/callbacks`; their V2 or V3 signature is
checked against that URL (the one Plivo was given) and the tokens of the credentials the gateway
sends requests with. Invalid or missing: 403. Valid: the session changed, everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import InvalidInput
from gateway.plivo.models import canonical_session_uuid
from gateway.plivo.signature import is_signed
from gateway.web.bodies import read_body

logger = logging.getLogger(__name__)
CALLBACK_PATH = "/plivo/callbacks"
MAX_CALLBACK_BYTES = 64 * 1024


def callback_endpoint(
    public_url: str | None,
    tokens: Callable[[], Iterable[str]],
    changed: Callable[[str], Awaitable[None]],
    observe: Callable[[str], None] = lambda outcome: None,
) -> Callable[[Request], Awaitable[Response]]:
    """POST (or GET) /plivo/callbacks: a signed status callback from Plivo."""
    signed_url = (public_url or "").rstrip("/") + CALLBACK_PATH

    async def callback(request: Request) -> Response:
        response, outcome = await answer(request)
        observe(outcome)
        return response

    async def answer(request: Request) -> tuple[Response, str]:
        if public_url is None:
            return JSONResponse({"error": "callbacks are off (GATEWAY_PUBLIC_URL)"}, 404), "off"
        body = await read_body(
            request.receive, request.headers.get("content-length"), MAX_CALLBACK_BYTES
        )
        if body is None:
            return JSONResponse({"error": "too large"}, 413), "too_large"
        if request.method == "POST":  # Plivo posts application/x-www-form-urlencoded
            items = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            items = list(request.query_params.multi_items())
        params: dict[str, list[str]] = {}
        for key, value in items:
            params.setdefault(key, []).append(value)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not is_signed(request.method, signed_url, headers, params, tokens()):
            logger.warning("a status callback with a missing or invalid signature was refused")
            return JSONResponse({"error": "invalid signature"}, 403), "invalid_signature"
        try:
            uuid = canonical_session_uuid((params.get("SessionUUID") or [""])[0])
        except InvalidInput:
            return JSONResponse(
                {"error": "SessionUUID is missing or not a uuid"}, 400
            ), "bad_request"
        await changed(uuid)
        logger.info("status callback for session %s", uuid)
        return JSONResponse({"ok": True}), "accepted"

    return callback
