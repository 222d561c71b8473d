"""GraphQL over HTTP: GET and POST, content negotiation, malformed requests, GraphiQL, health."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from gateway import fixtures
from gateway.web import graphiql
from tests.conftest import Simulator, gateway_client, make_settings

QUERY = f'{{ session(uuid: "{fixtures.DOCS_EXAMPLE_UUID}") {{ sessionUuid status }} }}'
EXPECTED = {"session": {"sessionUuid": fixtures.DOCS_EXAMPLE_UUID, "status": "EXPIRED"}}


def error_code(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    assert len(errors) == 1
    code: str = errors[0]["extensions"]["code"]
    return code


async def test_post_json_answers(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/graphql", json={"query": QUERY})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] == EXPECTED


async def test_get_with_query_string_answers(gateway: httpx.AsyncClient) -> None:
    variables = json.dumps({"uuid": fixtures.DOCS_EXAMPLE_UUID})
    query = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
    response = await gateway.get(
        "/graphql", params={"query": query, "variables": variables, "operationName": "S"}
    )
    assert response.status_code == 200
    assert response.json()["data"] == EXPECTED


async def test_graphql_response_media_type_is_used_when_accepted(
    gateway: httpx.AsyncClient,
) -> None:
    headers = {"accept": "application/graphql-response+json, application/json;q=0.9"}
    response = await gateway.post("/graphql", json={"query": QUERY}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/graphql-response+json"
    assert response.json()["data"] == EXPECTED


@pytest.mark.parametrize(
    ("accept", "status"),
    [("application/graphql-response+json", 400), ("application/json", 200)],
)
async def test_validation_failure_status_follows_the_media_type(
    gateway: httpx.AsyncClient, accept: str, status: int
) -> None:
    response = await gateway.post(
        "/graphql", json={"query": "{ session(uuid: 1) { nope } }"}, headers={"accept": accept}
    )
    assert response.status_code == status
    assert "data" not in response.json()
    assert {e["extensions"]["code"] for e in response.json()["errors"]} == {
        "GRAPHQL_VALIDATION_FAILED"
    }


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "BAD_REQUEST"),
        (b"", 400, "BAD_REQUEST"),
        (b'"a string"', 400, "BAD_REQUEST"),
        (b"{}", 400, "BAD_REQUEST"),
        (b'{"query": 42}', 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }", "variables": [1]}', 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }", "operationName": 7}', 400, "BAD_REQUEST"),
        (b"[]", 400, "BAD_REQUEST"),
        (b"[1]", 400, "BAD_REQUEST"),
        (b"[" * 50_000, 400, "BAD_REQUEST"),
    ],
)
async def test_malformed_requests_get_400_never_500(
    gateway: httpx.AsyncClient, content: bytes, status: int, code: str
) -> None:
    response = await gateway.post(
        "/graphql", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert error_code(response) == code


async def test_wrong_content_type_is_415(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/graphql",
        content=b"query=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert error_code(response) == "BAD_REQUEST"


async def test_unacceptable_accept_is_406(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/graphql", json={"query": QUERY}, headers={"accept": "image/png"}
    )
    assert response.status_code == 406


async def test_oversized_body_is_413(gateway: httpx.AsyncClient, simulator: Simulator) -> None:
    padding = " " * (1 << 20)
    response = await gateway.post("/graphql", json={"query": QUERY + padding})
    assert response.status_code == 413
    assert error_code(response) == "PAYLOAD_TOO_LARGE"
    assert simulator.served() == 0


async def test_get_without_query_is_400(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/graphql", headers={"accept": "application/json"})
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


async def test_get_with_bad_variables_is_400(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/graphql", params={"query": QUERY, "variables": "{oops"})
    assert response.status_code == 400


async def test_mutation_by_get_is_405(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/graphql", params={"query": "mutation { x }"})
    assert response.status_code == 405
    assert error_code(response) == "BAD_REQUEST"


async def test_other_methods_are_405(gateway: httpx.AsyncClient) -> None:
    response = await gateway.put("/graphql", json={"query": QUERY})
    assert response.status_code == 405


async def test_browser_get_opens_graphiql(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/graphql", headers={"accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in response.text
    assert fixtures.DOCS_EXAMPLE_UUID in response.text


async def test_a_browser_get_with_an_empty_query_is_a_request_not_graphiql(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/graphql?query=", headers={"accept": "text/html,*/*"})
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


async def test_production_serves_no_graphiql(simulator: Simulator) -> None:
    settings = make_settings(simulator.url, GATEWAY_ENV="production")
    async with gateway_client(settings) as client:
        browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        page = await client.get("/graphql", headers={"accept": browser})
        introspection = await client.post(
            "/graphql", json={"query": "{ __schema { types { name } } }"}
        )
    assert page.status_code == 400
    assert "GraphiQL" not in page.text
    assert introspection.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_healthz_answers_200(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("accept", "status"),
    [("application/graphql-response+json", 400), ("application/json", 200)],
)
async def test_missing_variable_is_a_request_error_without_data(
    gateway: httpx.AsyncClient, accept: str, status: int
) -> None:
    query = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid } }"
    response = await gateway.post("/graphql", json={"query": query}, headers={"accept": accept})
    assert response.status_code == status
    assert "data" not in response.json()
    assert error_code(response) == "BAD_USER_INPUT"


async def test_graphiql_assets_are_served_locally_with_matching_integrity(
    gateway: httpx.AsyncClient,
) -> None:
    if graphiql.local_assets(None) is None:
        pytest.skip("GraphiQL assets are not installed (make assets needs npm)")
    page = (await gateway.get("/graphql", headers={"accept": "text/html"})).text
    for asset in graphiql.ASSETS:
        url = f"{graphiql.ASSET_PATH}/{asset.name}"
        assert url in page
        response = await gateway.get(url)
        assert response.status_code == 200
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert asset.integrity == f"sha384-{digest}"
    assert (await gateway.get(f"{graphiql.ASSET_PATH}/package.json")).status_code == 404
    assert (await gateway.get(f"{graphiql.ASSET_PATH}/..%2Fpackage.json")).status_code == 404


def test_without_local_assets_the_page_uses_the_cdn(tmp_path: Path) -> None:
    assert graphiql.local_assets(str(tmp_path)) is None
    page = graphiql.render_page(local=False)
    assert all(asset.cdn_url in page for asset in graphiql.ASSETS)
