"""Admission: every limit an operation must be within before anything runs, in one place.

- batch: how many operations one HTTP request may carry;
- tokens: checked while parsing (`documents`), so a long document stops the parser early;
- depth and aliases: per document, over every operation in it;
- cost: the Plivo requests an operation may cause, summed over a whole HTTP request (every
  item of a batch) or taken per websocket operation. A field's cost is declared on the schema
  (`metadata={"cost": 1}`: `session`, a `sessions` page, each mutation, the payloads' `session`,
  the subscription's first read), so the table follows the schema and is never copied by hand.
  A field that calls Plivo once per item of a list argument (`metadata={"cost": 1, "each":
  "representations"}`: a subgraph's `_entities`) costs that many: the items of a literal list,
  or of the list a variable holds in this request (a variable's default when it is not given).
  A field's nested selection is counted once, whatever the size of the list it returns.

Introspection fields (`__schema`, `__type`) are not counted for depth: their nesting is
bounded by the schema itself. Fragments are followed where they are spread, each measured once
(memoised), and a cycle of fragments stops the walk (validation then rejects the document), so
no document, however built, makes this slow or deep. Cost counts every spread and ignores
@skip/@include: it is what an operation *may* cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)

from gateway.errors import BatchTooLarge, CostExceeded, LimitExceeded
from gateway.operations.documents import Document

T = TypeVar("T")


@dataclass(frozen=True)
class QueryLimits:
    """The most one request may hold and cost."""

    max_depth: int = 8
    max_aliases: int = 20
    max_tokens: int = 2000
    max_cost: int = 20
    max_batch: int = 10


class Admission:
    """Checks batches, documents and costs against the limits; raises LimitExceeded."""

    def __init__(self, schema: GraphQLSchema, limits: QueryLimits) -> None:
        self.schema, self.limits = schema, limits
        self.costs = field_costs(schema)
        self.each = field_each(schema)

    def batch(self, size: int) -> None:
        """A batch of `size` operations may be read."""
        if size > self.limits.max_batch:
            raise BatchTooLarge(self.limits.max_batch)

    def document(self, document: Document) -> None:
        """Tokens, depth and aliases: what the document's text alone may hold."""
        if isinstance(document.failure, LimitExceeded):
            raise _again(document.failure)
        if document.node is None:
            return  # a syntax error: reported as such, nothing runs
        if Admission not in document.memo:
            document.memo[Admission] = self._shape(document)
        refusal: LimitExceeded | None = document.memo[Admission]
        if refusal is not None:
            raise _again(refusal)

    def cost(
        self,
        document: Document,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None = None,
    ) -> int:
        """The Plivo requests `operation` may cause with `variables` (the document is valid)."""
        key = (Admission, id(operation))
        cost: Cost | None = document.memo.get(key)
        if cost is None:
            root = self.schema.get_root_type(operation.operation)
            cost = document.memo[key] = _Cost(self, document).selection(
                operation.selection_set, root
            )
        return cost.given(operation, variables or {})

    def total(self, cost: int) -> None:
        """What one request (a batch, or a websocket operation) may cost in all."""
        if cost > self.limits.max_cost:
            raise CostExceeded(cost, self.limits.max_cost)

    def _shape(self, document: Document) -> LimitExceeded | None:
        measure = _Shape(document)
        for operation in document.operations:
            depth, aliases = measure.selection(operation.selection_set)
            if depth > self.limits.max_depth:
                return LimitExceeded("depth", self.limits.max_depth)
            if aliases > self.limits.max_aliases:
                return LimitExceeded("aliases", self.limits.max_aliases)
        return None


def field_costs(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """(type, field) -> cost, from each Strawberry field's `metadata["cost"]`."""
    return {key: int(metadata["cost"]) for key, metadata in _metadata(schema)}


def field_each(schema: GraphQLSchema) -> dict[tuple[str, str], str]:
    """(type, field) -> the list argument each item of which costs, from `metadata["each"]`."""
    return {key: str(metadata["each"]) for key, metadata in _metadata(schema) if "each" in metadata}


def _metadata(schema: GraphQLSchema) -> Iterator[tuple[tuple[str, str], Mapping[str, Any]]]:
    """Each field with a cost, and its Strawberry metadata."""
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get("strawberry-definition")
            metadata = getattr(definition, "metadata", None) or {}
            if metadata.get("cost"):
                yield (type_.name, name), metadata


@dataclass(frozen=True)
class Cost:
    """What an operation may cost: `fixed`, plus, per list variable, the cost of each item."""

    fixed: int = 0
    per_item: tuple[tuple[str, int], ...] = ()  # (variable name, cost of each item of its list)

    def __add__(self, other: Cost) -> Cost:
        if not other.per_item:
            return Cost(self.fixed + other.fixed, self.per_item)
        per_item = dict(self.per_item)
        for name, cost in other.per_item:
            per_item[name] = per_item.get(name, 0) + cost
        return Cost(self.fixed + other.fixed, tuple(per_item.items()))

    def given(self, operation: OperationDefinitionNode, variables: Mapping[str, Any]) -> int:
        """The cost with these variables' values (a default's when one is not given)."""
        total = self.fixed
        for name, cost in self.per_item:
            if name in variables:
                total += cost * _items(variables[name])
            else:
                total += cost * _literal_items(_default(operation, name))
        return total


NOTHING = Cost()


def _items(value: object) -> int:
    """How many items a list input holds (a single value is coerced to a list of one)."""
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _literal_items(value: ValueNode | None) -> int:
    if value is None or isinstance(value, NullValueNode):
        return 0
    return len(value.values) if isinstance(value, ListValueNode) else 1


def _default(operation: OperationDefinitionNode, name: str) -> ValueNode | None:
    for definition in operation.variable_definitions or ():
        if definition.variable.name.value == name:
            return definition.default_value
    return None


def _again(refusal: LimitExceeded) -> LimitExceeded:
    """A fresh exception for a remembered refusal (one raised object is never shared)."""
    return LimitExceeded(refusal.limit, refusal.maximum)


class _Cost:
    """The cost of a selection set on a type: its fields' costs, nested ones included."""

    def __init__(self, admission: Admission, document: Document) -> None:
        self.schema, self.costs, self.each = admission.schema, admission.costs, admission.each
        self.fragments = document.fragments
        self.memo: dict[str, Cost] = {}
        self.visiting: set[str] = set()

    def selection(
        self, selection_set: SelectionSetNode | None, type_: GraphQLNamedType | None
    ) -> Cost:
        if selection_set is None or not isinstance(type_, GraphQLObjectType | GraphQLUnionType):
            return NOTHING
        fields = type_.fields if isinstance(type_, GraphQLObjectType) else {}  # a union has none
        cost = NOTHING
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                field = fields.get(node.name.value)
                if field is not None:
                    cost += self.field(type_.name, node)
                    cost += self.selection(node.selection_set, get_named_type(field.type))
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else type_
                cost += self.selection(node.selection_set, inner)
            elif isinstance(node, FragmentSpreadNode):
                cost += self.fragment(node.name.value)
        return cost

    def field(self, type_name: str, node: FieldNode) -> Cost:
        """The field's own cost: fixed, or per item of its list argument."""
        cost = self.costs.get((type_name, node.name.value), 0)
        argument = self.each.get((type_name, node.name.value))
        if not cost or argument is None:
            return Cost(cost) if cost else NOTHING
        value = next((a.value for a in node.arguments or () if a.name.value == argument), None)
        if isinstance(value, VariableNode):
            return Cost(0, ((value.name.value, cost),))
        return Cost(cost * _literal_items(value))

    def fragment(self, name: str) -> Cost:
        return _memoised(
            self.memo, self.visiting, self.fragments.get(name), self._fragment, NOTHING
        )

    def _fragment(self, definition: FragmentDefinitionNode) -> Cost:
        inner = self.schema.get_type(definition.type_condition.name.value)
        return self.selection(definition.selection_set, inner)


class _Shape:
    """Depth and alias count of selection sets, fragments expanded once each."""

    def __init__(self, document: Document) -> None:
        self.fragments = document.fragments
        self.memo: dict[str, tuple[int, int]] = {}
        self.visiting: set[str] = set()

    def selection(self, selection_set: SelectionSetNode | None) -> tuple[int, int]:
        if selection_set is None:
            return 0, 0
        depth, aliases = 0, 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                inner_depth, inner_aliases = self.selection(node.selection_set)
                if node.name.value.startswith("__"):  # introspection: bounded by the schema
                    inner_depth = 0
                depth = max(depth, 1 + inner_depth)
                aliases += inner_aliases + (1 if node.alias is not None else 0)
            elif isinstance(node, InlineFragmentNode | FragmentSpreadNode):
                inner_depth, inner_aliases = (
                    self.selection(node.selection_set)
                    if isinstance(node, InlineFragmentNode)
                    else self.fragment(node.name.value)
                )
                depth, aliases = max(depth, inner_depth), aliases + inner_aliases
        return depth, aliases

    def fragment(self, name: str) -> tuple[int, int]:
        definition = self.fragments.get(name)
        return _memoised(
            self.memo, self.visiting, definition, lambda d: self.selection(d.selection_set), (0, 0)
        )


def _memoised(
    memo: dict[str, T],
    visiting: set[str],
    definition: FragmentDefinitionNode | None,
    measure: Callable[[FragmentDefinitionNode], T],
    empty: T,
) -> T:
    """A fragment's measure, once; a cycle or an unknown fragment measures `empty`."""
    if definition is None:
        return empty
    name = definition.name.value
    if name in memo:
        return memo[name]
    if name in visiting:
        return empty
    visiting.add(name)
    try:
        memo[name] = measure(definition)
    finally:
        visiting.discard(name)
    return memo[name]
