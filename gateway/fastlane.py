"""The fast lane: POST /graphql served without Starlette's routing and middleware.

An ASGI wrapper around the app. For `POST /graphql` it reads the headers and body itself,
authenticates, and looks the request up in the response cache; a hit is sent straight away
(with its request id, access log line and metrics). Anything else goes to the GraphQL endpoint
itself with the body replayed (or, for cross-origin requests and when tracing is on, through
the whole app), where every check runs again in full. The lane never refuses a request: what it
cannot serve (no key, a bad key, pass-through headers, no-cache, an unusual content type, a
large body) it simply passes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Authenticator
from gateway.endpoint import (
    GRAPHQL_RESPONSE,
    JSON,
    RequestError,
    RequestObserver,
    error_response,
    is_no_cache,
    negotiate,
    response_key,
)
from gateway.observability import AccessLog, RequestIds
from gateway.request_context import request_id
from gateway.response_cache import ResponseCache

logger = logging.getLogger(__name__)
MAX_LANE_BODY = 16 * 1024


class FastLane:
    """Serves response-cache hits for POST /graphql; passes everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        responses: ResponseCache,
        observer: RequestObserver,
        access_log: AccessLog,
        request_ids: RequestIds,
        endpoint: Callable[[Request], Awaitable[Response]] | None = None,
    ) -> None:
        self.app = app
        self.authenticator, self.responses = authenticator, responses
        self.observer, self.access_log, self.request_ids = observer, access_log, request_ids
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/graphql":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        body, complete = await _read(receive, headers)
        answer = self._cached(headers, body) if complete else None
        if answer is None:
            replayed = _replay(body, not complete, receive)
            if self.endpoint is None or b"origin" in headers:
                await self.app(scope, replayed, send)
            else:
                await self._direct(scope, replayed, send, headers, started)
            return
        payload, media_type, label = answer
        rid = self.request_ids.accept(headers.get(b"x-request-id"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        seconds = time.perf_counter() - started
        self.observer.response_cached()
        self.observer.request(label, "ok", seconds)
        self.access_log.write("POST", "/graphql", 200, seconds, rid)

    async def _direct(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        started: float,
    ) -> None:
        """The endpoint itself, without Starlette's routing and middleware in between."""
        assert self.endpoint is not None
        rid = self.request_ids.accept(headers.get(b"x-request-id"))
        token = request_id.set(rid)
        status = 500
        try:
            scope["app"] = self.app
            try:
                response = await self.endpoint(Request(scope, receive))
            except Exception:
                logger.exception("unexpected error serving POST /graphql")
                response = error_response(
                    RequestError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
                )
            status = response.status_code
            response.headers["x-request-id"] = rid
            await response(scope, receive, send)
        finally:
            self.access_log.write("POST", "/graphql", status, time.perf_counter() - started, rid)
            request_id.reset(token)

    def _cached(self, headers: dict[bytes, bytes], body: bytes) -> tuple[bytes, bytes, str] | None:
        if headers.get(b"content-type", b"").split(b";")[0].strip().lower() != JSON.encode():
            return None
        if is_no_cache(headers.get(b"cache-control", b"").decode("latin-1")):
            return None
        if b"x-plivo-auth-id" in headers or b"x-plivo-auth-token" in headers:
            return None
        if b"origin" in headers:  # CORS is the app's to answer
            return None
        try:
            accept = headers.get(b"accept")
            media_type = negotiate(accept.decode("latin-1") if accept is not None else None)
            principal = self.authenticator.principal(
                {"authorization": headers.get(b"authorization", b"").decode("latin-1")}
            )
        except Exception:  # a refusal: the app answers it in full
            return None
        cached = self.responses.get(response_key("POST", media_type, principal, None, body))
        if cached is None:
            return None
        encoded = (GRAPHQL_RESPONSE if media_type == GRAPHQL_RESPONSE else JSON).encode()
        return cached.body(time.time()), encoded, cached.label


_WANTED = frozenset(
    {
        b"authorization",
        b"content-type",
        b"content-length",
        b"accept",
        b"cache-control",
        b"x-plivo-auth-id",
        b"x-plivo-auth-token",
        b"x-request-id",
        b"origin",
    }
)


async def _read(receive: Receive, headers: dict[bytes, bytes]) -> tuple[bytes, bool]:
    """The body, and whether it is whole and small enough for the lane."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > MAX_LANE_BODY:
        return b"", False
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_LANE_BODY:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that gives what was read first, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed
