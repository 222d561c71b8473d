"""The front door: GET and POST /graphql go straight to GraphQL over HTTP.

An ASGI wrapper around the Starlette app. Requests for /graphql skip Starlette's routing and
middleware stack (a few dozen microseconds of a response-cache hit), keeping what matters of
it: a request id, an access-log line, and a masked 500 for a bug. Cross-origin requests (CORS
is the app's to answer), websockets, other paths and methods, and every request when tracing
is on, go through the whole app, which routes /graphql to the same transport. The door holds
no policy: the transport and the pipeline decide everything.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.observability import AccessLog, RequestIds
from gateway.request_context import request_id
from gateway.web.graphql_http import Reply, RequestError, error_reply

logger = logging.getLogger(__name__)
GRAPHQL_PATH = "/graphql"
MASKED = error_reply(RequestError(500, "INTERNAL_SERVER_ERROR", "Internal server error"))


class Replier(Protocol):
    """What answers /graphql: GraphQL over HTTP."""

    async def reply(self, scope: Scope, receive: Receive) -> Reply: ...


class FrontDoor:
    """Sends /graphql straight to `graphql` (None: never); everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        graphql: Replier | None,
        *,
        access_log: AccessLog,
        request_ids: RequestIds,
    ) -> None:
        self.app, self.graphql = app, graphql
        self.access_log, self.request_ids = access_log, request_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.graphql is None or scope["type"] != "http" or scope["path"] != GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":  # CORS is the app's to answer
                await self.app(scope, receive, send)
                return
            if name == b"x-request-id" and given is None:
                given = value
        if scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        # The transport's reply with a request id and an access-log line; a bug is a 500.
        started = time.perf_counter()
        rid = self.request_ids.accept(given)
        token = request_id.set(rid)
        status = 500
        try:
            try:
                reply = await self.graphql.reply(scope, receive)
            except Exception:
                logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
                reply = MASKED
            status = reply.status
            await reply.send(send, rid)
        finally:
            seconds = time.perf_counter() - started
            self.access_log.write(scope["method"], scope["path"], status, seconds, rid)
            request_id.reset(token)
