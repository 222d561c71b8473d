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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability import AccessLog, RequestContextMiddleware, RequestIds
from gateway.web.graphql_http import RequestError, error_response

logger = logging.getLogger(__name__)
GRAPHQL_PATH = "/graphql"


class FrontDoor:
    """Routes /graphql directly (`graphql` None: never); everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        graphql: ASGIApp | None,
        *,
        access_log: AccessLog,
        request_ids: RequestIds,
    ) -> None:
        self.app = app
        self.direct = (
            RequestContextMiddleware(Masked(graphql), None, access_log, request_ids)
            if graphql is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.direct is not None
            and scope["type"] == "http"
            and scope["path"] == GRAPHQL_PATH
            and scope["method"] in ("GET", "POST")
            and not any(name == b"origin" for name, _ in scope["headers"])
        ):
            await self.direct(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Masked:
    """A bug below becomes a logged traceback and a masked 500, never a dropped connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if started:
                raise
            masked = RequestError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
            await error_response(masked)(scope, receive, send)
