"""The error contract: every GraphQL error leaves with a stable `extensions.code`.

Errors we raised on purpose are translated by the table below; anything else is a bug,
masked for the client and logged with its traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from gateway.errors import (
    NOT_SENT_PATH,
    BadCredentialHeaders,
    BatchTooLarge,
    CostExceeded,
    Forbidden,
    GatewayError,
    IdempotencyConflict,
    InvalidInput,
    LimitExceeded,
    OperationNotAllowed,
    OperationNotSelected,
    StateUnavailable,
    Throttled,
    Unauthenticated,
    UpstreamError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"
_SUGGESTION = re.compile(r"\s*Did you mean\b.*$", re.DOTALL)
_REJECTED_CODES = {401: "UPSTREAM_UNAUTHENTICATED", 403: "UPSTREAM_FORBIDDEN"}


def gateway_error_extensions(error: GatewayError) -> dict[str, object]:
    """The `extensions` a client sees for an error we raised on purpose."""
    if isinstance(error, InvalidInput):
        return {"code": "BAD_USER_INPUT"}
    if isinstance(error, LimitExceeded):
        return _limit_extensions(error)
    if isinstance(error, OperationNotSelected | OperationNotAllowed | BadCredentialHeaders):
        return {"code": "BAD_REQUEST"}
    if isinstance(error, Unauthenticated):
        return {"code": "UNAUTHENTICATED"}
    if isinstance(error, Throttled):
        return {"code": "RATE_LIMITED", "retryAfter": error.retry_after}
    if isinstance(error, StateUnavailable):
        return {"code": "STATE_UNAVAILABLE", "retryAfter": error.retry_after}
    if isinstance(error, IdempotencyConflict):
        if error.retry_after is None:
            return {"code": "CONFLICT"}
        return {"code": "CONFLICT", "retryAfter": error.retry_after}
    if isinstance(error, Forbidden):
        return {"code": "FORBIDDEN"}
    if isinstance(error, UpstreamRateLimited):
        extensions: dict[str, object] = {"code": "RATE_LIMITED"}
        if error.retry_after is not None:
            extensions["retryAfter"] = error.retry_after
        return extensions
    if isinstance(error, UpstreamRejected):
        code = _REJECTED_CODES.get(error.status_code, "UPSTREAM_REJECTED")
        return {"code": code, "upstreamStatus": error.status_code}
    if isinstance(error, UpstreamFailed):
        if error.status_code is not None and error.status_code >= 500:
            return {"code": "UPSTREAM_ERROR", "upstreamStatus": error.status_code}
        return {"code": "UPSTREAM_ERROR"}
    if isinstance(error, UpstreamTimeout):
        return {"code": "UPSTREAM_TIMEOUT"}
    if isinstance(error, UpstreamUnavailable):
        return {"code": "UPSTREAM_UNAVAILABLE"}
    return {"code": "INTERNAL_SERVER_ERROR"}


def _limit_extensions(error: LimitExceeded) -> dict[str, object]:
    if isinstance(error, BatchTooLarge):
        return {"code": "BATCH_TOO_LARGE", "limit": error.limit, "maximum": error.maximum}
    extensions: dict[str, object] = {
        "code": "QUERY_TOO_COMPLEX",
        "limit": error.limit,
        "maximum": error.maximum,
    }
    if isinstance(error, CostExceeded):
        extensions["cost"] = error.cost
    return extensions


def without_suggestions(message: str) -> str:
    """The message less graphql-core's "Did you mean ...?", which names parts of the schema."""
    return _SUGGESTION.sub("", message)


def to_contract(error: GraphQLError, *, validation_failed: bool) -> GraphQLError:
    """The client-facing form of one error."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):  # e.g. coercing variables
        if error.extensions and "code" in error.extensions:
            return error
        if isinstance(error, GraphQLSyntaxError):
            code = "GRAPHQL_PARSE_FAILED"
        elif validation_failed:
            code = "GRAPHQL_VALIDATION_FAILED"
        else:
            code = "BAD_USER_INPUT"
        return _with(error, error.message, {"code": code})
    if isinstance(original, GatewayError):
        _log_gateway_error(original)
        return _with(error, str(original), gateway_error_extensions(original))
    logger.error(
        "unexpected error resolving %s",
        ".".join(str(p) for p in error.path or ()) or "the operation",
        exc_info=(type(original), original, original.__traceback__),
    )
    return _with(error, INTERNAL_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"})


def _with(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=extensions,
    )


def _log_gateway_error(original: GatewayError) -> None:
    if isinstance(original, UpstreamError):
        # Refused here (the budget): routine under load, counted in gateway_budget_refusals_total.
        level = logging.DEBUG if original.path == NOT_SENT_PATH else logging.WARNING
        logger.log(
            level,
            "upstream error on %s %s: %s",
            original.method,
            original.path,
            type(original).__name__,
        )


class ErrorContract(SchemaExtension):
    """Rewrites every error of an operation into the gateway's contract."""

    def on_validate(self) -> Iterator[None]:
        yield
        if self.execution_context.pre_execution_errors:
            self.validation_failed = True

    def on_operation(self) -> Iterator[None]:
        self.validation_failed = False
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [
                to_contract(error, validation_failed=self.validation_failed)
                for error in result.errors
            ]
