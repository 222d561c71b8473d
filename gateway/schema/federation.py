"""Apollo Federation 2: the schema as a subgraph whose one entity is `VerifySession`.

With GATEWAY_FEDERATION=true, Query gains the two fields a router calls:

- `_entities(representations: [_Any!]!): [_Entity]!` resolves `VerifySession` representations
  through the request's DataLoader, as `session(uuid)` does: the read scope, canonical uuids,
  the cache and its report, single-flight, the caller's credential and share of the budget.
  Each representation costs one Plivo request at admission. A representation of another
  type, without its `sessionUuid`, or with a malformed one is an error of its own item;
  a session Plivo does not have is null.
- `_service { sdl }`: the subgraph's SDL, which needs an accepted API key and no scope.

The plain schema never sees any of this: the subgraph's SDL is the plain schema as printed
(schema.graphql), with `@key(fields: "sessionUuid")` on VerifySession and the `@link` that
imports it from the federation spec (`subgraph_sdl`).
"""

from __future__ import annotations

import asyncio
from typing import NewType

import strawberry
from graphql import ObjectTypeDefinitionNode, parse
from strawberry.annotation import StrawberryAnnotation
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition
from strawberry.types.scalar import ScalarDefinition
from strawberry.types.union import StrawberryUnion

from gateway.errors import InvalidInput
from gateway.plivo import models
from gateway.schema.context import Info, plivo_request_each, require
from gateway.schema.flow import Query
from gateway.schema.sessions import VerifySession

# v2.4: the first with subscriptions in a subgraph (Apollo Router asks for it); @key is all
# we import. Apollo's, Cosmo's and Hive's composers all read it.
FEDERATION_SPEC = "https://specs.apollo.dev/federation/v2.4"
LINK = f'extend schema @link(url: "{FEDERATION_SPEC}", import: ["@key"])'
ENTITY = get_object_definition(VerifySession, strict=True).name
KEY = "sessionUuid"
REPRESENTATIONS = "representations"

Representation = NewType("Representation", object)
FEDERATION_SCALARS: dict[object, ScalarDefinition] = {
    Representation: strawberry.scalar(
        name="_Any",
        description="An entity representation: its __typename and its key fields.",
        serialize=lambda value: value,
        parse_value=lambda value: value,
    ),
}
Entity = StrawberryUnion("_Entity", type_annotations=(StrawberryAnnotation(VerifySession),))
ENTITIES = StrawberryList(StrawberryOptional(Entity))  # [_Entity]!


@strawberry.type(name="_Service", description="This subgraph, as a supergraph composes it.")
class Service:
    sdl: str = strawberry.field(description="The subgraph's SDL, with its federation directives.")


@strawberry.type(name="Query")
class FederatedQuery(Query):
    """The Query of a Federation 2 subgraph: the gateway's, `_entities` and `_service`."""

    @strawberry.field(
        name="_entities",
        graphql_type=ENTITIES,
        description="VerifySession representations resolved, in order; null when Plivo has "
        "no such session. Needs the read scope; each representation costs one Plivo request.",
        metadata=plivo_request_each(REPRESENTATIONS),
    )
    async def entities(self, info: Info, representations: list[Representation]) -> list[object]:
        require(info.context, "read")
        keys = [session_uuid_of(item) for item in representations]  # all checked before I/O
        loader = info.context.loader  # one lookup per uuid, however often it is represented
        loaded = iter(
            await asyncio.gather(
                *(loader.load(key) for key in keys if isinstance(key, str)),
                return_exceptions=True,
            )
        )
        return [key if isinstance(key, InvalidInput) else _entity(next(loaded)) for key in keys]

    @strawberry.field(name="_service", description="The subgraph's SDL, for composition.")
    def service(self, info: Info) -> Service:
        sdl = getattr(info.schema, "subgraph_sdl", None)
        if not isinstance(sdl, str):
            raise RuntimeError("this schema was built without its subgraph SDL")
        return Service(sdl=sdl)


def session_uuid_of(representation: object) -> str | InvalidInput:
    """The canonical uuid a representation names, or why it names none (the text not echoed)."""
    if not isinstance(representation, dict) or representation.get("__typename") != ENTITY:
        return InvalidInput(f"a representation must be an object with __typename {ENTITY}")
    uuid = representation.get(KEY)
    if not isinstance(uuid, str):
        return InvalidInput(f"a {ENTITY} representation needs its {KEY}, a string")
    try:
        return models.canonical_session_uuid(uuid)
    except InvalidInput:
        return InvalidInput(f"{KEY} must be a canonical UUID (8-4-4-4-12 hexadecimal digits)")


def _entity(loaded: models.Session | BaseException | None) -> VerifySession | Exception | None:
    """What one item of `_entities` is: the session, null, or the error of this item alone."""
    if isinstance(loaded, Exception):
        return loaded  # graphql-core reports it at the item's path, the item null
    if isinstance(loaded, BaseException):
        raise loaded  # cancelled: the whole operation is
    return VerifySession.from_model(loaded) if loaded is not None else None


def subgraph_sdl(plain_sdl: str) -> str:
    """The plain schema's SDL as a Federation 2 subgraph: `@key` on the entity, `@link` atop."""
    entity = next(
        (
            node
            for node in parse(plain_sdl).definitions
            if isinstance(node, ObjectTypeDefinitionNode) and node.name.value == ENTITY
        ),
        None,
    )
    fields = {field.name.value for field in entity.fields or ()} if entity is not None else set()
    if entity is None or entity.name.loc is None or KEY not in fields:
        raise ValueError(f"the schema has no {ENTITY} with a {KEY} field to be its key")
    at = entity.name.loc.end  # right after the type's name: the text is otherwise untouched
    return f'{LINK}\n\n{plain_sdl[:at]} @key(fields: "{KEY}"){plain_sdl[at:]}'
