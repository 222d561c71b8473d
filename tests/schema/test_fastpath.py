"""The fast path returns what normal execution returns, for every operation it serves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from graphql.execution.values import get_variable_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import fixtures
from gateway.errors import UpstreamFailed
from gateway.operations import (
    QUERIES,
    Admission,
    Caller,
    Documents,
    Executor,
    OperationRequest,
    Pipeline,
    Principal,
    QueryLimits,
    ResponseCache,
)
from gateway.operations.fastpath import FastPath, Plan, Unsupported
from gateway.plivo.models import Session, parse_session
from gateway.schema import build_schema
from gateway.schema.context import Context

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
    async def get(
        self, session_uuid: str, *, refresh: bool = False, caller: str = "anonymous"
    ) -> Lookup:
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
WIDE = QueryLimits(max_depth=100, max_aliases=1000, max_tokens=100_000, max_cost=1000)
DOCUMENTS = Documents(SCHEMA._schema, max_tokens=WIDE.max_tokens, max_depth=WIDE.max_depth)


def fast_run(query: str, variables: dict[str, Any], context: Context) -> Any:
    """The fast path on a parsed document's only operation, as the pipeline calls it."""
    document = DOCUMENTS.get(query)
    if document.node is None or DOCUMENTS.validate(document) or len(document.operations) != 1:
        return None
    return FAST.run(document, document.operations[0], variables, context)


class NoLimit:
    async def take(self, key: str) -> float | None:
        return None

    def refresh_refused(self) -> None:
        raise AssertionError("no refetch is limited here")


def pipeline(scopes: frozenset[str]) -> Pipeline:
    """The whole pipeline over the fake reader: a new Context per operation, as in the app."""
    return Pipeline(
        documents=DOCUMENTS,
        admission=Admission(SCHEMA._schema, WIDE),
        executor=Executor(SCHEMA, lambda caller: Context(Reader(), scopes=scopes)),
        responses=ResponseCache(0),
        refetches=NoLimit(),
        observer=NoLimit(),
    )


async def normally(query: str, variables: dict[str, Any], scopes: frozenset[str]) -> Any:
    return await SCHEMA.execute(
        query, variable_values=variables, context_value=Context(Reader(), scopes=scopes)
    )


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
        ran = fast_run(query, variables, Context(Reader(), scopes=scopes))
        fast = await ran if ran is not None else None
        normal = await normally(query, variables, scopes)
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
        async def get(
            self, session_uuid: str, *, refresh: bool = False, caller: str = "anonymous"
        ) -> Lookup:
            raise AssertionError("no lookup may happen")

    for query in (
        "{ __schema { types { name } } }",
        f'{{ session(uuid: "{MISSING}") {{ nope }} }}',
        "query ($u: ID!) { session(uuid: $u) { status } }",
    ):
        document = DOCUMENTS.get(query)
        assert document.node is not None
        ran = FAST.run(document, document.operations[0], {}, Context(Refusing()))
        assert asyncio.run(ran) is None


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
    document = DOCUMENTS.get(f"query Op({declared}) {{ session(uuid: $u) {{ status }} }}")
    operation = document.operations[0]
    expected = get_variable_values(SCHEMA._schema, operation.variable_definitions or (), variables)
    assert not isinstance(expected, list)
    assert Plan(FAST, document, operation).coerce(variables) == expected.coerced


@pytest.mark.parametrize("variables", [{}, {"u": None}, {"u": ["x"]}, {"u": 1.5}])
def test_invalid_variables_are_left_to_normal_execution(variables: dict[str, Any]) -> None:
    document = DOCUMENTS.get("query Op($u: ID!) { session(uuid: $u) { status } }")
    with pytest.raises(Unsupported):
        Plan(FAST, document, document.operations[0]).coerce(variables)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    batch=st.lists(operations(), min_size=1, max_size=3),
    scopes=st.sampled_from([frozenset({"read"}), frozenset({"write"})]),
)
def test_batches_and_websocket_operations_match_normal_execution(
    batch: list[tuple[str, dict[str, Any]]], scopes: frozenset[str]
) -> None:
    """Through the whole pipeline, as an HTTP batch and as websocket operations."""
    caller = Caller(Principal("test", scopes))

    async def compare() -> None:
        requests = [OperationRequest(query, variables) for query, variables in batch]
        answer = await pipeline(scopes).run(requests, caller, QUERIES)
        for (query, variables), result, request in zip(
            batch, answer.results, requests, strict=True
        ):
            normal = await normally(query, variables, scopes)
            expected = [dict(error.formatted) for error in normal.errors or []]
            assert result.body.get("data") == normal.data, query
            assert normalised(result.body.get("errors")) == normalised(expected), query
            streamed = [item async for item in pipeline(scopes).stream(request, caller)]
            assert len(streamed) == 1, query
            assert streamed[0].data == normal.data, query
            errors = [dict(error.formatted) for error in streamed[0].errors or []]
            assert normalised(errors) == normalised(expected), query

    asyncio.run(compare())
