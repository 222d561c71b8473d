"""The fast path returns what normal execution returns, for every operation it serves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import fixtures
from gateway.errors import UpstreamFailed
from gateway.plivo.models import Session, parse_session
from gateway.schema import build_schema
from gateway.schema.context import Context
from gateway.schema.fastpath import FastPath, Plan, Unsupported

SESSIONS = {
    str(body["session_uuid"]): parse_session(body) for body in fixtures.session_fixtures().values()
}
FAILING = "deadbeef-0000-4000-8000-000000000000"
MISSING = "00000000-0000-4000-8000-000000000000"
UUIDS = [*SESSIONS, FAILING, MISSING, "nope", fixtures.DOCS_EXAMPLE_UUID.upper()]
SCALARS = {
    "VerifySession": [
        "sessionUuid",
        "apiId",
        "appUuid",
        "alias",
        "recipient",
        "channel",
        "status",
        "count",
        "locale",
        "requestorIp",
        "destinationCountryIso2",
        "destinationNetwork",
        "createdAt",
        "updatedAt",
        "__typename",
    ],
    "Attempt": [
        "attemptUuid",
        "channel",
        "status",
        "time",
        "charge",
        "dtmf",
        "fraudCheck",
        "__typename",
    ],
    "Charges": ["totalCharge", "validationCharge", "__typename"],
    "AttemptCharge": ["attemptUuid", "channel", "charge", "__typename"],
}
OBJECTS = {
    "VerifySession": {"attempts": "Attempt", "charges": "Charges"},
    "Charges": {"attemptCharges": "AttemptCharge"},
    "Attempt": {},
    "AttemptCharge": {},
}


@dataclass(frozen=True)
class Lookup:
    session: Session | None
    source: str = "hit"
    age: float = 1.0
    fresh_for: float = 60.0


class Reader:
    async def get(self, session_uuid: str, *, refresh: bool = False) -> Lookup:
        if session_uuid == FAILING:
            raise UpstreamFailed(
                "Plivo failed (HTTP 503) for session x", method="GET", path="/p", status_code=503
            )
        return Lookup(SESSIONS.get(session_uuid))


@dataclass
class Doc:
    """A generated operation: its text, the fragments it defines, the variables it uses."""

    fragments: list[str]
    uses: set[str]


@st.composite
def selection(draw: st.DrawFn, type_name: str, doc: Doc, depth: int) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["field", "field", "field", "object", "inline", "spread", "unknown"])
        )
        alias = f"{draw(st.sampled_from(['a', 'b', 'c']))}: " if draw(st.booleans()) else ""
        directive = draw(directives(doc))
        if kind == "object" and OBJECTS[type_name] and depth < 3:
            name, inner = draw(st.sampled_from(sorted(OBJECTS[type_name].items())))
            parts.append(f"{alias}{name}{directive} {{ {draw(selection(inner, doc, depth + 1))} }}")
        elif kind == "inline":
            condition = f"on {type_name} " if draw(st.booleans()) else ""
            parts.append(
                f"... {condition}{directive}{{ {draw(selection(type_name, doc, depth + 1))} }}"
            )
        elif kind == "spread" and depth < 3:
            name = f"F{len(doc.fragments)}"
            doc.fragments.append(
                f"fragment {name} on {type_name} {{ {draw(selection(type_name, doc, depth + 1))} }}"
            )
            parts.append(f"...{name}{directive}")
        elif kind == "unknown":
            parts.append("notAField" if draw(st.integers(0, 9)) == 0 else "__typename")
        else:
            parts.append(f"{alias}{draw(st.sampled_from(SCALARS[type_name]))}{directive}")
    return " ".join(parts)


@st.composite
def directives(draw: st.DrawFn, doc: Doc) -> str:
    choice = draw(st.sampled_from(["", "", "", "skip", "include", "var"]))
    if choice == "skip":
        return f" @skip(if: {draw(st.sampled_from(['true', 'false']))})"
    if choice == "include":
        return f" @include(if: {draw(st.sampled_from(['true', 'false']))})"
    if choice == "var":
        doc.uses.add("flag")
        return " @include(if: $flag)"
    return ""


@st.composite
def operations(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    doc = Doc([], set())
    roots = []
    for index in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 5)) == 0:
            roots.append("__typename")
            continue
        if draw(st.booleans()):
            doc.uses.add("u")
            argument = "$u"
        else:
            argument = '"' + draw(st.sampled_from(UUIDS)) + '"'
        alias = f"s{index}: " if index or draw(st.booleans()) else ""
        inner = draw(selection("VerifySession", doc, 0))
        roots.append(f"{alias}session(uuid: {argument}) {{ {inner} }}")
    definitions = {"u": "$u: ID!", "flag": "$flag: Boolean!"}
    declared = ", ".join(definitions[name] for name in sorted(doc.uses))
    header = f"query Op({declared})" if declared else "query Op"
    query = f"{header} {{ {' '.join(roots)} }} " + " ".join(doc.fragments)
    variables: dict[str, Any] = {}
    if "u" in doc.uses:
        variables["u"] = draw(st.sampled_from([*UUIDS, 42, None, [UUIDS[0]], True]))
    if "flag" in doc.uses:
        variables["flag"] = draw(st.booleans())
    return query, variables


SCHEMA = build_schema()
FAST = FastPath(SCHEMA._schema)
SERVED: list[bool] = []


def normalised(errors: list[dict[str, Any]] | None) -> list[str]:
    return sorted(repr(sorted(error.items())) for error in errors or [])


@settings(
    max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(operation=operations(), scopes=st.sampled_from([frozenset({"read"}), frozenset({"write"})]))
def test_fast_path_matches_normal_execution(
    operation: tuple[str, dict[str, Any]], scopes: frozenset[str]
) -> None:
    query, variables = operation

    async def both() -> None:
        fast = await FAST.run(query, variables, None, Context(Reader(), scopes=scopes))
        normal = await SCHEMA.execute(
            query, variable_values=variables, context_value=Context(Reader(), scopes=scopes)
        )
        SERVED.append(fast is not None)
        if fast is None:
            return
        assert normal.data == fast.data, query
        formatted = [dict(error.formatted) for error in normal.errors or []]
        assert normalised(formatted) == normalised(fast.errors), query

    asyncio.run(both())


def test_the_fast_path_served_most_generated_operations() -> None:
    assert SERVED, "run together with test_fast_path_matches_normal_execution"
    assert sum(SERVED) / len(SERVED) > 0.3  # the rest fail validation (conflicting aliases)


def test_what_it_does_not_know_falls_through_before_any_io() -> None:
    class Refusing:
        async def get(self, session_uuid: str, *, refresh: bool = False) -> Lookup:
            raise AssertionError("no lookup may happen")

    for query in (
        "{ __schema { types { name } } }",
        f'{{ session(uuid: "{MISSING}") {{ nope }} }}',
        "query A { __typename } query B { __typename }",
        "query ($u: ID!) { session(uuid: $u) { status } }",
    ):
        assert asyncio.run(FAST.run(query, {}, None, Context(Refusing()))) is None


@pytest.mark.parametrize(
    ("declared", "variables"),
    [
        ("$u: ID!", {"u": UUIDS[0]}),
        ("$u: ID!", {"u": UUIDS[0], "extra": 1}),
        ("$u: ID!", {"u": 42}),
        ("$u: ID", {"u": UUIDS[0]}),
        ("$u: ID!, $v: String", {"u": UUIDS[0], "v": "x"}),
        ("$u: ID!, $v: String", {"u": UUIDS[0]}),
        ('$u: ID!, $v: String = "d"', {"u": UUIDS[0]}),
        ("$u: ID!, $f: Boolean!", {"u": UUIDS[0], "f": True}),
    ],
)
def test_variables_are_coerced_as_graphql_core_coerces_them(
    declared: str, variables: dict[str, Any]
) -> None:
    query = f"query Op({declared}) {{ session(uuid: $u) {{ status }} }}"
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    expected = get_variable_values(SCHEMA._schema, operation.variable_definitions or (), variables)
    assert not isinstance(expected, list)
    assert Plan(SCHEMA._schema, document, operation).coerce(variables) == expected.coerced


@pytest.mark.parametrize("variables", [{}, {"u": None}, {"u": ["x"]}, {"u": 1.5}])
def test_invalid_variables_are_left_to_normal_execution(variables: dict[str, Any]) -> None:
    document = parse("query Op($u: ID!) { session(uuid: $u) { status } }")
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    with pytest.raises(Unsupported):
        Plan(SCHEMA._schema, document, operation).coerce(variables)
