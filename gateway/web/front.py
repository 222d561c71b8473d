"""The front door: every request and websocket, counted per client; /graphql straight through.

An ASGI wrapper around the Starlette app. It counts what each client address holds open
(requests in flight and websockets; the probes are not counted, so that they always get
through) and refuses one more beyond the limit; it gives a request body a deadline. Requests
for /graphql skip Starlette's routing and middleware stack (a few dozen microseconds of a
response-cache hit), keeping what matters of it: a request id, an access-log line, and a
masked 500 for a bug. Cross-origin requests (CORS is the app's to answer), websockets, other
paths and methods, and every request when tracing is on, go through the whole app, which
routes /graphql to the same transport. The transport and the pipeline decide everything else.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.observability import AccessLog, RequestIds
from gateway.request_context import request_id
from gateway.web.connections import ClientConnections, over_limit, refuse
from gateway.web.deadlines import BodyDeadline
from gateway.web.graphql_http import Reply, RequestError, error_reply

logger = logging.getLogger(__name__)
GRAPHQL_PATH = "/graphql"
UNCOUNTED = frozenset({"/healthz", "/readyz", "/metrics"})  # a probe must get through
MASKED = error_reply(RequestError(500, "INTERNAL_SERVER_ERROR", "Internal server error"))
CLIENT_GONE = 499  # the access log's status of a request its client left (nginx's)


class Replier(Protocol):
    """What answers /graphql: GraphQL over HTTP."""

    async def reply(self, scope: Scope, receive: Receive) -> Reply: ...


class FrontDoor:
    """Sends /graphql straight to `graphql` (None: never); everything else to `app`.

    `connections` (None: no limit) counts each client's requests and websockets;
    `body_timeout` is how long a request body may take to arrive whole.
    """

    def __init__(
        self,
        app: ASGIApp,
        graphql: Replier | None,
        *,
        access_log: AccessLog,
        request_ids: RequestIds,
        body_timeout: float = 10.0,
        connections: ClientConnections | None = None,
    ) -> None:
        self.app, self.graphql = app, graphql
        self.access_log, self.request_ids = access_log, request_ids
        self.body_timeout = body_timeout
        self.connections = connections if connections is not None and connections.limit else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        address = self._counted(scope)
        if address is None:
            await self._serve(scope, receive, send)
            return
        assert self.connections is not None
        if not self.connections.enter(address):
            await refuse(scope, receive, send, over_limit(self.connections.limit))
            return
        try:
            await self._serve(scope, receive, send)
        finally:
            self.connections.leave(address)

    def _counted(self, scope: Scope) -> str | None:
        """The client address this request counts against; None: not counted."""
        if self.connections is None or scope["path"] in UNCOUNTED:
            return None
        client = scope.get("client")
        return str(client[0]) if client else None  # no address (a unix socket): not counted

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, cross_origin, has_body = _scan(scope["headers"])
        deadline = BodyDeadline(receive, send, self.body_timeout) if has_body else None
        try:
            if (
                self.graphql is None
                or cross_origin  # CORS is the app's to answer
                or scope["path"] != GRAPHQL_PATH
                or scope["method"] not in ("GET", "POST")
            ):
                await self._app(scope, receive, send, deadline)
            else:
                await self._graphql(self.graphql, scope, receive, send, given, deadline)
        finally:
            if deadline is not None:
                deadline.close()

    async def _app(
        self, scope: Scope, receive: Receive, send: Send, deadline: BodyDeadline | None
    ) -> None:
        if deadline is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, deadline.receive, deadline.send)
        except ClientDisconnect:
            if not deadline.expired:
                raise
        await deadline.answer_late()

    async def _graphql(
        self,
        graphql: Replier,
        scope: Scope,
        receive: Receive,
        send: Send,
        given: bytes | None,
        deadline: BodyDeadline | None,
    ) -> None:
        """The transport's reply with a request id and an access-log line; a bug is a 500."""
        started = time.perf_counter()
        rid = self.request_ids.accept(given)
        token = request_id.set(rid)
        status = 500
        try:
            try:
                reply = await graphql.reply(
                    scope, receive if deadline is None else deadline.receive
                )
            except ClientDisconnect:  # the client left, or its body came too late
                reply = None
            except Exception:
                logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
                reply = MASKED
            if deadline is not None and deadline.expired:
                await deadline.answer_late(rid)
                status = 408
            elif reply is None:
                status = CLIENT_GONE
            else:
                status = reply.status
                if deadline is not None and not deadline.complete:
                    send = deadline.send  # the body not read whole: the connection closes
                await reply.send(send, rid)
        finally:
            seconds = time.perf_counter() - started
            self.access_log.write(scope["method"], scope["path"], status, seconds, rid)
            request_id.reset(token)


def _scan(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bool, bool]:
    """The X-Request-ID given, whether the request is cross-origin, whether it has a body."""
    given: bytes | None = None
    cross_origin = has_body = False
    for name, value in headers:
        if name == b"content-length":
            has_body = value.strip(b" 0") != b""
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"origin":
            cross_origin = True
        elif name == b"x-request-id" and given is None:
            given = value
    return given, cross_origin, has_body
