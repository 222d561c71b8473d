"""The fast path: `session(uuid)` queries served as a projection, without resolvers.

An execution strategy behind the pipeline, chosen per document: the pipeline hands it a parsed,
validated operation, and it serves only what it knows exactly: root fields `session` and
`__typename`, fields of the session types, aliases, fragments, and @include/@skip. The session
types' fields are read off the Strawberry types themselves (their attribute names, their
scalars' and enums' serializers, their nesting), and a loaded session is turned into the
Strawberry `VerifySession` as the resolver does, so the two cannot drift apart. Anything else
(variable errors, introspection, a field with a resolver of its own) returns None *before any
I/O*, and Strawberry runs it. tests/schema/test_fastpath.py checks, over generated operations,
that both give the same data and errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    get_nullable_type,
    located_error,
    visit,
)
from graphql.execution.values import get_variable_values

from gateway.operations.documents import Document
from gateway.plivo import models
from gateway.schema.context import Context, require
from gateway.schema.errors import to_contract

ROOT_FIELD = "session"  # Query.session: the one root field the fast path serves
MAX_LAYOUTS = 16


class Unsupported(Exception):
    """The fast path does not serve this operation; normal execution will."""


@dataclass(frozen=True)
class FastResult:
    """What normal execution would have returned, already in the client's form."""

    data: dict[str, Any]
    errors: list[dict[str, Any]]
    cacheable: bool


@dataclass(frozen=True, slots=True)
class Field:
    """A field of a Strawberry type: the attribute it reads, and how its value leaves."""

    attribute: str
    serialize: Callable[[Any], Any] | None  # a scalar's or an enum's; None for an object
    inner: str | None  # the object type it holds, for an object field
    is_list: bool


Tables = dict[str, dict[str, Field]]


def field_tables(schema: GraphQLSchema, root: str) -> Tables:
    """Every type reachable from `root`, its plain fields (no resolver of their own) by name."""
    tables: Tables = {}
    pending = [root]
    while pending:
        type_ = schema.get_type(pending.pop())
        if not isinstance(type_, GraphQLObjectType) or type_.name in tables:
            continue
        table = tables[type_.name] = {}
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get("strawberry-definition")
            if definition is None or definition.base_resolver is not None:
                continue  # a resolver runs: normal execution serves it
            named = get_named_type(field.type)
            is_list = isinstance(get_nullable_type(field.type), GraphQLList)
            attribute = definition.python_name
            if isinstance(named, GraphQLObjectType):
                table[name] = Field(attribute, None, named.name, is_list)
                pending.append(named.name)
            elif isinstance(named, GraphQLEnumType):
                table[name] = Field(attribute, _enum_serializer(named), None, is_list)
            elif isinstance(named, GraphQLScalarType):
                table[name] = Field(attribute, _scalar_serializer(named), None, is_list)
    return tables


def _enum_serializer(enum: GraphQLEnumType) -> Callable[[Any], Any]:
    """The enum's own serializer, its answer for each value remembered (values are few)."""
    names: dict[Any, Any] = {}
    serialize = enum.serialize

    def remembered(value: Any) -> Any:
        name = names.get(value)
        if name is None:
            name = names[value] = serialize(value)
        return name

    return remembered


def _scalar_serializer(scalar: GraphQLScalarType) -> Callable[[Any], Any]:
    """The scalar's own serializer; a str given to String or ID is returned as it is (as
    graphql-core's serializers do) without the call."""
    serialize = scalar.serialize
    if scalar.name not in ("String", "ID"):
        return serialize
    return lambda value: value if type(value) is str else serialize(value)


class FastPath:
    """Plans per operation, kept with the document; `run` serves or returns None."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self._schema = schema
        assert schema.query_type is not None
        session_type = get_named_type(schema.query_type.fields[ROOT_FIELD].type)
        assert isinstance(session_type, GraphQLObjectType)
        self.root_type = session_type.name
        self.tables = field_tables(schema, self.root_type)
        self.convert: Callable[[models.Session], Any] = session_type.extensions[
            "strawberry-definition"
        ].origin.from_model

    def plan(self, document: Document, operation: OperationDefinitionNode) -> Plan | None:
        """The plan, or None when normal execution must run (kept with the document)."""
        key = (FastPath, id(operation))
        if key not in document.memo:
            served = operation.operation == OperationType.QUERY and document.node is not None
            document.memo[key] = Plan(self, document, operation) if served else None
        plan: Plan | None = document.memo[key]
        return plan

    async def run(
        self,
        document: Document,
        operation: OperationDefinitionNode,
        variables: dict[str, Any] | None,
        context: Context,
    ) -> FastResult | None:
        """The result, or None (normal execution then runs; nothing was fetched)."""
        plan = self.plan(document, operation)
        if plan is None:
            return None
        try:
            return await plan.run(variables or {}, context)
        except Unsupported:
            return None


class Plan:
    """One validated query operation."""

    def __init__(
        self, fast: FastPath, document: Document, operation: OperationDefinitionNode
    ) -> None:
        assert document.node is not None
        self.schema, self.tables, self.convert = fast._schema, fast.tables, fast.convert
        self.root_type = fast.root_type
        self.operation = operation
        self.fragments = document.fragments
        self.conditions = sorted(_condition_variables(document.node))
        self._layouts: dict[tuple[Any, ...], Layout] = {}
        self._string_variables = _string_variables(operation)

    def layout(self, variables: dict[str, Any]) -> Layout:
        """Root fields and session shapes; they depend on variables only through @skip/@include."""
        key = tuple(variables.get(name) for name in self.conditions)
        layout = self._layouts.get(key)
        if layout is None:
            root = self.collect("Query", [self.operation.selection_set], variables)
            if any(
                nodes[0].name.value not in (ROOT_FIELD, "__typename") for nodes in root.values()
            ):
                raise Unsupported
            shapes = {
                key: self.shape(self.root_type, nodes, variables)
                for key, nodes in root.items()
                if nodes[0].name.value == ROOT_FIELD
            }
            layout = (root, shapes)
            if len(self._layouts) < MAX_LAYOUTS:
                self._layouts[key] = layout
        return layout

    def coerce(self, raw_variables: dict[str, Any]) -> dict[str, Any]:
        """The variables as graphql-core coerces them; Unsupported when they are invalid."""
        names = self._string_variables
        if names is not None and all(type(raw_variables.get(n)) is str for n in names):
            return {name: raw_variables[name] for name in names}  # String and ID keep a str
        coerced = get_variable_values(
            self.schema, self.operation.variable_definitions or (), raw_variables
        )
        if isinstance(coerced, list):
            raise Unsupported  # normal execution reports the variable errors
        return dict(coerced.coerced)

    async def run(self, raw_variables: dict[str, Any], context: Context) -> FastResult:
        variables = self.coerce(raw_variables)
        root, shapes = self.layout(variables)
        if len(shapes) == 1:  # the common case: no DataLoader, no gather
            (only,) = shapes
            outcomes = {only: await self.load(root[only], variables, context, single=True)}
        else:
            loads = {key: self.load(root[key], variables, context) for key in shapes}
            outcomes = dict(zip(loads, await asyncio.gather(*loads.values()), strict=True))
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for key, nodes in root.items():
            if key not in shapes:
                data[key] = "Query"
                continue
            outcome = outcomes[key]
            if isinstance(outcome, Exception):
                data[key] = None
                error = located_error(outcome, nodes, [key])
                errors.append(dict(to_contract(error, validation_failed=False).formatted))
            else:
                data[key] = None if outcome is None else project(self.convert(outcome), shapes[key])
        return FastResult(data, errors, cacheable=not errors)

    async def load(
        self,
        nodes: list[FieldNode],
        variables: dict[str, Any],
        context: Context,
        *,
        single: bool = False,
    ) -> models.Session | Exception | None:
        """What the `session` resolver would return or raise."""
        try:
            require(context, "read")
            uuid = models.canonical_session_uuid(self.uuid_argument(nodes[0], variables))
            return await (context.load_one(uuid) if single else context.loader.load(uuid))
        except Exception as exc:
            return exc

    @staticmethod
    def uuid_argument(node: FieldNode, variables: dict[str, Any]) -> str:
        for argument in node.arguments or ():
            if argument.name.value != "uuid":
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                return str(variables[value.name.value])
            if isinstance(value, StringValueNode | IntValueNode):
                return str(value.value)
        raise Unsupported

    def shape(self, type_name: str, nodes: Sequence[FieldNode], variables: dict[str, Any]) -> Shape:
        """(response key, field or None for __typename, nested shape or the type name)."""
        fields = self.collect(
            type_name, [n.selection_set for n in nodes if n.selection_set], variables
        )
        table = self.tables[type_name]
        shaped: Shape = []
        for key, group in fields.items():
            name = group[0].name.value
            if name == "__typename":
                shaped.append((key, None, type_name))
                continue
            field = table.get(name)
            if field is None:
                raise Unsupported
            inner = self.shape(field.inner, group, variables) if field.inner else None
            shaped.append((key, field, inner))
        return shaped

    def collect(
        self, type_name: str, selection_sets: Sequence[SelectionSetNode], variables: dict[str, Any]
    ) -> dict[str, list[FieldNode]]:
        """Fields by response key, in order of first appearance (CollectFields)."""
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self._collect_into(grouped, visited, type_name, selection_set, variables)
        return grouped

    def _collect_into(
        self,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
        type_name: str,
        selection_set: SelectionSetNode,
        variables: dict[str, Any],
    ) -> None:
        for selection in selection_set.selections:
            if not is_included(selection, variables):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or condition.name.value == type_name:
                    self._collect_into(
                        grouped, visited, type_name, selection.selection_set, variables
                    )
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if fragment.type_condition.name.value == type_name:
                    self._collect_into(
                        grouped, visited, type_name, fragment.selection_set, variables
                    )


Shape = list[tuple[str, Field | None, Any]]
Layout = tuple[dict[str, list[FieldNode]], dict[str, Shape]]


def _string_variables(operation: OperationDefinitionNode) -> tuple[str, ...] | None:
    """The variable names when every variable is a String or an ID (nullable or not)."""
    names: list[str] = []
    for definition in operation.variable_definitions or ():
        type_node = definition.type
        if isinstance(type_node, NonNullTypeNode):
            type_node = type_node.type
        if not isinstance(type_node, NamedTypeNode) or type_node.name.value not in ("String", "ID"):
            return None
        names.append(definition.variable.name.value)
    return tuple(names)


def _condition_variables(document: DocumentNode) -> set[str]:
    """Names of the variables that @skip or @include read, anywhere in the document."""
    names: set[str] = set()

    class Finder(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            for argument in node.arguments or ():
                if isinstance(argument.value, VariableNode):
                    names.add(argument.value.name.value)

    visit(document, Finder())
    return names


def is_included(selection: Any, variables: dict[str, Any]) -> bool:
    """@skip and @include, with literal or variable conditions."""
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        value = directive.arguments[0].value
        flag = (
            value.value if isinstance(value, BooleanValueNode) else variables.get(value.name.value)
        )
        if (name == "skip" and flag is True) or (name == "include" and flag is not True):
            return False
    return True


def project(item: Any, shape: Shape) -> dict[str, Any]:
    """The item's fields, as the shape selects them, serialized as Strawberry would."""
    out: dict[str, Any] = {}
    for key, field, inner in shape:
        if field is None:  # __typename
            out[key] = inner
            continue
        value = getattr(item, field.attribute)
        if value is None:
            out[key] = None
        elif field.serialize is not None:
            serialize = field.serialize
            out[key] = [serialize(v) for v in value] if field.is_list else serialize(value)
        else:
            out[key] = (
                [project(v, inner) for v in value] if field.is_list else project(value, inner)
            )
    return out
