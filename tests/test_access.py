"""API keys, scopes and pass-through credentials, over HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest

from gateway import fixtures
from gateway.config import parse_api_keys
from gateway.errors import ConfigError
from gateway.operations.principals import key_digest
from tests.conftest import AUTH_ID, Simulator, gateway_client, graphql, make_settings

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
READER, OPS, BROKER = "reader-key-0000", "ops-key-1111", "broker-key-2222"
KEYS = ",".join(
    [
        f"frontend:{key_digest(READER)}:read",
        f"ops:{key_digest(OPS)}:write",
        f"broker:{key_digest(BROKER)}:read+passthrough",
    ]
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(
    client: httpx.AsyncClient, headers: Mapping[str, str] | Mapping[bytes, bytes]
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": QUERY, "variables": {"uuid": UUID}}, headers=headers
    )


@pytest.fixture
async def keyed(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS)
    async with gateway_client(settings) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic cmVhZGVyOmtleQ=="},
        {"Authorization": "Bearer not-a-known-key"},
        {"Authorization": f"Bearer {READER}x"},
    ],
)
async def test_missing_malformed_or_unknown_keys_get_401(
    keyed: httpx.AsyncClient, simulator: Simulator, headers: dict[str, str]
) -> None:
    response = await post(keyed, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert simulator.served() == 0


async def test_odd_unicode_in_the_key_is_401(keyed: httpx.AsyncClient) -> None:
    odd = {b"Authorization": "Bearer \u202ereader-key-0000\u0000".encode()}
    response = await post(keyed, odd)
    assert response.status_code == 401


async def test_a_key_with_the_read_scope_reads(keyed: httpx.AsyncClient) -> None:
    response = await post(keyed, bearer(READER))
    assert response.status_code == 200
    assert response.json()["data"]["session"]["sessionUuid"] == UUID


async def test_a_key_without_the_read_scope_is_forbidden(
    keyed: httpx.AsyncClient, simulator: Simulator
) -> None:
    response = await post(keyed, bearer(OPS))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"session": None}
    assert body["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert simulator.served() == 0


async def test_pass_through_headers_without_the_scope_are_forbidden(
    keyed: httpx.AsyncClient, simulator: Simulator
) -> None:
    headers = bearer(READER) | {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "x"}
    response = await post(keyed, headers)
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "data" not in response.json()
    assert simulator.served() == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"X-Plivo-Auth-Id": AUTH_ID},
        {"X-Plivo-Auth-Token": "only-a-token"},
        {"X-Plivo-Auth-Id": "MA../../x", "X-Plivo-Auth-Token": "t"},
    ],
)
async def test_incomplete_pass_through_headers_are_400(
    keyed: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    response = await post(keyed, bearer(BROKER) | extra)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_pass_through_credential_is_used_upstream_and_isolated(
    keyed: httpx.AsyncClient, simulator: Simulator
) -> None:
    own = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "the-callers-wrong-token"}
    refused = await post(keyed, bearer(BROKER) | own)
    assert refused.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAUTHENTICATED"
    served = await post(keyed, bearer(READER))
    assert served.json()["data"]["session"]["sessionUuid"] == UUID
    assert served.json()["extensions"]["cache"][UUID]["status"] == "miss"
    again = await post(keyed, bearer(BROKER) | own)
    assert again.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAUTHENTICATED"
    assert simulator.served() == 3  # nothing cached for one credential served the other


async def test_health_readiness_and_metrics_need_no_key(keyed: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await keyed.get(path)).status_code == 200


def test_keys_file_and_rotation() -> None:
    keys = parse_api_keys(
        f"# rotating the frontend key\nfrontend-old:{key_digest('old')}:read\n"
        f"frontend-new:{key_digest('new')}:read\n"
    )
    assert [key.name for key in keys] == ["frontend-old", "frontend-new"]
    assert "old" not in repr(keys[0]).replace("frontend-old", "")


@pytest.mark.parametrize(
    "text",
    [
        "name",
        "n:abc:read",
        f"n:{key_digest('k')}:admin",
        f"n:{key_digest('k')}:",
        f"a:{key_digest('k')}:read,a:{key_digest('j')}:read",
    ],
)
def test_malformed_key_entries_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"entries|scopes|twice"):
        parse_api_keys(text)


async def test_a_keys_file_is_read(simulator: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"frontend:{key_digest(READER)}:read\n")
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS_FILE=str(path))
    async with gateway_client(settings) as client:
        assert (await post(client, bearer(READER))).status_code == 200
        assert (await post(client, {})).status_code == 401


def test_a_key_named_in_both_sources_stops_start_up(simulator: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"frontend:{key_digest('second')}:write\n")
    with pytest.raises(ConfigError) as caught:
        make_settings(
            simulator.url,
            GATEWAY_AUTH="keys",
            GATEWAY_API_KEYS=f"frontend:{key_digest('first')}:read",
            GATEWAY_API_KEYS_FILE=str(path),
        )
    assert caught.value.problems == [
        "GATEWAY_API_KEYS and GATEWAY_API_KEYS_FILE both name frontend: a key name must be unique"
    ]


async def test_without_keys_graphql_needs_gateway_auth_none(simulator: Simulator) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_AUTH=none"):
        make_settings(simulator.url, GATEWAY_AUTH="keys")
    async with gateway_client(make_settings(simulator.url)) as client:
        body = await graphql(client, QUERY, {"uuid": UUID})
    assert body["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}


async def test_two_keys_under_one_name_never_share_an_answer(simulator: Simulator) -> None:
    # Start-up refuses one name twice; should two keys still share a name (a file edited
    # while a key rotates), everything per key goes by the key's digest: a write-only key
    # never reads what a read key fetched, nor spends its throttles.

    same = parse_api_keys(f"frontend:{key_digest(READER)}:read\nother:{key_digest(OPS)}:write")
    renamed = (same[0], dataclasses.replace(same[1], name="frontend"))
    settings = dataclasses.replace(
        make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS), api_keys=renamed
    )
    async with gateway_client(settings) as client:
        first = await post(client, bearer(READER))
        assert first.json()["data"]["session"]["status"] == "EXPIRED"
        second = await post(client, bearer(OPS))  # the same request, the write-only key
        assert second.json()["data"] == {"session": None}
        assert second.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
