"""The GraphQL schema: types, thin resolvers and the error contract. No HTTP in here."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.schema.cache_report import CacheReport
from gateway.schema.errors import ErrorContract
from gateway.schema.scalars import SCALAR_MAP
from gateway.schema.sessions import Query


@dataclass(frozen=True)
class SchemaOptions:
    """What the schema is built with; production turns introspection and suggestions off."""

    introspection: bool = True


class GatewaySchema(strawberry.Schema):
    """A Strawberry schema whose errors are logged by `ErrorContract`, not once more here."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Errors are logged where they are translated (schema.errors)."""


def build_schema(options: SchemaOptions | None = None) -> strawberry.Schema:
    """The gateway's schema, assembled from `options`."""
    options = options or SchemaOptions()
    extensions: list[type[SchemaExtension]] = [ErrorContract, CacheReport]
    if not options.introspection:
        extensions.append(DisableIntrospection)
    return GatewaySchema(
        query=Query,
        extensions=extensions,
        config=StrawberryConfig(
            disable_field_suggestions=not options.introspection, scalar_map=SCALAR_MAP
        ),
    )
