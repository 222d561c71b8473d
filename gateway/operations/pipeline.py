"""The one operation pipeline: document -> admission -> execution -> result, for every transport.

Transports (gateway.web) turn bytes into `OperationRequest`s and a `Caller`, and results back
into bytes; everything between is here, the same for an HTTP GET, a POST, each item of a batch
and each websocket `subscribe`:

1. the response cache, for an HTTP request it can answer whole;
2. admission: the batch size, the refetch allowance of `Cache-Control: no-cache`, the document
   (a trusted one by its id, or a registered APQ text, or the text sent; `trusted`), each
   document's tokens, depth and aliases, validation, the choice of operation (several and no
   `operationName` is an error), the operation types the transport may carry, and the cost
   summed over the whole request. A trusted document was parsed, admitted and validated once,
   at start-up: only the choice of operation, its type and the request's total cost remain;
3. execution, each operation with a Context of its own;
4. the result: in production no message suggests a name of the schema ("Did you mean ...?").

A refusal raises a GatewayError before anything runs (the transport maps it to its status);
errors of one operation (syntax, validation, choice of operation) are that operation's result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from graphql import GraphQLError, OperationType
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from gateway.errors import GatewayError, OperationNotAllowed, OperationNotSelected, Throttled
from gateway.operations.admission import Admission
from gateway.operations.documents import Document, Documents, OperationRequest
from gateway.operations.execution import Caller, Executor, Prepared, Result, body_with_data
from gateway.operations.response_cache import CachedResponse, ResponseCache, reusable_until
from gateway.operations.trusted import PersistedDocuments
from gateway.schema.context import Context
from gateway.schema.errors import gateway_error_extensions, to_contract, without_suggestions

QUERIES = frozenset({OperationType.QUERY})
QUERIES_AND_MUTATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
EVERY_OPERATION = frozenset(OperationType)


class RefetchLimiter(Protocol):
    """How long a caller must wait before another `no-cache` refetch (None: it may now)."""

    async def take(self, key: str) -> float | None: ...


class PipelineObserver(Protocol):
    """Hears what the pipeline refused (metrics implement it)."""

    def refresh_refused(self) -> None: ...


@dataclass(frozen=True)
class Answer:
    """What an HTTP request's operations gave: one result each, and its first error's code."""

    results: list[Result]
    outcome: str


class Pipeline:
    """Admits and runs operations for every transport; owns the response cache."""

    def __init__(
        self,
        *,
        documents: Documents,
        admission: Admission,
        executor: Executor,
        responses: ResponseCache,
        refetches: RefetchLimiter,
        observer: PipelineObserver,
        suggestions: bool = True,
        persisted: PersistedDocuments | None = None,
    ) -> None:
        self.documents, self.admission, self.executor = documents, admission, executor
        self.persisted = persisted if persisted is not None else PersistedDocuments()
        self.responses, self.refetches, self.observer = responses, refetches, observer
        self.suggestions = suggestions

    def cached(self, key: bytes | None) -> CachedResponse | None:
        """A whole response kept for this request key, while fresh."""
        return self.responses.get(key) if key is not None else None

    async def run(
        self,
        requests: Sequence[OperationRequest],
        caller: Caller,
        allowed: Collection[OperationType],
        *,
        cache_key: bytes | None = None,
    ) -> Answer:
        """One HTTP request's operations (a batch, or one); `cache_key` keeps a lone answer."""
        self.admission.batch(len(requests))
        await self._refetch(caller)
        prepared = [self._prepare(request, allowed) for request in requests]
        self.admission.total(sum(p.cost for p in prepared if isinstance(p, Prepared)))
        results = [
            await self.executor.execute(p, caller) if isinstance(p, Prepared) else p
            for p in prepared
        ]
        for result in results:
            self._finish(result.body)
        if cache_key is not None and len(results) == 1:
            self._keep(cache_key, results[0])
        return Answer(results, _outcome(results))

    async def stream(self, request: OperationRequest, caller: Caller) -> AsyncIterator[Any]:
        """One websocket operation's results, admitted alone (its own cost)."""
        try:
            prepared = self._prepare(request, EVERY_OPERATION)
            if isinstance(prepared, Prepared):
                self.admission.total(prepared.cost)
        except GatewayError as exc:
            yield PreExecutionError(data=None, errors=[self.refusal(exc)])
            return
        if not isinstance(prepared, Prepared):
            self._finish(prepared.body)
            yield PreExecutionError(data=None, errors=_as_errors(prepared.body))
            return
        if prepared.operation.operation != OperationType.SUBSCRIPTION:
            result = await self.executor.execute(prepared, caller)
            self._finish(result.body)
            body = result.body
            yield ExecutionResult(
                data=body.get("data"), errors=_as_errors(body), extensions=body.get("extensions")
            )
            return
        async with aclosing(self.executor.stream(prepared, caller)) as items:
            async for item in items:  # closed with this one: the watch ends when the client does
                if not self.suggestions and getattr(item, "errors", None):
                    for error in item.errors:
                        error.message = without_suggestions(error.message)
                yield item

    def refusal(self, exc: GatewayError) -> GraphQLError:
        """A refusal as a GraphQL error in the contract."""
        return GraphQLError(str(exc), extensions=gateway_error_extensions(exc))

    def _prepare(
        self, request: OperationRequest, allowed: Collection[OperationType]
    ) -> Prepared | Result:
        found = self.persisted.find(request)
        if isinstance(found, GraphQLError):
            return Result(_error_body(found), request_error=True)
        if isinstance(found, Document):  # trusted: parsed, admitted and validated at start-up
            return self._operation(request, found, allowed)
        document = self.documents.get(found)
        self.admission.document(document)
        if document.node is None:
            return self._failed([document.failure], validation=False)
        prepared = self._operation(request, document, allowed)
        document_id = request.document_id if request.query is not None else None
        if document_id is not None and isinstance(prepared, Prepared):  # APQ's hash and text
            self.persisted.register(document_id, document.text)  # kept, if registration is on
        return prepared

    def _operation(
        self, request: OperationRequest, document: Document, allowed: Collection[OperationType]
    ) -> Prepared | Result:
        try:
            operation = document.operation(request.operation_name)
        except OperationNotSelected as exc:
            return Result(_error_body(self.refusal(exc)), request_error=True)
        if operation.operation not in allowed:  # GraphQL over HTTP: 405 before validation
            raise OperationNotAllowed(operation.operation.value)
        errors = self.documents.validate(document)
        if errors:
            return self._failed(errors, validation=True)
        cost = self.admission.cost(document, operation, request.variables)
        return Prepared(request, document, operation, cost)

    def _failed(self, errors: Sequence[Any], *, validation: bool) -> Result:
        contract = [to_contract(error, validation_failed=validation) for error in errors]
        return Result({"errors": [dict(error.formatted) for error in contract]}, request_error=True)

    async def _refetch(self, caller: Caller) -> None:
        if not caller.refresh:
            return
        wait = await self.refetches.take(caller.principal.id)
        if wait is not None:
            self.observer.refresh_refused()
            raise Throttled(
                "too many Cache-Control: no-cache refetches for this API key",
                retry_after=round(wait, 3),
            )

    def _finish(self, body: dict[str, Any]) -> None:
        """In production, no message suggests a name of the schema (our own never do)."""
        if self.suggestions:
            return
        for error in body.get("errors", ()):
            error["message"] = without_suggestions(error["message"])

    def _keep(self, key: bytes, result: Result) -> None:
        """Keep a lone answer with no errors made of fresh copies; its data serialised once."""
        body, context = result.body, result.context
        if context is None or not _is_cacheable(body, context):
            return
        try:
            data = orjson.dumps(body["data"])
        except TypeError:  # what orjson cannot encode is not kept; the transport escapes it
            return
        self.responses.put(
            key,
            body["data"],
            context.freshness,
            result.label,
            encoded=data,
            changing=context.changing,
        )
        result.data, result.encoded = data, body_with_data(data, body)


def _is_cacheable(body: dict[str, Any], context: Context) -> bool:
    """No errors, no mutation, nothing untracked, and every session in it a fresh copy."""
    return (reusable_until(body, context) or 0.0) > 0.0


def _error_body(error: GraphQLError) -> dict[str, Any]:
    return {"errors": [error.formatted]}


class _Formatted(GraphQLError):
    """An error already in its client form, for a transport that reads `.formatted`."""

    def __init__(self, formatted: dict[str, Any]) -> None:
        super().__init__(str(formatted.get("message", "")))
        self._formatted = formatted

    @property
    def formatted(self) -> Any:
        return self._formatted


def _as_errors(body: dict[str, Any]) -> list[GraphQLError] | None:
    errors = body.get("errors")
    return [_Formatted(error) for error in errors] if errors else None


def _outcome(results: list[Result]) -> str:
    for result in results:
        for error in result.body.get("errors", []):
            code = error.get("extensions", {}).get("code")
            return str(code) if code else "error"
    return "ok"
