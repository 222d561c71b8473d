"""A compiled fast path for the operations frontends send most: `session(uuid)` selections.

A document is parsed and validated once; its operation then runs as a projection of the
loaded sessions onto the selection, without graphql-core's resolver machinery. It serves
only what it knows exactly: root fields `session` and `__typename`, fields of the session
types, aliases, fragments, and @include/@skip. Anything else (validation errors, variable
errors, introspection, a field it does not know) returns None *before any I/O*, and the
caller runs normal execution. tests/schema/test_fastpath.py checks, over generated
operations, that both give the same data and errors.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
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
    located_error,
    parse,
    validate,
    visit,
)
from graphql.execution.values import get_variable_values

from gateway.plivo import models
from gateway.schema.context import Context, require
from gateway.schema.errors import to_contract

Getter = Callable[[Any], Any]
MAX_PLANS = 1000


class Unsupported(Exception):
    """The fast path does not serve this operation; normal execution will."""


@dataclass(frozen=True)
class FastResult:
    """What normal execution would have returned, already in the client's form."""

    data: dict[str, Any]
    errors: list[dict[str, Any]]
    cacheable: bool


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _enum(value: Any) -> str:
    return str(value.name)


CHARGE_FIELDS: dict[str, Getter] = {
    "attemptUuid": lambda c: c.attempt_uuid,
    "channel": lambda c: _enum(c.channel),
    "charge": lambda c: _money(c.charge),
}
ATTEMPT_FIELDS: dict[str, Getter] = {
    "attemptUuid": lambda a: a.attempt_uuid,
    "channel": lambda a: _enum(a.channel),
    "status": lambda a: a.status,
    "time": lambda a: a.time,
    "charge": lambda a: _money(a.charge),
    "dtmf": lambda a: a.dtmf,
    "fraudCheck": lambda a: a.fraud_check,
}
CHARGES_FIELDS: dict[str, Getter] = {
    "totalCharge": lambda c: _money(c.total_charge),
    "validationCharge": lambda c: _money(c.validation_charge),
}
SESSION_FIELDS: dict[str, Getter] = {
    "sessionUuid": lambda s: s.session_uuid,
    "apiId": lambda s: s.api_id,
    "appUuid": lambda s: s.app_uuid,
    "alias": lambda s: s.alias,
    "recipient": lambda s: s.recipient,
    "channel": lambda s: _enum(s.channel),
    "status": lambda s: _enum(s.status),
    "count": lambda s: s.count,
    "locale": lambda s: s.locale,
    "requestorIp": lambda s: s.requestor_ip,
    "destinationCountryIso2": lambda s: s.destination_country_iso2,
    "destinationNetwork": lambda s: s.destination_network,
    "createdAt": lambda s: s.created_at,
    "updatedAt": lambda s: s.updated_at,
}
# Object-valued fields: (getter, type name, its fields, nested objects, is a list)
NESTED: dict[str, dict[str, tuple[Getter, str, bool]]] = {
    "VerifySession": {
        "attempts": (lambda s: s.attempts, "Attempt", True),
        "charges": (lambda s: s.charges, "Charges", False),
    },
    "Charges": {"attemptCharges": (lambda c: c.attempt_charges, "AttemptCharge", True)},
    "Attempt": {},
    "AttemptCharge": {},
}
SCALARS: dict[str, dict[str, Getter]] = {
    "VerifySession": SESSION_FIELDS,
    "Attempt": ATTEMPT_FIELDS,
    "Charges": CHARGES_FIELDS,
    "AttemptCharge": CHARGE_FIELDS,
}


class FastPath:
    """Plans per (document, operation name), bounded; `run` serves or returns None."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self._schema = schema
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()

    def plan(self, query: str, operation_name: str | None) -> Plan | None:
        """The plan, or None when normal execution must run (cached either way)."""
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._build(query, operation_name)
        self._plans[key] = plan
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return plan

    def _build(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query)
        except GraphQLError:
            return None
        if validate(self._schema, document):
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name and o.name.value == operation_name]
        if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
            return None
        return Plan(self._schema, document, operations[0])

    async def run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Context,
    ) -> FastResult | None:
        """The result, or None (normal execution then runs; nothing was fetched)."""
        plan = self.plan(query, operation_name)
        if plan is None:
            return None
        try:
            return await plan.run(variables or {}, context)
        except Unsupported:
            return None


class Plan:
    """One validated query operation."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.conditions = sorted(_condition_variables(document))
        self._layouts: dict[tuple[Any, ...], Layout] = {}
        self._string_variables = _string_variables(operation)

    def layout(self, variables: dict[str, Any]) -> Layout:
        """Root fields and session shapes; they depend on variables only through @skip/@include."""
        key = tuple(variables.get(name) for name in self.conditions)
        layout = self._layouts.get(key)
        if layout is None:
            root = self.collect("Query", [self.operation.selection_set], variables)
            if any(nodes[0].name.value not in ("session", "__typename") for nodes in root.values()):
                raise Unsupported
            shapes = {
                key: self.shape("VerifySession", nodes, variables)
                for key, nodes in root.items()
                if nodes[0].name.value == "session"
            }
            layout = (root, shapes)
            if len(self._layouts) < 16:
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
                data[key] = None if outcome is None else project(outcome, shapes[key])
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

    def shape(
        self, type_name: str, nodes: Sequence[FieldNode], variables: dict[str, Any]
    ) -> list[tuple[str, str, Any]]:
        """(response key, field name, nested shape or None) for an object-typed field."""
        fields = self.collect(
            type_name, [n.selection_set for n in nodes if n.selection_set], variables
        )
        shaped: list[tuple[str, str, Any]] = []
        for key, group in fields.items():
            name = group[0].name.value
            if name == "__typename":
                shaped.append((key, name, type_name))
            elif name in SCALARS[type_name]:
                shaped.append((key, name, None))
            elif name in NESTED[type_name]:
                getter, inner, is_list = NESTED[type_name][name]
                shaped.append((key, name, (getter, is_list, self.shape(inner, group, variables))))
            else:
                raise Unsupported
        return [(key, name, (type_name, nested)) for key, name, nested in shaped]

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


Shape = list[tuple[str, str, Any]]
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


def project(item: Any, shape: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """The item's fields, as the shape selects them."""
    out: dict[str, Any] = {}
    for key, name, (type_name, nested) in shape:
        if name == "__typename":
            out[key] = type_name
        elif nested is None:
            out[key] = SCALARS[type_name][name](item)
        else:
            getter, is_list, inner = nested
            value = getter(item)
            out[key] = [project(v, inner) for v in value] if is_list else project(value, inner)
    return out
