"""GraphQL over HTTP at /graphql: GET and POST per the GraphQL-over-HTTP spec, and GraphiQL.

A raw ASGI app: it reads the request once (headers, the body under its size limit), turns it
into operations for the pipeline, and the pipeline's results into bytes. Each step runs once
per request: the media type, the caller, the response-cache key and lookup. Requests that
cannot run get a 4xx and never a 500; everything that executed is HTTP 200 with `data` and
`errors` (failures before execution are 400 when the client accepts
application/graphql-response+json).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import (
    BadCredentialHeaders,
    Forbidden,
    GatewayError,
    LimitExceeded,
    OperationNotAllowed,
    Throttled,
    Unauthenticated,
)
from gateway.operations import (
    QUERIES,
    QUERIES_AND_MUTATIONS,
    Authenticator,
    Caller,
    OperationRequest,
    PersistedQueryError,
    Pipeline,
    Principal,
    pass_through,
    requested_id,
    response_scope,
)
from gateway.plivo.credentials import Credential
from gateway.schema.errors import gateway_error_extensions
from gateway.web.bodies import read_body
from gateway.web.http_caching import (
    NO_STORE,
    PAGE,
    Fields,
    Reusable,
    executed,
    matches,
    validated,
)

if TYPE_CHECKING:
    from gateway.operations.response_cache import CachedResponse

logger = logging.getLogger(__name__)
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class RequestError(Exception):
    """The HTTP request cannot be run as a GraphQL operation."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extensions: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status, self.code = status, code
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})
        super().__init__(message)


@dataclass(slots=True)
class Reply:
    """A whole HTTP response, sent as two raw ASGI messages; `no-store` unless it says more.

    A 304 has no content, and so no Content-Type or Content-Length (RFC 9110 15.4.5).
    """

    status: int
    body: bytes
    media_type: str = JSON
    headers: Fields = NO_STORE  # raw header fields, names lowercased

    def start(self, request_id: str | None = None) -> Message:
        """The `http.response.start` message; `request_id` adds X-Request-ID."""
        if self.status == 304:
            raw = list(self.headers)
        else:
            raw = [
                (b"content-type", self.media_type.encode()),
                (b"content-length", str(len(self.body)).encode()),
                *self.headers,
            ]
        if request_id is not None:
            raw.append((b"x-request-id", request_id.encode()))
        return {"type": "http.response.start", "status": self.status, "headers": raw}

    async def send(self, send: Send, request_id: str | None = None) -> None:
        """Send it; `request_id` adds X-Request-ID."""
        await send(self.start(request_id))
        await send({"type": "http.response.body", "body": self.body})


class RequestObserver(Protocol):
    """Hears about every GraphQL request (metrics implement it)."""

    def request(self, operation: str, outcome: str, seconds: float) -> None: ...

    def response_cached(self) -> None: ...


class GraphQLHTTP:
    """Serves the pipeline at /graphql over HTTP (an ASGI app)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        authenticator: Authenticator,
        max_body_bytes: int,
        observer: RequestObserver,
        graphiql_html: str | None,
        clock: Callable[[], float] = time.time,
        changing_max_age: float = math.inf,
    ) -> None:
        self.pipeline, self.authenticator = pipeline, authenticator
        self.max_body_bytes, self.observer = max_body_bytes, observer
        self.graphiql_html = graphiql_html
        self.clock = clock  # wall-clock seconds: copies' ages and what freshness is left
        # The most a browser or CDN may keep an answer with a session that may still change:
        # the gateway forgets its copy when told of a change (a mutation, a callback); they
        # are never told. (It may keep one longer: under load, or with callbacks on.)
        self.changing_max_age = changing_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self.reply(scope, receive)).send(send)

    async def reply(self, scope: Scope, receive: Receive) -> Reply:
        """The reply to one request."""
        started = time.perf_counter()
        operation, outcome = "-", "ok"
        try:
            headers = _headers(scope)
            method = scope["method"]
            if self._wants_graphiql(method, scope, headers):
                assert self.graphiql_html is not None
                return Reply(200, self.graphiql_html.encode(), "text/html; charset=utf-8", PAGE)
            media_type = negotiate(headers.get("accept"))
            principal, credential = self._caller(headers)
            raw = (
                scope.get("query_string", b"")
                if method == "GET"
                else await self._body(headers, receive)
            )
            refresh = is_no_cache(headers.get("cache-control", ""))
            key_scope = response_scope(method, media_type, principal, credential)
            key = None if refresh else key_scope + raw
            cached = self.pipeline.cached(key)
            if cached is not None:
                operation = cached.label
                self.observer.response_cached()
                if method != "GET":
                    return Reply(200, cached.body(self.clock()), media_type)
                return self._kept(cached, media_type, headers, credential)
            payload = _payload(method, raw)
            items = payload if isinstance(payload, list) else [payload]
            requests = [_operation(item, method) for item in items]
            caller = Caller(principal, credential, refresh, headers.get("idempotency-key"))
            allowed = QUERIES if method == "GET" else QUERIES_AND_MUTATIONS
            answer = await self.pipeline.run(
                requests, caller, allowed, cache_key=None if isinstance(payload, list) else key
            )
            operation, outcome = answer.results[0].label, answer.outcome
            if isinstance(payload, list):
                return json_response([r.body for r in answer.results], 200, media_type)
            result = answer.results[0]
            status = 400 if result.request_error and media_type == GRAPHQL_RESPONSE else 200
            reusable = executed(result, key_scope) if method == "GET" and status == 200 else None
            if reusable is not None:
                return self._reusable(reusable, media_type, headers, credential)
            if result.encoded is not None:
                return Reply(status, result.encoded, media_type)
            return json_response(result.body, status, media_type)
        except GatewayError as exc:
            error = refused(exc, scope["method"])
            outcome = error.code
            return error_reply(error)
        except RequestError as exc:
            outcome = exc.code
            return error_reply(exc)
        finally:
            self.observer.request(operation, outcome, time.perf_counter() - started)

    def _kept(
        self,
        cached: CachedResponse,
        media_type: str,
        headers: Mapping[str, str],
        credential: Credential | None,
    ) -> Reply:
        """A GET's response-cache hit, with its ETag (made when kept), or a 304 of it."""
        now = self.clock()
        private = self.authenticator.required or credential is not None  # a key or credential
        most = self.changing_max_age if cached.changing else math.inf
        fields = validated(cached.etag, cached.fresh_until, now, private=private, most=most)
        if matches(headers.get("if-none-match"), cached.etag):
            return Reply(304, b"", media_type, fields)
        return Reply(200, cached.body(now), media_type, fields)

    def _reusable(
        self,
        reusable: Reusable,
        media_type: str,
        headers: Mapping[str, str],
        credential: Credential | None,
    ) -> Reply:
        """An executed GET answer that caches may keep: with its ETag, or a 304 of it."""
        private = self.authenticator.required or credential is not None
        most = self.changing_max_age if reusable.changing else math.inf
        fields = validated(reusable.etag, reusable.until, self.clock(), private=private, most=most)
        if matches(headers.get("if-none-match"), reusable.etag):
            return Reply(304, b"", media_type, fields)
        return Reply(200, reusable.content, media_type, fields)

    def _wants_graphiql(self, method: str, scope: Scope, headers: Mapping[str, str]) -> bool:
        return (
            self.graphiql_html is not None
            and method == "GET"
            and not _PARAMS & _payload(method, scope.get("query_string", b"")).keys()
            and "text/html" in headers.get("accept", "")
        )

    def _caller(self, headers: Mapping[str, str]) -> tuple[Principal, Credential | None]:
        principal = self.authenticator.principal(headers)
        return principal, pass_through(headers, principal)

    async def _body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            raise RequestError(415, "BAD_REQUEST", "POST bodies must be application/json")
        body = await read_body(receive, headers.get("content-length"), self.max_body_bytes)
        if body is None:
            extensions = {"limit": "body", "maximum": self.max_body_bytes}
            raise RequestError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"the request body is over {self.max_body_bytes} bytes",
                extensions=extensions,
            )
        return body


# What a GET names a document by: with none of them, a browser is given GraphiQL.
_PARAMS = frozenset(("query", "documentId", "extensions"))
# The request headers the transport reads; names arrive lowercased.
_WANTED = {
    name.encode(): name
    for name in (
        "accept",
        "authorization",
        "cache-control",
        "content-length",
        "content-type",
        "idempotency-key",
        "if-none-match",
        "x-plivo-auth-id",
        "x-plivo-auth-token",
    )
}


def _headers(scope: Scope) -> dict[str, str]:
    """The headers the transport reads; the first of a repeated header counts."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = _WANTED.get(name)
        if key is not None and key not in found:
            found[key] = value.decode("latin-1")
    return found


def refused(exc: GatewayError, method: str) -> RequestError:
    """A refusal before execution as an HTTP error, per the contract's table."""
    extensions = gateway_error_extensions(exc)
    code = str(extensions.pop("code"))
    headers: dict[str, str] = {}
    status = 400
    if isinstance(exc, Unauthenticated):
        status, headers = 401, {"WWW-Authenticate": 'Bearer realm="plivo-verify-gateway"'}
    elif isinstance(exc, Forbidden):
        status = 200
    elif isinstance(exc, Throttled):
        status, headers = 429, retry_after_header(exc.retry_after)
    elif isinstance(exc, OperationNotAllowed) and method == "GET":
        status, headers = 405, {"Allow": "POST"}
    elif not isinstance(exc, LimitExceeded | BadCredentialHeaders | OperationNotAllowed):
        logger.error("unexpected refusal %s", type(exc).__name__, exc_info=exc)
        return RequestError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
    return RequestError(status, code, str(exc), extensions=extensions, headers=headers)


def _payload(method: str, raw: bytes) -> Any:
    if method == "GET":
        return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
    try:
        payload = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise RequestError(400, "BAD_REQUEST", "the body is not valid JSON") from exc
    if isinstance(payload, list) and not payload:
        raise RequestError(400, "BAD_REQUEST", "a batch needs at least one operation")
    return payload


def _operation(item: object, method: str) -> OperationRequest:
    if not isinstance(item, dict):
        raise RequestError(400, "BAD_REQUEST", "each operation must be a JSON object")
    return params_from(item, variables_encoded=method == "GET")


def params_from(source: Mapping[str, Any], *, variables_encoded: bool) -> OperationRequest:
    """Check the types of `query`, `variables`, `operationName`, `extensions`, and the document
    id (`documentId` or APQ's `extensions.persistedQuery`), which must hash `query` if both come.
    """
    query = source.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestError(400, "BAD_REQUEST", "query must be a non-empty string")
    query = query if query and query.strip() else None
    extensions = _json_object(source.get("extensions"), "extensions", encoded=variables_encoded)
    try:
        document_id = requested_id(source.get("documentId"), extensions, query)
    except PersistedQueryError as exc:
        raise RequestError(400, exc.code, str(exc)) from exc
    if query is None and document_id is None:
        raise RequestError(400, "BAD_REQUEST", "query must be a non-empty string")
    variables = _json_object(source.get("variables"), "variables", encoded=variables_encoded)
    operation_name = source.get("operationName") or None
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, "BAD_REQUEST", "operationName must be a string")
    return OperationRequest(query, variables, operation_name, document_id)


def _json_object(value: object, name: str, *, encoded: bool) -> dict[str, Any] | None:
    """A JSON object, or None when absent or empty; `encoded`: a GET's JSON text of one."""
    if encoded and isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, "BAD_REQUEST", f"{name} must be a JSON object") from exc
    if value in ("", None):
        return None
    if not isinstance(value, dict):
        raise RequestError(400, "BAD_REQUEST", f"{name} must be a JSON object")
    return value


def negotiate(accept: str | None) -> str:
    """The response media type: graphql-response+json when accepted, else application/json."""
    if not accept:
        return JSON
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if GRAPHQL_RESPONSE in ranges:
        return GRAPHQL_RESPONSE
    if JSON in ranges or "*/*" in ranges or "application/*" in ranges:
        return JSON
    raise RequestError(406, "BAD_REQUEST", f"responses are {GRAPHQL_RESPONSE} or {JSON}")


def json_response(body: object, status: int = 200, media_type: str = JSON) -> Reply:
    """A JSON reply of `body`."""
    try:
        content = orjson.dumps(body)
    except TypeError:  # a lone surrogate, say, echoed from the request: escape it instead
        content = json.dumps(body, separators=(",", ":")).encode()
    return Reply(status, content, media_type)


def is_no_cache(cache_control: str) -> bool:
    """Whether a Cache-Control value holds the no-cache directive."""
    return any(part.strip() == "no-cache" for part in cache_control.lower().split(","))


def error_reply(error: RequestError) -> Reply:
    """A request-level error in the GraphQL response shape."""
    extensions = {"code": error.code, **error.extensions}
    body = {"errors": [{"message": str(error), "extensions": extensions}]}
    reply = json_response(body, error.status)
    fields = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    reply.headers = (*NO_STORE, *fields)
    return reply


def retry_after_header(seconds: float) -> dict[str, str]:
    """A Retry-After header in whole seconds, rounded up."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
