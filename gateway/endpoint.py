"""GraphQL over HTTP: GET and POST /graphql per the GraphQL-over-HTTP spec, and GraphiQL.

Before anything runs: the API key (401), pass-through headers (FORBIDDEN / 400), the body
size (413), batch size and document limits (400). Requests that cannot run get a 4xx and
never a 500; everything that executed is HTTP 200 with `data` and `errors` (failures before
execution are 400 when the client accepts application/graphql-response+json).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from gateway.auth import Authenticator, Principal, pass_through
from gateway.errors import BadCredentialHeaders, Forbidden, LimitExceeded, Unauthenticated
from gateway.limits import DocumentChecker, QueryLimits
from gateway.plivo.client import Credential
from gateway.response_cache import ResponseCache
from gateway.schema.context import Context
from gateway.schema.fastpath import FastPath

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


@dataclass(frozen=True)
class GraphQLParams:
    """One GraphQL request, read from a query string or a JSON body."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    label: str | None = None  # the document's own operation name, for metrics

    @property
    def metric_name(self) -> str:
        """What metrics call this operation."""
        return self.operation_name or self.label or "anonymous"


@dataclass(frozen=True)
class EndpointLimits:
    """What one HTTP request may carry."""

    query: QueryLimits = field(default_factory=QueryLimits)
    max_body_bytes: int = 65_536
    max_batch: int = 10


class RequestObserver(Protocol):
    """Hears about every GraphQL request (metrics implement it)."""

    def request(self, operation: str, outcome: str, seconds: float) -> None: ...

    def response_cached(self) -> None: ...


ContextFactory = Callable[[Request, Principal, Credential | None], Context]


class GraphQLEndpoint:
    """Serves one schema at /graphql."""

    def __init__(
        self,
        schema: strawberry.Schema,
        context: ContextFactory,
        *,
        authenticator: Authenticator,
        limits: EndpointLimits,
        observer: RequestObserver,
        graphiql_html: str | None,
        responses: ResponseCache | None = None,
    ) -> None:
        self.schema, self.context = schema, context
        self.authenticator, self.limits = authenticator, limits
        self.observer, self.graphiql_html = observer, graphiql_html
        self.fast = FastPath(schema._schema)
        self.documents = DocumentChecker(limits.query)
        self.responses = responses if responses is not None else ResponseCache(0)

    async def handle(self, request: Request) -> Response:
        """The Starlette endpoint for /graphql."""
        started = time.perf_counter()
        operation, outcome = "-", "ok"
        try:
            if self._wants_graphiql(request):
                assert self.graphiql_html is not None
                return HTMLResponse(self.graphiql_html)
            media_type = negotiate(request.headers.get("accept"))
            principal, credential = self._caller(request)
            raw = await self._raw(request)
            key = (
                None
                if wants_refresh(request)
                else response_key(request.method, media_type, principal, credential, raw)
            )
            cached = self.responses.get(key) if key is not None else None
            if cached is not None:
                operation = cached.label
                self.observer.response_cached()
                return Response(cached.body(time.time()), media_type=media_type)
            payload = self._payload(request, raw)
            batch = payload if isinstance(payload, list) else [payload]
            operations = [self._checked(item, request.method) for item in batch]
            operation = operations[0].metric_name
            context = self.context(request, principal, credential)
            bodies = [await self._execute(request, op, context) for op in operations]
            outcome = _outcome(bodies)
            if isinstance(payload, list):
                return json_response([body for body, _ in bodies], 200, media_type)
            body, request_failed = bodies[0]
            if key is not None and _is_cacheable(body, context):
                return self._kept(key, body, context, operation, media_type)
            status = 400 if request_failed and media_type == GRAPHQL_RESPONSE else 200
            return json_response(body, status, media_type)
        except RequestError as exc:
            outcome = exc.code
            return error_response(exc)
        finally:
            self.observer.request(operation, outcome, time.perf_counter() - started)

    def _kept(
        self, key: bytes, body: dict[str, Any], context: Context, label: str, media_type: str
    ) -> Response:
        """The response, its `data` serialised once for the client and the response cache."""
        try:
            data = orjson.dumps(body["data"])
        except TypeError:  # what orjson cannot encode is not kept; json_response escapes it
            return json_response(body, 200, media_type)
        self.responses.put(key, body["data"], context.freshness, label, encoded=data)
        rest = {k: v for k, v in body.items() if k != "data"}
        content = b'{"data":' + data + (b"," + orjson.dumps(rest)[1:] if rest else b"}")
        return Response(content, status_code=200, media_type=media_type)

    def _wants_graphiql(self, request: Request) -> bool:
        return (
            self.graphiql_html is not None
            and request.method == "GET"
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        )

    def _caller(self, request: Request) -> tuple[Principal, Credential | None]:
        try:
            principal = self.authenticator.principal(request.headers)
            return principal, pass_through(request.headers, principal)
        except Unauthenticated as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="plivo-verify-gateway"'}
            raise RequestError(401, "UNAUTHENTICATED", str(exc), headers=headers) from exc
        except Forbidden as exc:
            raise RequestError(200, "FORBIDDEN", str(exc)) from exc
        except BadCredentialHeaders as exc:
            raise RequestError(400, "BAD_REQUEST", str(exc)) from exc

    async def _raw(self, request: Request) -> bytes:
        """The request as sent: the body of a POST, the query string of a GET."""
        if request.method == "GET":
            query_string: bytes = request.scope.get("query_string", b"")
            return query_string
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            raise RequestError(415, "BAD_REQUEST", "POST bodies must be application/json")
        return await self._body(request)

    def _payload(self, request: Request, raw: bytes) -> object:
        if request.method == "GET":
            return dict(request.query_params)
        try:
            payload = orjson.loads(raw)
        except (orjson.JSONDecodeError, RecursionError) as exc:
            raise RequestError(400, "BAD_REQUEST", "the body is not valid JSON") from exc
        if isinstance(payload, list):
            if not payload:
                raise RequestError(400, "BAD_REQUEST", "a batch needs at least one operation")
            if len(payload) > self.limits.max_batch:
                raise RequestError(
                    400,
                    "BATCH_TOO_LARGE",
                    f"a batch may hold at most {self.limits.max_batch} operations",
                    extensions={"limit": "batch", "maximum": self.limits.max_batch},
                )
        return payload

    async def _body(self, request: Request) -> bytes:
        body = await read_body(request, self.limits.max_body_bytes)
        if body is None:
            raise _too_large(self.limits.max_body_bytes)
        return body

    def _checked(self, item: object, method: str) -> GraphQLParams:
        if not isinstance(item, dict):
            raise RequestError(400, "BAD_REQUEST", "each operation must be a JSON object")
        params = params_from(item, variables_encoded=method == "GET")
        try:
            name = self.documents.check(params.query)
        except LimitExceeded as exc:
            extensions = {"limit": exc.limit, "maximum": exc.maximum}
            raise RequestError(400, "QUERY_TOO_COMPLEX", str(exc), extensions=extensions) from exc
        return params if params.operation_name or name is None else replace(params, label=name)

    async def _execute(
        self, request: Request, params: GraphQLParams, context: Context
    ) -> tuple[dict[str, Any], bool]:
        fast = await self.fast.run(params.query, params.variables, params.operation_name, context)
        if fast is not None:
            body: dict[str, Any] = {"data": fast.data}
            if fast.errors:
                body["errors"] = fast.errors
            if context.cache_report:
                body["extensions"] = {"cache": dict(context.cache_report)}
            return body, False
        allowed = {OperationType.QUERY}
        if request.method == "POST":
            allowed.add(OperationType.MUTATION)
        try:
            result = await self.schema.execute(
                params.query,
                variable_values=params.variables,
                context_value=context,
                operation_name=params.operation_name,
                allowed_operation_types=allowed,
            )
        except MissingQueryError as exc:
            raise RequestError(400, "BAD_REQUEST", "the request has no query") from exc
        except CannotGetOperationTypeError as exc:
            raise RequestError(400, "BAD_REQUEST", "no operation with that name") from exc
        except InvalidOperationTypeError as exc:
            if request.method == "GET":
                headers = {"Allow": "POST"}
                raise RequestError(
                    405, "BAD_REQUEST", "only queries may be sent with GET", headers=headers
                ) from exc
            raise RequestError(400, "BAD_REQUEST", "subscriptions need a websocket") from exc
        return render(result), is_request_error(result)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it declares or streams more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def params_from(source: Mapping[str, Any], *, variables_encoded: bool) -> GraphQLParams:
    """Check the types of `query`, `variables` and `operationName`."""
    query = source.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, "BAD_REQUEST", "query must be a non-empty string")
    variables = source.get("variables")
    if variables_encoded and isinstance(variables, str) and variables:
        try:
            variables = json.loads(variables)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, "BAD_REQUEST", "variables must be a JSON object") from exc
    if variables in ("", None):
        variables = None
    elif not isinstance(variables, dict):
        raise RequestError(400, "BAD_REQUEST", "variables must be a JSON object")
    operation_name = source.get("operationName") or None
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, "BAD_REQUEST", "operationName must be a string")
    return GraphQLParams(query, variables, operation_name)


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


def is_request_error(result: ExecutionResult) -> bool:
    """Failed before execution began: parsing, validation or coercing variables."""
    if isinstance(result, PreExecutionError):
        return True
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def render(result: ExecutionResult) -> dict[str, Any]:
    """The response body; `data` is absent when the request failed before execution."""
    body: dict[str, Any] = {}
    if not is_request_error(result):
        body["data"] = result.data
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        body["extensions"] = result.extensions
    return body


def json_response(body: object, status: int = 200, media_type: str = JSON) -> Response:
    """A JSON response of `body`."""
    try:
        content = orjson.dumps(body)
    except TypeError:  # a lone surrogate, say, echoed from the request: escape it instead
        content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=media_type)


def wants_refresh(request: Request) -> bool:
    """`Cache-Control: no-cache` asks for a copy fresh from Plivo."""
    return is_no_cache(request.headers.get("cache-control", ""))


def is_no_cache(cache_control: str) -> bool:
    """Whether a Cache-Control value holds the no-cache directive."""
    return any(part.strip() == "no-cache" for part in cache_control.lower().split(","))


def response_key(
    method: str, media_type: str, principal: Principal, credential: Credential | None, raw: bytes
) -> bytes:
    """The response cache's key: caller, credential digest, method, media type, request."""
    caller = principal.name if credential is None else f"{principal.name}:{credential.digest}"
    return f"{method}\n{media_type}\n{caller}\n".encode() + raw


def _is_cacheable(body: dict[str, Any], context: Context) -> bool:
    """No errors, and every session in it was a fresh copy."""
    if context.mutated:
        return False
    return "errors" not in body and len(context.freshness) == len(context.cache_report) > 0


def error_response(error: RequestError) -> Response:
    """A request-level error in the GraphQL response shape."""
    extensions = {"code": error.code, **error.extensions}
    body = {"errors": [{"message": str(error), "extensions": extensions}]}
    response = json_response(body, error.status)
    response.headers.update(error.headers)
    return response


def retry_after_header(seconds: float) -> dict[str, str]:
    """A Retry-After header in whole seconds, rounded up."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _outcome(bodies: list[tuple[dict[str, Any], bool]]) -> str:
    for body, _ in bodies:
        for error in body.get("errors", []):
            code = error.get("extensions", {}).get("code")
            return str(code) if code else "error"
    return "ok"


def _too_large(limit: int) -> RequestError:
    extensions = {"limit": "body", "maximum": limit}
    return RequestError(
        413, "PAYLOAD_TOO_LARGE", f"the request body is over {limit} bytes", extensions=extensions
    )
