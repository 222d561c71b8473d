"""The one operation pipeline: documents (trusted and persisted ones too), admission, execution
and the response cache."""

from gateway.operations.admission import Admission, QueryLimits
from gateway.operations.documents import Documents, OperationRequest
from gateway.operations.execution import Caller, ContextFactory, Executor, body_with_data
from gateway.operations.pipeline import (
    EVERY_OPERATION,
    QUERIES,
    QUERIES_AND_MUTATIONS,
    Pipeline,
)
from gateway.operations.principals import Authenticator, Principal, key_digest, pass_through
from gateway.operations.response_cache import (
    ResponseCache,
    entity_tag,
    response_key,
    response_scope,
    reusable_until,
)
from gateway.operations.trusted import (
    PersistedDocuments,
    PersistedQueryError,
    load_manifest,
    requested_id,
)

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
    "PersistedDocuments",
    "PersistedQueryError",
    "Pipeline",
    "Principal",
    "QueryLimits",
    "ResponseCache",
    "body_with_data",
    "entity_tag",
    "key_digest",
    "load_manifest",
    "pass_through",
    "requested_id",
    "response_key",
    "response_scope",
    "reusable_until",
]
