"""GraphQL over websockets (graphql-transport-ws): each `subscribe` is one pipeline operation.

Strawberry keeps the protocol (connection_init, ping, subscribe, complete, its timeouts and
the cap on operations in flight); every operation it receives goes to the pipeline, which
admits it (tokens, depth, aliases, cost) and runs it with a Context of its own, exactly as an
HTTP request's. A `subscribe` payload may name its document by hash instead of (or as well as)
its text: `documentId`, or APQ's `extensions.persistedQuery`; the whole payload reaches the
pipeline, so GATEWAY_ONLY_TRUSTED_DOCUMENTS holds here as over HTTP.

A message larger than GATEWAY_MAX_BODY_BYTES closes the socket (1009) before it is read as
JSON or GraphQL; a JSON message that is not an object with a string `type` closes it with 4400
(the protocol's code for a malformed message) before Strawberry sees it.

A websocket authenticates once, in `connection_init`: `{"Authorization": "Bearer <key>"}` in
its payload (browsers cannot set headers on a websocket) or the upgrade request's own
Authorization header; an unknown key closes it with 4403, and no `connection_init` within
GATEWAY_AUTH_TIMEOUT (pings or not) closes it with 4408. Operations then run with the key's
scopes and the configured Plivo credential.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UnsetType

from gateway.errors import Unauthenticated
from gateway.operations import Authenticator, Caller, Pipeline, Principal
from gateway.web.graphql_http import RequestError, params_from

logger = logging.getLogger(__name__)
MESSAGE_TOO_BIG = 1009  # RFC 6455
MALFORMED = 4400  # graphql-transport-ws: an invalid message


@dataclass
class Connection:
    """One websocket: the upgrade's Authorization, the init payload, the caller once accepted."""

    upgrade_authorization: str | None
    connection_params: dict[str, object] | None = None
    principal: Principal | None = None


@dataclass(frozen=True)
class Subscribe:
    """A `subscribe` message's whole payload, passed where Strawberry passes the query text."""

    payload: Mapping[str, object]


class _TransportWS(BaseGraphQLTransportWSHandler[Connection, None]):
    """Strawberry's graphql-transport-ws handler, handing the pipeline the whole payload
    (Strawberry reads only `query`, `variables` and `operationName`)."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = message["payload"]  # an object: MessageLimit closes the socket on anything else
        wrapped = {**payload, "query": cast("str", Subscribe(payload))}
        await super().handle_subscribe({**message, "payload": cast("Any", wrapped)})


class PipelineStreams:
    """What Strawberry's protocol handler calls its schema: every operation to the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def stream(
        self,
        query: object,
        variable_values: object = None,
        context_value: Connection | None = None,
        root_value: object = None,
        operation_name: object = None,
        **_: object,
    ) -> AsyncIterator[Any]:
        """The operation's results; its own Context is made by the pipeline."""
        principal = context_value.principal if context_value is not None else None
        if principal is None:  # Strawberry sends nothing before connection_ack
            raise RuntimeError("an operation before the connection was accepted")
        source: Mapping[str, object] = (
            query.payload
            if isinstance(query, Subscribe)
            else {"query": query, "variables": variable_values, "operationName": operation_name}
        )
        try:
            request = params_from(source, variables_encoded=False)
        except RequestError as exc:
            return _refused(exc)
        return self.pipeline.stream(request, Caller(principal))


async def _refused(exc: RequestError) -> AsyncIterator[Any]:
    yield PreExecutionError(
        data=None, errors=[GraphQLError(str(exc), extensions={"code": exc.code})]
    )


class Subscriptions(GraphQL[Connection, None]):
    """Strawberry's websocket transport, with our API keys and the pipeline behind it."""

    graphql_transport_ws_handler_class = _TransportWS

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        authenticator: Authenticator,
        origins: Sequence[str] = (),
        init_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            PipelineStreams(pipeline),  # type: ignore[arg-type]
            graphql_ide=None,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            # No accepted connection_init in time (GATEWAY_AUTH_TIMEOUT): closed, 4408.
            connection_init_wait_timeout=timedelta(seconds=init_timeout),
            max_subscriptions_per_connection=20,
            # Pages on other origins may open a websocket only when CORS allows them too.
            allowed_origins=origins,
        )
        self._authenticator = authenticator

    async def get_context(self, request: Request | WebSocket, response: Any) -> Connection:
        return Connection(request.headers.get("authorization"))

    async def on_ws_connect(self, context: Connection) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        given = params.get("Authorization") or params.get("authorization")
        if not isinstance(given, str):
            given = context.upgrade_authorization
        try:
            context.principal = self._authenticator.principal({"authorization": given or ""})
        except Unauthenticated as exc:
            logger.info("websocket refused: %s", exc)
            raise ConnectionRejectionError() from exc
        return None


class MessageLimit:
    """Closes a websocket on a message too large (1009) or malformed (4400), before Strawberry."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def limited() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            if _is_over(message, self.max_bytes):
                logger.info("websocket closed: a message over %d bytes", self.max_bytes)
                code, reason = MESSAGE_TOO_BIG, "too large"
            elif _is_malformed(message):
                logger.info("websocket closed: a message that is not a protocol message")
                code, reason = MALFORMED, "malformed message"
            else:
                return message
            await send({"type": "websocket.close", "code": code, "reason": reason})
            closed = True
            return {"type": "websocket.disconnect", "code": code}

        async def guarded(message: Message) -> None:
            if not closed:  # after our close, the app's own goodbye has nowhere to go
                await send(message)

        await self.app(scope, limited, guarded)


PROTOCOL_TYPES = frozenset(("connection_init", "ping", "pong", "subscribe", "complete"))
MAX_ID = 128  # characters of an operation id


def _is_malformed(message: Message) -> bool:
    """Anything but a graphql-transport-ws message of the right shape: a binary frame, text
    that is not JSON, a `type` the protocol does not have, an `id` or `payload` of the wrong
    type. Strawberry would close some of these with a reason built from the message (which a
    lone surrogate or a long type breaks) or fail on a payload that is not an object."""
    text = message.get("text")
    if text is None:
        return True  # a binary frame: the protocol is text only
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(parsed, dict) or parsed.get("type") not in PROTOCOL_TYPES:
        return True
    kind, payload = parsed["type"], parsed.get("payload")
    if kind in ("subscribe", "complete"):
        operation_id = parsed.get("id")
        if not isinstance(operation_id, str) or not 0 < len(operation_id) <= MAX_ID:
            return True
    if kind != "subscribe":
        return payload is not None and not isinstance(payload, dict)
    return not (
        isinstance(payload, dict)
        and _names_a_document(payload)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions"), dict | None)
    )


def _names_a_document(payload: dict[str, Any]) -> bool:
    """A query text, or a document id instead (its form is checked with the operation's)."""
    query, extensions = payload.get("query"), payload.get("extensions")
    if isinstance(query, str):
        return True
    by_hash = payload.get("documentId") is not None or (
        isinstance(extensions, dict) and extensions.get("persistedQuery") is not None
    )
    return query is None and by_hash


def _is_over(message: Message, limit: int) -> bool:
    data = message.get("bytes")
    if data is not None:
        return len(data) > limit
    text = message.get("text") or ""
    if len(text) > limit:  # every character is a byte at least
        return True
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit
