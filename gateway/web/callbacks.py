"""Plivo's signed status callbacks.

Callbacks arrive at `GATEWAY_PUBLIC_URL` + `/plivo/callbacks`; their signature is checked
against that URL (the one Plivo was given) and the tokens Plivo signs with: the gateway's own
account's and those of PLIVO_CALLBACK_SUBACCOUNTS, never a token a caller brought. Any V3 header
sent: V3 must verify; V2 counts only without one. Invalid or missing: 403. A nonce already
accepted (a replay): 403. The nonce store unreachable: 503, Retry-After. Valid: the session
changed, everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import InvalidInput, StateUnavailable
from gateway.plivo.models import canonical_session_uuid
from gateway.plivo.signature import Nonce, verified
from gateway.web.bodies import read_body

logger = logging.getLogger(__name__)
CALLBACK_PATH = "/plivo/callbacks"
MAX_CALLBACK_BYTES = 64 * 1024
Remember = Callable[[Sequence[Nonce]], Awaitable[bool]]  # first delivery? (StateUnavailable)


def callback_endpoint(
    public_url: str | None,
    tokens: Sequence[str],
    changed: Callable[[str], Awaitable[None]],
    *,
    remember: Remember,
    observe: Callable[[str], None] = lambda outcome: None,
) -> Callable[[Request], Awaitable[Response]]:
    """POST (or GET) /plivo/callbacks: a signed status callback from Plivo.

    `tokens` may sign one; `remember` keeps a verified callback's nonces (False: a replay).
    """
    signed_url = (public_url or "").rstrip("/") + CALLBACK_PATH
    tokens = tuple(tokens)

    async def callback(request: Request) -> Response:
        response, outcome = await answer(request)
        observe(outcome)
        return response

    async def answer(request: Request) -> tuple[Response, str]:
        if public_url is None:
            return JSONResponse({"error": "callbacks are off (GATEWAY_PUBLIC_URL)"}, 404), "off"
        params = await read_params(request)
        if params is None:
            return JSONResponse({"error": "too large"}, 413), "too_large"
        headers = {k.lower(): v for k, v in request.headers.items()}
        signed = verified(request.method, signed_url, headers, params, tokens)
        if signed is None:
            logger.warning("a status callback with a missing or invalid signature was refused")
            return JSONResponse({"error": "invalid signature"}, 403), "invalid_signature"
        try:
            uuid = canonical_session_uuid((params.get("SessionUUID") or [""])[0])
        except InvalidInput:
            return JSONResponse(
                {"error": "SessionUUID is missing or not a uuid"}, 400
            ), "bad_request"
        try:
            first = await remember(signed.nonces)
        except StateUnavailable as exc:  # logged by the store, once per outage
            wait = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
            return JSONResponse({"error": "try again later"}, 503, wait), "store_unavailable"
        if not first:
            logger.info("a replayed status callback was refused (session %s)", uuid)
            return JSONResponse({"error": "replayed"}, 403), "replayed"
        await changed(uuid)
        logger.info("status callback for session %s", uuid)
        return JSONResponse({"ok": True}), "accepted"

    return callback


async def read_params(request: Request) -> dict[str, list[str]] | None:
    """The callback's parameters (the form of a POST, the query of a GET); None: too large."""
    body = await read_body(
        request.receive, request.headers.get("content-length"), MAX_CALLBACK_BYTES
    )
    if body is None:
        return None
    if request.method == "POST":  # Plivo posts application/x-www-form-urlencoded
        items = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    else:
        items = list(request.query_params.multi_items())
    params: dict[str, list[str]] = {}
    for key, value in items:
        params.setdefault(key, []).append(value)
    return params
