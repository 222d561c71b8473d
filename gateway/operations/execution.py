"""Execution: the fast path or Strawberry, chosen per document, with one Context per operation.

Every operation gets a Context, a DataLoader and an `extensions.cache` of its own, whatever
brought it (an HTTP request, an item of a batch, a websocket `subscribe`), so nothing one
operation loaded is served to the next as if it were fresh.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson
import strawberry
from graphql import OperationDefinitionNode
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from gateway.operations.documents import Document, OperationRequest
from gateway.operations.fastpath import FastPath
from gateway.operations.principals import Principal
from gateway.plivo.credentials import Credential
from gateway.schema.context import Context


@dataclass(frozen=True)
class Caller:
    """Who an operation runs for, and what its transport carried besides the operation."""

    principal: Principal
    credential: Credential | None = None
    refresh: bool = False
    idempotency_key: str | None = None


ContextFactory = Callable[[Caller], Context]


@dataclass(frozen=True)
class Prepared:
    """An admitted operation: its request, parsed document, chosen operation and cost."""

    request: OperationRequest
    document: Document
    operation: OperationDefinitionNode
    cost: int

    @property
    def label(self) -> str:
        """What metrics call this operation: the document id it was sent by, else its name."""
        if self.request.document_id is not None:
            return self.request.document_id
        name = self.operation.name
        return self.request.operation_name or (name.value if name else "anonymous")


@dataclass
class Result:
    """One operation's response body, and whether it failed before execution."""

    body: dict[str, Any]
    request_error: bool = False
    context: Context | None = None
    label: str = "anonymous"
    encoded: bytes | None = field(default=None, repr=False)  # the body, when already serialised
    data: bytes | None = field(default=None, repr=False)  # its `data` alone, when serialised


def body_with_data(data: bytes, body: dict[str, Any]) -> bytes:
    """The JSON of `body` whose `data` is already serialised as `data`."""
    rest = {name: value for name, value in body.items() if name != "data"}
    return b'{"data":' + data + (b"," + orjson.dumps(rest)[1:] if rest else b"}")


class Executor:
    """Runs admitted operations: the fast path where it serves, Strawberry otherwise."""

    def __init__(self, schema: strawberry.Schema, context: ContextFactory) -> None:
        self.schema, self.context = schema, context
        self.fast = FastPath(schema._schema)

    def context_for(self, prepared: Prepared, caller: Caller) -> Context:
        """A new Context for one operation, carrying its parsed document."""
        context = self.context(caller)
        context.document = prepared.document.node
        return context

    async def execute(self, prepared: Prepared, caller: Caller) -> Result:
        """A query's or a mutation's one result."""
        context = self.context_for(prepared, caller)
        request = prepared.request
        fast = await self.fast.run(
            prepared.document, prepared.operation, request.variables, context
        )
        if fast is not None:
            body: dict[str, Any] = {"data": fast.data}
            if fast.errors:
                body["errors"] = fast.errors
            if context.cache_report:
                body["extensions"] = {"cache": dict(context.cache_report)}
            return Result(body, False, context, prepared.label)
        result = await self.schema.execute(
            prepared.document.text,  # not reparsed: the Context carries its tree
            variable_values=request.variables,
            context_value=context,
            operation_name=_name(prepared.operation),
        )
        return Result(render(result), is_request_error(result), context, prepared.label)

    async def stream(self, prepared: Prepared, caller: Caller) -> AsyncGenerator[Any, None]:
        """A subscription's results as Strawberry streams them."""
        context = self.context_for(prepared, caller)
        request = prepared.request
        source = await self.schema.stream(
            prepared.document.text,  # not reparsed: the Context carries its tree
            variable_values=request.variables,
            context_value=context,
            operation_name=_name(prepared.operation),
        )
        async with aclosing(source):
            async for item in source:
                yield item


def _name(operation: OperationDefinitionNode) -> str | None:
    return operation.name.value if operation.name else None


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
