"""The GraphQL schema: types, thin resolvers and the error contract. No HTTP in here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from gateway.schema.cache_report import CacheReport
from gateway.schema.errors import ErrorContract, to_contract
from gateway.schema.federation import FEDERATION_SCALARS, FederatedQuery, subgraph_sdl
from gateway.schema.flow import Mutation, Query, Subscription
from gateway.schema.prepared import PreparedDocument
from gateway.schema.scalars import SCALAR_MAP


@dataclass(frozen=True)
class SchemaOptions:
    """What the schema is built with; production turns introspection and suggestions off.

    `federation` makes it an Apollo Federation 2 subgraph (gateway.schema.federation).
    """

    introspection: bool = True
    federation: bool = False


class GatewaySchema(strawberry.Schema):
    """A Strawberry schema whose errors are logged by `ErrorContract`, not once more here.

    `subgraph_sdl` is what a supergraph composes (`_service { sdl }`), when it is a subgraph.
    """

    subgraph_sdl: str | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Errors are logged where they are translated (schema.errors)."""

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        """Results streamed to a websocket, their errors in the contract too.

        The ErrorContract extension rewrites the one result of a query or a mutation; the
        results a subscription yields pass by it, so they are rewritten here as they go.
        """
        return _contracted(await super().stream(*args, **kwargs))


async def _contracted(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in source:
        if isinstance(item, ExecutionResult) and item.errors:
            failed = isinstance(item, PreExecutionError)
            item.errors = [
                error
                if error.extensions and "code" in error.extensions
                else to_contract(error, validation_failed=failed)
                for error in item.errors
            ]
        yield item


def build_schema(options: SchemaOptions | None = None) -> GatewaySchema:
    """The gateway's schema, assembled from `options`."""
    options = options or SchemaOptions()
    extensions: list[type[SchemaExtension]] = [PreparedDocument, ErrorContract, CacheReport]
    if not options.introspection:
        extensions.append(DisableIntrospection)
    schema = GatewaySchema(
        query=FederatedQuery if options.federation else Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(
            disable_field_suggestions=not options.introspection,
            scalar_map={**SCALAR_MAP, **FEDERATION_SCALARS} if options.federation else SCALAR_MAP,
        ),
    )
    if options.federation:  # the plain schema's SDL, printed as schema.graphql is, plus @key
        schema.subgraph_sdl = subgraph_sdl(str(build_schema(replace(options, federation=False))))
    return schema


def exported_sdl(*, federation: bool = False) -> str:
    """What `export-schema` prints: schema.graphql, or the subgraph's schema.federation.graphql."""
    if not federation:
        return str(build_schema()) + "\n"
    sdl = build_schema(SchemaOptions(federation=True)).subgraph_sdl
    assert sdl is not None  # a federated schema always has it
    return sdl + "\n"
