"""Input as an attacker would send it: a clear 4xx or a GraphQL error, never a 5xx."""

from __future__ import annotations

import httpx
import pytest

from gateway import fixtures
from gateway.operations.principals import key_digest
from tests.conftest import Simulator, gateway_client, make_settings

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid } }"


@pytest.mark.parametrize(
    "uuid",
    [
        f"{UUID}/../../Call",
        f"{UUID}?limit=20",
        f"{UUID}#x",
        f"{UUID}%2F..",
        "../" * 20,
        "\u0000" * 36,
        "60ea68db\u2010b123\u2010" + "46d9\u20109eb2\u20101201d516dbbd",  # unicode hyphens
        "🍓" * 36,
        "x" * 100_000,
    ],
)
async def test_injection_in_the_uuid_never_reaches_plivo(
    gateway: httpx.AsyncClient, simulator: Simulator, uuid: str
) -> None:
    response = await gateway.post("/graphql", json={"query": QUERY, "variables": {"uuid": uuid}})
    assert response.status_code in (200, 413)
    if response.status_code == 200:
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert simulator.served() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"query": QUERY, "variables": {"uuid": 12345}},
        {"query": QUERY, "variables": {"uuid": None}},
        {"query": QUERY, "variables": {"uuid": [UUID]}},
        {"query": QUERY, "variables": {"uuid": {"$gt": ""}}},
        {"query": "\u0000{ __typename }"},
        {"query": '{ session(uuid: "\u202e") { sessionUuid } }'},
        {"query": "query { __typename } query { __typename }"},
        {"query": "subscription { x }"},
        {"query": "{ __typename }", "extensions": "not an object"},
    ],
)
async def test_odd_documents_and_variables_get_graphql_errors(
    gateway: httpx.AsyncClient, simulator: Simulator, body: dict[str, object]
) -> None:
    response = await gateway.post("/graphql", json=body)
    assert response.status_code < 500
    payload = response.json()
    if "errors" in payload:
        assert all(e["extensions"]["code"] != "INTERNAL_SERVER_ERROR" for e in payload["errors"])
    assert simulator.served() == 0


@pytest.mark.parametrize(
    "content",
    [
        b'{"query": "{ __typename }", "variables": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"query": "{ __typename }", "query": 7}',
        b"\xff\xfe{}",
    ],
)
async def test_malformed_json_is_400(gateway: httpx.AsyncClient, content: bytes) -> None:
    headers = {"content-type": "application/json"}
    response = await gateway.post("/graphql", content=content, headers=headers)
    assert response.status_code in (400, 413)


async def test_a_lone_surrogate_is_refused_not_a_crash(gateway: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    content = b'{"query": "{ session(uuid: \\"\\ud800\\") { sessionUuid } }"}'
    response = await gateway.post("/graphql", content=content, headers=headers)
    assert response.status_code == 400  # not valid Unicode, so not valid JSON
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/graphql", "multipart/form-data", ""]
)
async def test_wrong_content_types_are_415(gateway: httpx.AsyncClient, content_type: str) -> None:
    response = await gateway.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers={"content-type": content_type}
    )
    assert response.status_code == 415


async def test_a_revoked_key_is_refused(simulator: Simulator) -> None:
    old, new = "old-key-value", "new-key-value"
    both = f"old:{key_digest(old)}:read,new:{key_digest(new)}:read"
    only_new = f"new:{key_digest(new)}:read"
    body = {"query": QUERY, "variables": {"uuid": UUID}}
    for keys, expected in ((both, (200, 200)), (only_new, (401, 200))):
        settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=keys)
        async with gateway_client(settings) as client:
            statuses = []
            for key in (old, new):
                headers = {"Authorization": f"Bearer {key}"}
                statuses.append(
                    (await client.post("/graphql", json=body, headers=headers)).status_code
                )
        assert tuple(statuses) == expected
