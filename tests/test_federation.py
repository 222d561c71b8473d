"""GATEWAY_FEDERATION=true: the schema as an Apollo Federation 2 subgraph.

`VerifySession @key(fields: "sessionUuid")`, `_entities` resolved as `session(uuid)` is (scope,
uuid checks, the cache and its report, single-flight, credentials, budget, cost), `_service
{ sdl }`, and the SDL composed with a second subgraph by Apollo's own composer.
"""

from __future__ import annotations

import json
import uuid as uuids
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import build_ast_schema, parse, print_type

from gateway import fixtures
from gateway.app import create_app
from gateway.cli import main, settings_variables
from gateway.errors import ConfigError
from gateway.operations import Admission, Documents, QueryLimits
from gateway.operations.fastpath import FastPath
from gateway.operations.principals import key_digest
from gateway.schema import SchemaOptions, build_schema, exported_sdl
from gateway.schema.context import Context
from gateway.schema.federation import subgraph_sdl
from gateway.simulator.seed import RECENT_VERIFIED
from tests.conftest import AUTH_ID, Simulator, gateway_client, make_settings
from tests.node_tools import run_node
from tests.servers import serve_in_thread
from tests.test_pipeline import first_error, ws_run
from tests.test_subscriptions import slow_watch_settings

DOCS = fixtures.DOCS_EXAMPLE_UUID  # expired, in the simulator
VERIFIED = RECENT_VERIFIED
FEDERATED = build_schema(SchemaOptions(federation=True))
PLAIN = build_schema()
ENTITIES = """query E($r: [_Any!]!) {
  _entities(representations: $r) { __typename ... on VerifySession { sessionUuid status } }
}"""
SERVICE = "{ _service { sdl } }"
FEDERATION_NAMES = ("_Any", "_Entity", "_Service")
READER, OPS, BROKER = "reader-key-0000", "ops-key-1111", "broker-key-2222"
KEYS = ",".join(
    [
        f"reader:{key_digest(READER)}:read",
        f"ops:{key_digest(OPS)}:write",
        f"broker:{key_digest(BROKER)}:read+passthrough",
    ]
)
ACCOUNTS = """extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
type Query { me: User }
type User @key(fields: "id") { id: ID! lastVerification: VerifySession }
type VerifySession @key(fields: "sessionUuid", resolvable: false) { sessionUuid: %s }
"""


def rep(session_uuid: object, typename: object = "VerifySession") -> dict[str, object]:
    return {"__typename": typename, "sessionUuid": session_uuid}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def entities(
    client: httpx.AsyncClient, representations: object, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": ENTITIES, "variables": {"r": representations}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[tuple[list[object], str]]:
    return [(error["path"], error["extensions"]["code"]) for error in body.get("errors", [])]


@pytest.fixture
async def federated(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(simulator.url, GATEWAY_FEDERATION="true")
    async with gateway_client(settings) as client:
        yield client


@pytest.fixture
async def keyed(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        simulator.url, GATEWAY_FEDERATION="true", GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS
    )
    async with gateway_client(settings) as client:
        yield client


# --- composition, by Apollo's composer --------------------------------------------------------


def compose(verify_sdl: str, accounts_sdl: str) -> dict[str, Any]:
    result: dict[str, Any] = run_node(
        "compose.mjs",
        {
            "subgraphs": [
                {"name": "verify", "url": "http://verify.test/graphql", "sdl": verify_sdl},
                {"name": "accounts", "url": "http://accounts.test/graphql", "sdl": accounts_sdl},
            ]
        },
    )
    return result


def test_the_subgraph_composes_with_another_that_references_verify_session() -> None:
    composed = compose(exported_sdl(federation=True), ACCOUNTS % "ID!")
    assert composed["errors"] == []
    supergraph = composed["supergraphSdl"]
    joined = supergraph[supergraph.index("type VerifySession") :].split("{", 1)[0]
    assert '@join__type(graph: VERIFY, key: "sessionUuid")' in joined
    assert '@join__type(graph: ACCOUNTS, key: "sessionUuid", resolvable: false)' in joined
    user = supergraph[supergraph.index("type User") :].split("}", 1)[0]
    assert "lastVerification: VerifySession" in user  # the other subgraph's field, joined
    assert "status: SessionStatus! @join__field(graph: VERIFY)" in supergraph


def test_the_composer_reports_a_key_field_of_another_type() -> None:
    composed = compose(exported_sdl(federation=True), ACCOUNTS % "Int!")
    assert composed["supergraphSdl"] is None
    assert any('"VerifySession.sessionUuid" is incompatible' in e for e in composed["errors"])


def test_the_plain_schema_does_not_compose_for_want_of_its_key() -> None:
    composed = compose(exported_sdl(), ACCOUNTS % "ID!")
    assert composed["supergraphSdl"] is None
    assert any('no @key defined in subgraph "verify"' in e for e in composed["errors"])


def test_export_schema_federation_writes_a_file_that_composes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "subgraph.graphql"
    assert main(["export-schema", "--federation", "--output", str(target)]) == 0
    written = target.read_text(encoding="utf-8")
    assert written.startswith(
        'extend schema @link(url: "https://specs.apollo.dev/federation/v2.4", import: ["@key"])'
    )
    assert 'type VerifySession @key(fields: "sessionUuid") {' in written
    assert main(["export-schema", "--federation"]) == 0
    assert capsys.readouterr().out == written
    assert compose(written, ACCOUNTS % "ID!")["errors"] == []


# --- the setting, the schema with and without it ------------------------------------------------


def test_gateway_federation_is_a_flag_off_by_default_and_listed_by_serve() -> None:
    assert make_settings("http://plivo.test").federation is False
    assert make_settings("http://plivo.test", GATEWAY_FEDERATION="true").federation is True
    with pytest.raises(ConfigError, match="GATEWAY_FEDERATION must be true or false"):
        make_settings("http://plivo.test", GATEWAY_FEDERATION="maybe")
    assert "GATEWAY_FEDERATION" in settings_variables()


def test_a_schema_without_the_entity_or_its_key_has_no_subgraph_sdl() -> None:
    for sdl in ("type Query { a: Int }", "type Query { a: Int } type VerifySession { id: ID }"):
        with pytest.raises(ValueError, match="VerifySession with a sessionUuid"):
            subgraph_sdl(sdl)


def test_without_the_flag_nothing_of_federation_is_in_the_schema() -> None:
    printed = str(PLAIN)
    assert PLAIN.subgraph_sdl is None
    assert "@key" not in printed
    assert "@link" not in printed
    query = PLAIN._schema.query_type
    assert query is not None
    assert not {"_entities", "_service"} & set(query.fields)
    assert not set(FEDERATION_NAMES) & set(PLAIN._schema.type_map)
    assert exported_sdl() == printed + "\n"


async def test_without_the_flag_entities_and_service_fail_validation(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    for query in (SERVICE, ENTITIES):
        response = await gateway.post("/graphql", json={"query": query, "variables": {"r": []}})
        errors = response.json()["errors"]
        assert {e["extensions"]["code"] for e in errors} == {"GRAPHQL_VALIDATION_FAILED"}
    assert simulator.served() == 0


def test_the_subgraph_sdl_is_the_plain_schema_with_link_and_key() -> None:
    sdl = FEDERATED.subgraph_sdl
    assert sdl is not None
    link, plain = sdl.split("\n\n", 1)
    assert link.startswith("extend schema @link(")
    assert plain.replace(' @key(fields: "sessionUuid")', "", 1) == str(PLAIN)


def test_the_subgraph_sdl_describes_the_schema_served() -> None:
    assert FEDERATED.subgraph_sdl is not None
    described = build_ast_schema(parse(FEDERATED.subgraph_sdl), assume_valid_sdl=True)
    served = FEDERATED._schema
    for name, type_ in described.type_map.items():
        if name.startswith("__") or name == "Query":
            continue
        assert print_type(type_) == print_type(served.type_map[name]), name
    query, served_query = described.query_type, served.query_type
    assert query is not None
    assert served_query is not None
    assert set(served_query.fields) - set(query.fields) == {"_entities", "_service"}
    assert set(served.type_map) - set(described.type_map) == set(FEDERATION_NAMES)


# --- _entities ----------------------------------------------------------------------------------


async def test_entities_resolves_two_sessions_in_order_through_the_cache(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    first = await entities(federated, [rep(VERIFIED), rep(DOCS)])
    assert "errors" not in first, first
    assert first["data"]["_entities"] == [
        {"__typename": "VerifySession", "sessionUuid": VERIFIED, "status": "VERIFIED"},
        {"__typename": "VerifySession", "sessionUuid": DOCS, "status": "EXPIRED"},
    ]
    assert {u: c["status"] for u, c in first["extensions"]["cache"].items()} == {
        VERIFIED: "miss",
        DOCS: "miss",
    }
    # Another document (not the response cache): the session cache `session(uuid)` reads too.
    again = await entities(federated, [rep(DOCS), rep(VERIFIED), rep(DOCS)])
    assert [item["sessionUuid"] for item in again["data"]["_entities"]] == [DOCS, VERIFIED, DOCS]
    assert {c["status"] for c in again["extensions"]["cache"].values()} == {"hit"}
    single = await federated.post(
        "/graphql", json={"query": f'{{ session(uuid: "{DOCS}") {{ status }} }}'}
    )
    assert single.json()["extensions"]["cache"][DOCS]["status"] == "hit"
    assert simulator.served() == 2


async def test_two_representations_of_one_uuid_cost_one_plivo_get(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    body = await entities(federated, [rep(DOCS), rep(DOCS.upper())])
    assert "errors" not in body, body
    assert [item["sessionUuid"] for item in body["data"]["_entities"]] == [DOCS, DOCS]
    assert list(body["extensions"]["cache"]) == [DOCS]
    assert simulator.served(DOCS) == 1
    assert simulator.served() == 1


async def test_a_session_plivo_does_not_have_is_null(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    unknown = str(uuids.uuid4())
    body = await entities(federated, [rep(unknown), rep(DOCS)])
    assert "errors" not in body, body
    assert body["data"]["_entities"][0] is None
    assert body["data"]["_entities"][1]["sessionUuid"] == DOCS


async def test_a_representation_takes_nothing_but_its_key_from_the_caller(
    federated: httpx.AsyncClient,
) -> None:
    spoofed = {**rep(DOCS), "status": "VERIFIED", "__proto__": {"admin": True}}
    body = await entities(federated, [spoofed])
    assert body["data"]["_entities"] == [
        {"__typename": "VerifySession", "sessionUuid": DOCS, "status": "EXPIRED"}
    ]


async def test_a_malformed_uuid_is_bad_user_input_not_echoed_and_never_sent(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    hostile = "<script>60ea68db-b123-46d9-9eb2-1201d516dbbd"
    body = await entities(federated, [rep(hostile), rep(DOCS)])
    assert codes(body) == [(["_entities", 0], "BAD_USER_INPUT")]
    assert "<script>" not in json.dumps(body)
    assert body["data"]["_entities"][0] is None
    assert body["data"]["_entities"][1]["status"] == "EXPIRED"
    assert simulator.served() == 1  # the valid one only


@pytest.mark.parametrize(
    "representation",
    [
        {"__typename": "User", "id": "1"},
        rep(DOCS, typename="Query"),  # a __typename of this schema, not an entity
        rep(DOCS, typename="verifysession"),
        rep(DOCS, typename=["VerifySession"]),
        {"sessionUuid": DOCS},
        {"__typename": "VerifySession"},
        rep(42),
        rep(None),
        rep({"$ne": None}),
        "60ea68db-b123-46d9-9eb2-1201d516dbbd",
        7,
        [rep(DOCS)],
        {},
    ],
)
async def test_a_representation_of_another_type_or_without_its_key_is_its_own_error(
    federated: httpx.AsyncClient, simulator: Simulator, representation: object
) -> None:
    body = await entities(federated, [representation, rep(DOCS)])
    assert codes(body) == [(["_entities", 0], "BAD_USER_INPUT")]
    assert body["data"]["_entities"][0] is None
    assert body["data"]["_entities"][1]["sessionUuid"] == DOCS
    assert simulator.served() == 1


async def test_a_single_representation_not_in_a_list_is_one(federated: httpx.AsyncClient) -> None:
    body = await entities(federated, rep(DOCS))  # GraphQL coerces a value to a list of one
    assert [item["sessionUuid"] for item in body["data"]["_entities"]] == [DOCS]


async def test_deeply_nested_representations_are_ignored_or_refused_never_a_crash(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    nested: object = "x"
    for _ in range(200):
        nested = {"a": nested}
    body = await entities(federated, [{**rep(DOCS), "extra": nested}])
    assert [item["sessionUuid"] for item in body["data"]["_entities"]] == [DOCS]
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    text = f'{{"query": {json.dumps(ENTITIES)}, "variables": {{"r": [{deep}]}}}}'
    response = await federated.post(
        "/graphql", content=text, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert simulator.served() == 1


async def test_entities_given_literally_resolve_too(federated: httpx.AsyncClient) -> None:
    query = (
        f'{{ _entities(representations: [{{__typename: "VerifySession", sessionUuid: "{DOCS}"}}])'
        " { ... on VerifySession { status } } }"
    )
    response = await federated.post("/graphql", json={"query": query})
    assert response.json()["data"] == {"_entities": [{"status": "EXPIRED"}]}


async def test_entities_spend_the_callers_share_of_the_plivo_budget(
    simulator: Simulator,
) -> None:
    settings = make_settings(
        simulator.url,
        GATEWAY_FEDERATION="true",
        PLIVO_BUDGET_REQUESTS="2",
        PLIVO_BUDGET_WINDOW="60",
        GATEWAY_KEY_BUDGET_SHARE="1",
    )
    async with gateway_client(settings) as client:
        body = await entities(client, [rep(str(uuids.uuid4())) for _ in range(3)])
    assert sorted(code for _, code in codes(body)) == ["RATE_LIMITED"]
    assert body["data"]["_entities"].count(None) == 3
    assert simulator.served() == 2


# --- scopes and credentials ----------------------------------------------------------------------


async def test_entities_needs_the_read_scope(
    keyed: httpx.AsyncClient, simulator: Simulator
) -> None:
    body = await entities(keyed, [rep(DOCS)], bearer(OPS))
    assert body["data"] is None  # `_entities` is [_Entity]!: its error nulls the data
    assert [error["extensions"] for error in body["errors"]] == [{"code": "FORBIDDEN"}]
    assert simulator.served() == 0
    read = await entities(keyed, [rep(DOCS)], bearer(READER))
    assert read["data"]["_entities"][0]["sessionUuid"] == DOCS


async def test_the_sdl_needs_a_known_key_and_no_scope(keyed: httpx.AsyncClient) -> None:
    refused = await keyed.post("/graphql", json={"query": SERVICE})
    assert refused.status_code == 401
    for key in (OPS, READER):
        response = await keyed.post("/graphql", json={"query": SERVICE}, headers=bearer(key))
        assert response.json() == {"data": {"_service": {"sdl": FEDERATED.subgraph_sdl}}}


async def test_production_serves_the_sdl_though_introspection_is_off(
    simulator: Simulator,
) -> None:
    settings = make_settings(simulator.url, GATEWAY_FEDERATION="true", GATEWAY_ENV="production")
    async with gateway_client(settings) as client:
        sdl = await client.post("/graphql", json={"query": SERVICE})
        typed = await client.post("/graphql", json={"query": "{ __schema { types { name } } }"})
    assert sdl.json()["data"]["_service"]["sdl"] == FEDERATED.subgraph_sdl
    assert typed.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_a_pass_through_credential_resolves_entities_with_its_own_cache(
    keyed: httpx.AsyncClient, simulator: Simulator
) -> None:
    own = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "the-callers-wrong-token"}
    refused = await entities(keyed, [rep(DOCS)], bearer(BROKER) | own)
    assert codes(refused) == [(["_entities", 0], "UPSTREAM_UNAUTHENTICATED")]
    served = await entities(keyed, [rep(DOCS)], bearer(READER))
    assert served["extensions"]["cache"][DOCS]["status"] == "miss"
    again = await entities(keyed, [rep(DOCS), rep(DOCS)], bearer(BROKER) | own)
    assert codes(again) == [
        (["_entities", 0], "UPSTREAM_UNAUTHENTICATED"),
        (["_entities", 1], "UPSTREAM_UNAUTHENTICATED"),
    ]
    assert simulator.served() == 3  # nothing of one credential served the other


# --- cost ---------------------------------------------------------------------------------------

OVER = {"code": "QUERY_TOO_COMPLEX", "limit": "cost", "maximum": 20, "cost": 21}


async def test_representations_over_the_cost_limit_are_refused_before_any_plivo_call(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    many = [rep(str(uuids.uuid4())) for _ in range(21)]
    response = await federated.post("/graphql", json={"query": ENTITIES, "variables": {"r": many}})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == OVER
    assert "21 Plivo requests" in error["message"]
    literal = ", ".join(
        f'{{__typename: "VerifySession", sessionUuid: "{r["sessionUuid"]}"}}' for r in many
    )
    query = f"{{ _entities(representations: [{literal}]) {{ __typename }} }}"
    response = await federated.post("/graphql", json={"query": query})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == OVER
    assert simulator.served() == 0
    within = await entities(federated, [rep(DOCS)] * 20)  # cost 20, one GET
    assert "errors" not in within
    assert simulator.served() == 1


async def test_ten_thousand_representations_are_refused_whole(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    response = await federated.post(
        "/graphql", json={"query": ENTITIES, "variables": {"r": [{}] * 10_000}}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["cost"] == 10_000
    assert simulator.served() == 0


async def test_a_variables_default_is_counted_when_it_is_not_given(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    listed = ", ".join(["{}"] * 21)
    query = (
        f"query E($r: [_Any!]! = [{listed}]) {{ _entities(representations: $r) {{ __typename }} }}"
    )
    response = await federated.post("/graphql", json={"query": query})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == OVER
    assert simulator.served() == 0


async def test_a_batch_and_a_get_count_their_representations(
    federated: httpx.AsyncClient, simulator: Simulator
) -> None:
    def item(count: int) -> dict[str, object]:
        return {"query": ENTITIES, "variables": {"r": [rep(DOCS)] * count}}

    batch = await federated.post("/graphql", json=[item(11), item(10)])
    assert batch.status_code == 400
    assert batch.json()["errors"][0]["extensions"] == OVER
    params = {"query": ENTITIES, "variables": json.dumps({"r": [rep(DOCS)] * 21})}
    got = await federated.get("/graphql", params=params)
    assert got.status_code == 400
    assert got.json()["errors"][0]["extensions"] == OVER
    assert simulator.served() == 0
    within = await federated.post("/graphql", json=[item(10), item(10)])
    assert [len(r["data"]["_entities"]) for r in within.json()] == [10, 10]
    assert simulator.served() == 1


@pytest.fixture
def federated_server(simulator: Simulator) -> Iterator[str]:
    settings = slow_watch_settings(simulator.url, GATEWAY_FEDERATION="true")
    with serve_in_thread(create_app(settings), lifespan=True) as url:
        yield url


async def test_a_websocket_operation_counts_its_representations(
    federated_server: str, simulator: Simulator
) -> None:
    error = first_error(await ws_run(federated_server, ENTITIES, {"r": [rep(DOCS)] * 21}))
    assert error["extensions"] == OVER
    assert simulator.served() == 0
    within = await ws_run(federated_server, ENTITIES, {"r": [rep(DOCS), rep(VERIFIED)]})
    assert [m["type"] for m in within] == ["next", "complete"]
    served = within[0]["payload"]["data"]["_entities"]
    assert [item["sessionUuid"] for item in served] == [DOCS, VERIFIED]


FED_SCHEMA = FEDERATED._schema
LIST = "[_Any!]!"
BY_VARIABLE = "_entities(representations: $r) { __typename }"


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("{ _service { sdl } }", None, 0),
        ("{ _entities(representations: [{a: 1}, {b: 2}, {c: 3}]) { __typename } }", None, 3),
        ("{ _entities(representations: {a: 1}) { __typename } }", None, 1),
        (
            "query($a: _Any!, $b: _Any!) { _entities(representations: [$a, $b]) { __typename } }",
            {"a": 1, "b": 2},
            2,
        ),
        (f"query($r: {LIST}) {{ {BY_VARIABLE} }}", {"r": [{}] * 5}, 5),
        (f"query($r: {LIST}) {{ {BY_VARIABLE} }}", {"r": {}}, 1),
        (f"query($r: {LIST}) {{ {BY_VARIABLE} }}", {"r": []}, 0),
        (f"query($r: {LIST} = [{{}}, {{}}]) {{ {BY_VARIABLE} }}", None, 2),
        (f"query($r: {LIST} = [{{}}, {{}}]) {{ {BY_VARIABLE} }}", {"r": [{}]}, 1),
        (
            f"query($r: {LIST}) {{ ...F ...F }} fragment F on Query {{ {BY_VARIABLE} }}",
            {"r": [{}] * 3},
            6,
        ),
        (
            f'query($r: {LIST}) {{ a: {BY_VARIABLE} b: session(uuid: "{DOCS}") {{ status }} }}',
            {"r": [{}] * 3},
            4,
        ),
    ],
)
def test_each_representation_costs_one_plivo_request(
    query: str, variables: dict[str, Any] | None, cost: int
) -> None:
    documents = Documents(FED_SCHEMA, max_tokens=2000, max_depth=8)
    document = documents.get(query)
    assert documents.validate(document) == []
    admission = Admission(FED_SCHEMA, QueryLimits())
    assert admission.cost(document, document.operation(None), variables) == cost


def test_the_cost_of_entities_is_read_off_the_schema() -> None:
    admission = Admission(FED_SCHEMA, QueryLimits())
    assert admission.costs[("Query", "_entities")] == 1
    assert admission.each == {("Query", "_entities"): "representations"}
    assert ("Query", "_service") not in admission.costs
    assert Admission(PLAIN._schema, QueryLimits()).each == {}


# --- the fast path leaves federation to Strawberry ---------------------------------------------


class Untouchable:
    """A SessionReader that fails the test if it is ever asked."""

    async def get(self, session_uuid: str, *, refresh: bool = False, caller: str = "") -> Any:
        raise AssertionError("the fast path read a session")


@pytest.mark.parametrize(
    "query",
    [
        ENTITIES,
        SERVICE,
        "{ __typename _service { sdl } }",
        f'{{ session(uuid: "{DOCS}") {{ status }} _service {{ sdl }} }}',
        f'query($r: {LIST}) {{ session(uuid: "{DOCS}") {{ status }} '
        "_entities(representations: $r) { __typename } }",
    ],
)
async def test_the_fast_path_declines_federation_fields_before_any_io(query: str) -> None:
    documents = Documents(FED_SCHEMA, max_tokens=2000, max_depth=8)
    document = documents.get(query)
    assert documents.validate(document) == []
    context = Context(Untouchable(), scopes=frozenset({"read"}))
    fast = FastPath(FED_SCHEMA)
    assert await fast.run(document, document.operation(None), {"r": [rep(DOCS)]}, context) is None
    assert context.cache_report == {}
