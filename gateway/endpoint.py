"""GraphQL over HTTP: GET and POST /graphql per the GraphQL-over-HTTP spec, and GraphiQL.

Requests that cannot be run get a 4xx with `BAD_REQUEST`-style codes and never a 500;
everything that executed is HTTP 200 with `data` and `errors` (validation failures are 400
when the client accepts application/graphql-response+json).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

logger = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = 1 << 20


class RequestError(Exception):
    """The HTTP request cannot be run as a GraphQL operation."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code = status, code
        super().__init__(message)


@dataclass(frozen=True)
class GraphQLParams:
    """One GraphQL request, read from a query string or a JSON body."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


class GraphQLEndpoint:
    """Serves one schema at /graphql; `context` builds each request's context value."""

    def __init__(
        self,
        schema: strawberry.Schema,
        context: Callable[[Request], object],
        *,
        graphiql_html: str | None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.schema = schema
        self.context = context
        self.graphiql_html = graphiql_html
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        """The Starlette endpoint for /graphql."""
        try:
            if self._wants_graphiql(request):
                assert self.graphiql_html is not None
                return HTMLResponse(self.graphiql_html)
            media_type = negotiate(request.headers.get("accept"))
            params = await self._read(request)
            return await self._execute(request, params, media_type)
        except RequestError as exc:
            return error_response(exc.status, exc.code, str(exc))

    def _wants_graphiql(self, request: Request) -> bool:
        return (
            self.graphiql_html is not None
            and request.method == "GET"
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        )

    async def _read(self, request: Request) -> GraphQLParams:
        if request.method == "GET":
            return params_from(request.query_params, variables_encoded=True)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            raise RequestError(415, "BAD_REQUEST", "POST bodies must be application/json")
        body = await self._body(request)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, "BAD_REQUEST", "the body is not valid JSON") from exc
        if isinstance(payload, list):
            raise RequestError(400, "BAD_REQUEST", "batched operations are not supported")
        if not isinstance(payload, dict):
            raise RequestError(400, "BAD_REQUEST", "the body must be a JSON object")
        return params_from(payload, variables_encoded=False)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _execute(self, request: Request, params: GraphQLParams, media_type: str) -> Response:
        allowed = {OperationType.QUERY}
        if request.method == "POST":
            allowed.add(OperationType.MUTATION)
        try:
            result = await self.schema.execute(
                params.query,
                variable_values=params.variables,
                context_value=self.context(request),
                operation_name=params.operation_name,
                allowed_operation_types=allowed,
            )
        except MissingQueryError as exc:
            raise RequestError(400, "BAD_REQUEST", "the request has no query") from exc
        except CannotGetOperationTypeError as exc:
            raise RequestError(400, "BAD_REQUEST", "no operation with that name") from exc
        except InvalidOperationTypeError as exc:
            if request.method == "GET":
                raise RequestError(405, "BAD_REQUEST", "only queries may be sent with GET") from exc
            raise RequestError(400, "BAD_REQUEST", "subscriptions need a websocket") from exc
        status = 200
        if is_request_error(result) and media_type == GRAPHQL_RESPONSE:
            status = 400
        return json_response(render(result), status, media_type)


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
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code=status, media_type=media_type)


def error_response(status: int, code: str, message: str) -> Response:
    """A request-level error in the GraphQL response shape."""
    return json_response({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


def _too_large(limit: int) -> RequestError:
    return RequestError(413, "PAYLOAD_TOO_LARGE", f"the request body is over {limit} bytes")
