"""Admission: every limit an operation must be within before anything runs, in one place.

- batch: how many operations one HTTP request may carry;
- tokens: checked while parsing (`documents`), so a long document stops the parser early;
- depth and aliases: per document, over every operation in it;
- cost: the Plivo requests an operation may cause, summed over a whole HTTP request (every
  item of a batch) or taken per websocket operation. A field's cost is declared on the schema
  (`metadata={"cost": 1}`: `session`, a `sessions` page, each mutation, the payloads' `session`,
  the subscription's first read), so the table follows the schema and is never copied by hand.

Introspection fields (`__schema`, `__type`) are not counted for depth: their nesting is
bounded by the schema itself. Fragments are followed where they are spread, each measured once
(memoised), and a cycle of fragments stops the walk (validation then rejects the document), so
no document, however built, makes this slow or deep. Cost counts every spread and ignores
@skip/@include: it is what an operation *may* cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
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

    def cost(self, document: Document, operation: OperationDefinitionNode) -> int:
        """The Plivo requests `operation` may cause (the document is valid)."""
        key = (Admission, id(operation))
        cost: int | None = document.memo.get(key)
        if cost is None:
            root = self.schema.get_root_type(operation.operation)
            cost = document.memo[key] = _Cost(self, document).selection(
                operation.selection_set, root
            )
        return cost

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
    costs: dict[tuple[str, str], int] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get("strawberry-definition")
            cost = getattr(definition, "metadata", None) or {}
            if cost.get("cost"):
                costs[type_.name, name] = int(cost["cost"])
    return costs


def _again(refusal: LimitExceeded) -> LimitExceeded:
    """A fresh exception for a remembered refusal (one raised object is never shared)."""
    return LimitExceeded(refusal.limit, refusal.maximum)


class _Cost:
    """The cost of a selection set on a type: its fields' costs, nested ones included."""

    def __init__(self, admission: Admission, document: Document) -> None:
        self.schema, self.costs = admission.schema, admission.costs
        self.fragments = document.fragments
        self.memo: dict[str, int] = {}
        self.visiting: set[str] = set()

    def selection(
        self, selection_set: SelectionSetNode | None, type_: GraphQLNamedType | None
    ) -> int:
        if selection_set is None or not isinstance(type_, GraphQLObjectType):
            return 0
        cost = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                field = type_.fields.get(node.name.value)
                if field is not None:
                    cost += self.costs.get((type_.name, node.name.value), 0)
                    cost += self.selection(node.selection_set, get_named_type(field.type))
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else type_
                cost += self.selection(node.selection_set, inner)
            elif isinstance(node, FragmentSpreadNode):
                cost += self.fragment(node.name.value)
        return cost

    def fragment(self, name: str) -> int:
        return _memoised(self.memo, self.visiting, self.fragments.get(name), self._fragment, 0)

    def _fragment(self, definition: FragmentDefinitionNode) -> int:
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
