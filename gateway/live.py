"""Live status over websockets (graphql-transport-ws), and Plivo's signed status callbacks.

A websocket authenticates once, in `connection_init`: `{"Authorization": "Bearer <key>"}` in
its payload (browsers cannot set headers on a websocket) or the upgrade request's own
Authorization header; an unknown key closes it with 4403. Subscriptions then run with the key's
scopes and the configured Plivo credential.

Callbacks arrive at `GATEWAY_PUBLIC_URL` + `/plivo/callbacks`; their V2 or V3 signature is
checked against that URL (the one Plivo was given) and the tokens of the credentials the gateway
sends requests with. Invalid or missing: 403. Valid: the session changed, everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from gateway.auth import Authenticator
from gateway.endpoint import read_body
from gateway.errors import InvalidInput, Unauthenticated
from gateway.plivo.models import canonical_session_uuid
from gateway.plivo.signature import is_signed
from gateway.schema.context import Context

logger = logging.getLogger(__name__)
CALLBACK_PATH = "/plivo/callbacks"
MAX_CALLBACK_BYTES = 64 * 1024


class Subscriptions(GraphQL[Context, None]):
    """Strawberry's websocket transport, with our context and API keys."""

    def __init__(
        self,
        schema: Any,
        *,
        authenticator: Authenticator,
        context: Callable[[], Context],
        origins: Sequence[str] = (),
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=20,
            # Pages on other origins may open a websocket only when CORS allows them too.
            allowed_origins=origins,
        )
        self._authenticator, self._context = authenticator, context

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context = self._context()
        context.scopes = frozenset()  # nothing until connection_init names a key
        # Strawberry replaces connection_params with the init payload: keep the header aside.
        setattr(context, "upgrade_authorization", request.headers.get("authorization"))  # noqa: B010
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        given = params.get("Authorization") or params.get("authorization")
        if not isinstance(given, str):
            given = self._upgrade_header(context)
        try:
            principal = self._authenticator.principal({"authorization": given or ""})
        except Unauthenticated as exc:
            logger.info("websocket refused: %s", exc)
            raise ConnectionRejectionError() from exc
        context.scopes, context.caller = principal.scopes, principal.name
        return None

    @staticmethod
    def _upgrade_header(context: Context) -> str | None:
        header = getattr(context, "upgrade_authorization", None)
        return header if isinstance(header, str) else None


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
        body = await read_body(request, MAX_CALLBACK_BYTES)
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
