"""The one operation pipeline: documents, admission, execution and the response cache."""

from gateway.operations.admission import Admission, QueryLimits
from gateway.operations.documents import Documents, OperationRequest
from gateway.operations.execution import Caller, ContextFactory, Executor
from gateway.operations.pipeline import (
    EVERY_OPERATION,
    QUERIES,
    QUERIES_AND_MUTATIONS,
    Pipeline,
)
from gateway.operations.principals import Authenticator, Principal, key_digest, pass_through
from gateway.operations.response_cache import ResponseCache, response_key

__all__ = [
    "EVERY_OPERATION",
    "QUERIES",
    "QUERIES_AND_MUTATIONS",
    "Admission",
    "Authenticator",
    "Caller",
    "ContextFactory",
    "Documents",
    "Executor",
    "OperationRequest",
    "Pipeline",
    "Principal",
    "QueryLimits",
    "ResponseCache",
    "key_digest",
    "pass_through",
    "response_key",
]
