"""The pipeline's parts: documents parsed once and bounded, costs from the schema."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLError

from gateway import fixtures
from gateway.errors import LimitExceeded, OperationNotSelected
from gateway.operations import Admission, Documents, QueryLimits
from gateway.operations.fastpath import FastPath
from gateway.schema import build_schema
from tests.conftest import Simulator, gateway_client, graphql, make_settings

SCHEMA = build_schema()._schema
DOCS = fixtures.DOCS_EXAMPLE_UUID
ONE = f'session(uuid: "{DOCS}")'


def documents(
    tokens: int = 2000, max_documents: int = 1000, max_characters: int = 1 << 20
) -> Documents:
    return Documents(
        SCHEMA,
        max_tokens=tokens,
        max_depth=8,
        max_documents=max_documents,
        max_characters=max_characters,
    )


def test_a_document_is_parsed_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import graphql

    parsed: list[str] = []

    def counting(text: str, **options: Any) -> object:
        parsed.append(text)
        return graphql.parse(text, **options)

    monkeypatch.setattr("gateway.operations.documents.parse", counting)
    kept = documents()
    query = f"{{ {ONE} {{ status }} }}"
    first = kept.get(query)
    assert kept.get(query) is first
    assert kept.validate(first) == []
    assert kept.validate(first) is first.errors
    assert parsed == [query]


def test_the_document_cache_holds_at_most_its_share_of_memory() -> None:
    import tracemalloc

    kept = Documents(SCHEMA, max_tokens=2000, max_depth=8)  # the default bounds
    dense = ["{" + "a " * 1990 + "} # " + str(i) for i in range(100)]  # 4 kB, ~1 MB of tree
    tracemalloc.start()
    try:
        for text in dense:
            kept.get(text)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) < len(dense)  # 256 KiB of text: the character budget bounds them
    assert held < 85 * 1024 * 1024  # all 100 would hold about 108 MB


def test_the_document_cache_is_bounded_by_count_and_by_size() -> None:
    kept = documents(max_documents=2)
    first, _, last = (kept.get(f"query {name} {{ __typename }}") for name in "ABC")
    assert len(kept) == 2
    assert kept.get("query C { __typename }") is last
    assert kept.get("query A { __typename }") is not first  # the oldest was dropped
    small = documents(max_characters=100)
    small.get("{ " + "__typename " * 20 + "}")  # 213 characters: never kept
    small.get("query A { __typename }")
    assert len(small) == 1


def test_parsing_stops_at_the_token_limit() -> None:
    document = documents(tokens=100).get("{ " + "__typename " * 500_000 + "}")
    assert document.node is None
    assert isinstance(document.failure, LimitExceeded)
    assert (document.failure.limit, document.failure.maximum) == ("tokens", 100)


def test_the_operation_is_the_named_one_or_the_only_one() -> None:
    kept = documents()
    two = kept.get("query A { __typename } query B { __typename }")
    assert two.operation("B").name is not None
    with pytest.raises(OperationNotSelected, match="operationName"):
        two.operation(None)
    with pytest.raises(OperationNotSelected, match="no operation with that name"):
        kept.get("{ __typename }").operation("A")


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        ("{ __typename }", 0),
        (f"{{ {ONE} {{ status attempts {{ status }} charges {{ totalCharge }} }} }}", 1),
        (f"{{ a: {ONE} {{ status }} b: {ONE} {{ status }} }}", 2),
        ("{ sessions(first: 20) { nodes { status attempts { status } } } }", 1),
        (f"query {{ ...F ...F }} fragment F on Query {{ {ONE} {{ status }} }}", 2),
        (f"query {{ ... on Query {{ {ONE} {{ status }} }} }}", 1),
        ('mutation { startVerification(input: {recipient: "1"}) { sessionUuid } }', 1),
        ('mutation { startVerification(input: {recipient: "1"}) { session { status } } }', 2),
        (f'mutation {{ validateSession(uuid: "{DOCS}", otp: "1") {{ result }} }}', 1),
        (f'mutation {{ validateSession(uuid: "{DOCS}", otp: "1") {{ session {{ status }} }} }}', 2),
        (f'subscription {{ sessionUpdated(uuid: "{DOCS}") {{ status }} }}', 1),
    ],
)
def test_cost_counts_the_plivo_requests_an_operation_may_cause(query: str, cost: int) -> None:
    kept = documents()
    document = kept.get(query)
    assert kept.validate(document) == []
    admission = Admission(SCHEMA, QueryLimits())
    assert admission.cost(document, document.operation(None)) == cost


def test_costs_are_read_off_the_schema() -> None:
    costs = Admission(SCHEMA, QueryLimits()).costs
    assert costs == {
        ("Query", "session"): 1,
        ("Query", "sessions"): 1,
        ("Mutation", "startVerification"): 1,
        ("Mutation", "validateSession"): 1,
        ("Subscription", "sessionUpdated"): 1,
        ("StartVerificationPayload", "session"): 1,
        ("ValidateSessionPayload", "session"): 1,
    }


def test_the_fast_paths_tables_are_the_strawberry_types_fields() -> None:
    tables = FastPath(SCHEMA).tables
    for name in ("VerifySession", "Attempt", "Charges", "AttemptCharge"):
        type_ = SCHEMA.get_type(name)
        assert set(tables[name]) == set(type_.fields), name  # type: ignore[union-attr]
    assert tables["VerifySession"]["createdAt"].attribute == "created_at"
    assert tables["VerifySession"]["attempts"].inner == "Attempt"


async def test_strawberry_runs_the_pipelines_document_without_parsing_it_again(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strawberry.schema.schema as strawberry_schema

    def refuse(*args: object, **kwargs: object) -> object:
        raise GraphQLError("Strawberry parsed or validated a document the pipeline had")

    monkeypatch.setattr(strawberry_schema, "parse", refuse)
    monkeypatch.setattr(strawberry_schema, "validate_document", refuse)
    async with gateway_client(make_settings(simulator.url)) as client:
        listed = await graphql(client, "{ sessions(first: 1) { nodes { status } } }")
        typed = await graphql(client, "{ __schema { queryType { name } } }")
    assert "errors" not in listed, listed
    assert typed["data"] == {"__schema": {"queryType": {"name": "Query"}}}
