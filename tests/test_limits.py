"""Document, body and batch limits: refused before execution, naming the limit, no upstream call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway import fixtures
from gateway.errors import LimitExceeded
from gateway.operations import Admission, Documents, QueryLimits
from gateway.schema import build_schema
from tests.conftest import Simulator, gateway_client, make_settings

UUID = fixtures.DOCS_EXAMPLE_UUID
SESSION = f'session(uuid: "{UUID}")'
WITHIN = f"{{ {SESSION} {{ charges {{ attemptCharges {{ charge }} }} }} }}"  # depth 4


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: {SESSION} {{ status }}" for i in range(count)) + " }"


async def refused(client: httpx.AsyncClient, body: object, status: int = 400) -> dict[str, object]:
    response = await client.post("/graphql", json=body)
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["errors"][0]
    return error


@pytest.fixture
async def limited(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        simulator.url,
        GATEWAY_MAX_DEPTH=4,
        GATEWAY_MAX_ALIASES=3,
        GATEWAY_MAX_TOKENS=120,
        GATEWAY_MAX_BATCH=2,
        GATEWAY_MAX_BODY_BYTES=4096,
    )
    async with gateway_client(settings) as client:
        yield client


async def test_within_every_limit_runs(limited: httpx.AsyncClient) -> None:
    response = await limited.post("/graphql", json={"query": WITHIN})
    assert response.status_code == 200
    assert "errors" not in response.json()


@pytest.mark.parametrize(
    ("query", "limit", "maximum"),
    [
        (f"{{ {SESSION} {{ charges {{ attemptCharges {{ charge {{ x }} }} }} }} }}", "depth", 4),
        (aliased(4), "aliases", 3),
        ("{ " + " ".join(["__typename"] * 130) + " }", "tokens", 120),
        ("{" + "a{" * 1000 + "b" + "}" * 1001, "tokens", 120),
    ],
)
async def test_over_a_limit_is_query_too_complex_naming_it(
    limited: httpx.AsyncClient, simulator: Simulator, query: str, limit: str, maximum: int
) -> None:
    error = await refused(limited, {"query": query})
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": limit, "maximum": maximum}
    assert limit in str(error["message"])
    assert simulator.served() == 0


async def test_aliases_hidden_in_fragments_count_where_spread(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    query = (
        "query { ...F ...F } fragment F on Query { "
        f"a: {SESSION} {{ status }} b: {SESSION} {{ status }} }}"
    )
    error = await refused(limited, {"query": query})
    assert error["extensions"]["limit"] == "aliases"  # type: ignore[index]
    assert simulator.served() == 0


async def test_cyclic_fragments_are_refused_without_hanging(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    query = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    response = await limited.post("/graphql", json={"query": query})
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert simulator.served() == 0


async def test_batches_run_each_operation_up_to_the_limit(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    batch = [{"query": WITHIN}, {"query": f"{{ {SESSION} {{ status }} }}"}]
    response = await limited.post("/graphql", json=batch)
    assert response.status_code == 200
    results = response.json()
    assert [r["data"]["session"] is not None for r in results] == [True, True]
    assert simulator.served() == 1  # one request context: the uuid is loaded once


async def test_a_batch_over_the_limit_is_refused_whole(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    error = await refused(limited, [{"query": WITHIN}] * 3)
    assert error["extensions"] == {"code": "BATCH_TOO_LARGE", "limit": "batch", "maximum": 2}
    assert simulator.served() == 0


async def test_a_batch_with_one_item_over_a_limit_runs_nothing(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    error = await refused(limited, [{"query": WITHIN}, {"query": aliased(5)}])
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"  # type: ignore[index]
    assert simulator.served() == 0


async def test_a_body_over_the_limit_is_413(limited: httpx.AsyncClient) -> None:
    error = await refused(limited, {"query": WITHIN, "pad": "x" * 5000}, status=413)
    assert error["extensions"] == {"code": "PAYLOAD_TOO_LARGE", "limit": "body", "maximum": 4096}


SCHEMA = build_schema()._schema


def admitted(query: str, limits: QueryLimits) -> None:
    """Admission's document checks on `query` (raises LimitExceeded)."""
    documents = Documents(SCHEMA, max_tokens=limits.max_tokens, max_depth=limits.max_depth)
    Admission(SCHEMA, limits).document(documents.get(query))


def test_admission_measures_fragments_once_each() -> None:
    # 2**40 expansions if fragments were re-walked at every spread.
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    query = "query { ...F0 } " + chain + " fragment F40 on Query { __typename }"
    admitted(query, QueryLimits(max_tokens=10_000))
    with pytest.raises(LimitExceeded, match="aliases"):
        admitted(
            "query { ...F0 } " + chain + " fragment F40 on Query { a: __typename }",
            QueryLimits(max_tokens=10_000, max_aliases=1000),
        )


async def test_syntax_errors_are_reported_as_such_not_as_a_limit(
    limited: httpx.AsyncClient, simulator: Simulator
) -> None:
    admitted("{ session(", QueryLimits())  # no LimitExceeded: a syntax error is no limit
    response = await limited.post("/graphql", json={"query": "{ session("})
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert simulator.served() == 0
