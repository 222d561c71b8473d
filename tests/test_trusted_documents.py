"""Trusted documents (a manifest) and automatic persisted queries, on every transport."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import fixtures
from gateway.app import create_app
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.operations import OperationRequest, PersistedDocuments
from gateway.operations.documents import Document
from tests.conftest import Simulator, gateway_client, make_settings
from tests.node_tools import run_node
from tests.servers import free_port, serve_in_thread
from tests.test_subscriptions import messages, socket

ROOT = Path(__file__).resolve().parents[1]
DOCS = fixtures.DOCS_EXAMPLE_UUID
SESSION = "query Session($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
TYPENAME = "query Typename { __typename }"
FREE = "{ __typename }"  # in no manifest
STRICT = {"Accept": "application/graphql-response+json"}


def hex_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def id_of(text: str) -> str:
    return "sha256:" + hex_of(text)


def write_manifest(folder: Path, documents: object, name: str = "m.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(documents))
    return path


def codegen(*texts: str) -> dict[str, str]:
    """GraphQL Code Generator's client preset (`persistedDocuments: true`): bare hex keys."""
    return {hex_of(text): text for text in texts}


def apollo(*texts: str) -> dict[str, object]:
    operations = [
        {"id": hex_of(t), "name": t.split()[1].split("(")[0], "type": "query", "body": t}
        for t in texts
    ]
    return {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}


@asynccontextmanager
async def gateway_with(
    simulator: Simulator, manifest: Path | None = None, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    if manifest is not None:
        settings["GATEWAY_TRUSTED_DOCUMENTS"] = str(manifest)
    async with gateway_client(make_settings(simulator.url, **settings)) as client:
        yield client


def first_code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def apq(text: str | None, digest: str, **extra: object) -> dict[str, object]:
    """An Apollo APQ body: the hash in extensions.persistedQuery, the text when given."""
    body: dict[str, object] = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    }
    if text is not None:
        body["query"] = text
    return body | extra


# --- the manifest, loaded once ----------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda: codegen(SESSION, TYPENAME), id="codegen-bare-hex"),
        pytest.param(lambda: {id_of(t): t for t in (SESSION, TYPENAME)}, id="sha256-prefixed"),
        pytest.param(lambda: apollo(SESSION, TYPENAME), id="apollo-manifest"),
    ],
)
async def test_each_manifest_shape_serves_its_documents_by_document_id(
    simulator: Simulator, tmp_path: Path, shape: Any
) -> None:
    manifest = write_manifest(tmp_path, shape())
    async with gateway_with(simulator, manifest) as client:
        for document_id in (id_of(SESSION), hex_of(SESSION), hex_of(SESSION).upper()):
            body = {"documentId": document_id, "variables": {"uuid": DOCS}}
            answer = (await client.post("/graphql", json=body)).json()
            assert "errors" not in answer, answer
            assert answer["data"]["session"]["sessionUuid"] == DOCS
        typed = (await client.post("/graphql", json={"documentId": id_of(TYPENAME)})).json()
    assert typed == {"data": {"__typename": "Query"}}


DEEP = 'query Deep { session(uuid: "x") { attempts { status } } }'
COSTLY = "{ " + " ".join(f'a{i}: session(uuid: "{DOCS}") {{ status }}' for i in range(21)) + " }"
BAD_MANIFESTS: dict[str, tuple[Any, str, dict[str, str]]] = {
    "hash mismatch": ({hex_of(TYPENAME): SESSION}, "is not the sha256 of its text", {}),
    "invalid document": (codegen("query V { nope }"), "fails validation (Cannot query field", {}),
    "syntax error": (codegen("query S { "), "does not parse (Syntax Error", {}),
    "over the depth limit": (
        codegen(DEEP),
        "over the depth limit of 2",
        {"GATEWAY_MAX_DEPTH": "2"},
    ),
    "over the token limit": (
        codegen("{ " + "__typename " * 3000 + "}"),
        "over the tokens limit of 2000",
        {},
    ),
    "over the alias limit": (
        codegen("{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }"),
        "over the aliases limit of 20",
        {},
    ),
    "over the cost limit": (
        codegen(COSTLY),
        "may cause 21 Plivo requests; the cost limit is 20",
        {"GATEWAY_MAX_ALIASES": "50"},
    ),
    "introspection in production": (
        codegen("query I { __schema { queryType { name } } }"),
        "fails validation (GraphQL introspection has been disabled",
        {"GATEWAY_ENV": "production"},
    ),
    "not a hash": ({"Session": SESSION}, "is not named by a sha256 hash", {}),
    "not a string": ({hex_of(SESSION): 7}, "is not a string", {}),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_document_stops_start_up_naming_the_file_and_the_document(
    tmp_path: Path, case: str
) -> None:
    documents, problem, extra = BAD_MANIFESTS[case]
    manifest = write_manifest(tmp_path, documents)
    settings = make_settings("http://127.0.0.1:1", GATEWAY_TRUSTED_DOCUMENTS=manifest, **extra)
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    (line,) = caught.value.problems
    assert line.startswith(f"GATEWAY_TRUSTED_DOCUMENTS {manifest}: document ")
    assert problem in line
    assert "\n" not in line
    key = next(iter(documents))
    if case != "not a hash":
        assert f"sha256:{key}" in line  # the document named by its id


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a manifest"),
        ('{"format": "something-else", "operations": []}', "is of an unknown format"),
        (
            '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": 3}',
            "is malformed",
        ),
    ],
)
def test_a_malformed_manifest_stops_start_up_with_one_line(
    tmp_path: Path, content: str, problem: str
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(content)
    settings = make_settings("http://127.0.0.1:1", GATEWAY_TRUSTED_DOCUMENTS=manifest)
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    (line,) = caught.value.problems
    assert line.startswith(f"GATEWAY_TRUSTED_DOCUMENTS {manifest} {problem}")


def test_an_unreadable_manifest_is_named_with_the_reason(tmp_path: Path) -> None:
    from gateway.operations import Admission, Documents, QueryLimits, load_manifest
    from gateway.schema import build_schema

    schema = build_schema()._schema
    documents = Documents(schema, max_tokens=2000, max_depth=8)
    with pytest.raises(ConfigError) as caught:
        load_manifest(tmp_path, documents, Admission(schema, QueryLimits()))  # a directory
    assert caught.value.problems == [
        f"GATEWAY_TRUSTED_DOCUMENTS {tmp_path} cannot be read (Is a directory)"
    ]


def test_a_missing_manifest_and_only_trusted_without_one_are_settings_problems(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(
            "http://127.0.0.1:1",
            GATEWAY_TRUSTED_DOCUMENTS=tmp_path / "absent.json",
            GATEWAY_APQ_REGISTRATION="maybe",
        )
    assert caught.value.problems == [
        f"GATEWAY_TRUSTED_DOCUMENTS {tmp_path / 'absent.json'} is not a file (a JSON manifest of"
        " trusted documents)",
        "GATEWAY_APQ_REGISTRATION must be true or false",
    ]
    with pytest.raises(ConfigError, match="GATEWAY_ONLY_TRUSTED_DOCUMENTS=true needs"):
        make_settings("http://127.0.0.1:1", GATEWAY_ONLY_TRUSTED_DOCUMENTS="true")


def test_apq_registration_is_on_in_development_and_off_in_production_unless_set() -> None:
    def read(**env: str) -> Settings:
        return make_settings("http://127.0.0.1:1", **env)

    assert read().apq_registration is True
    assert read(GATEWAY_ENV="production").apq_registration is False
    assert read(GATEWAY_ENV="production", GATEWAY_APQ_REGISTRATION="true").apq_registration
    assert not read(GATEWAY_APQ_REGISTRATION="off").apq_registration
    assert read().only_trusted_documents is False


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PLIVO_", "GATEWAY_"))}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_bad_manifest_with_one_line_and_exit_2(
    tmp_path: Path, workers: str
) -> None:
    from tests.redis_server import require_shared_redis

    manifest = write_manifest(tmp_path, {hex_of(TYPENAME): SESSION})
    env = CLEAN_ENV | {
        "PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG",
        "PLIVO_AUTH_TOKEN": "t",
        "GATEWAY_AUTH": "none",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_TRUSTED_DOCUMENTS": str(manifest),
    }
    if workers != "1":  # several workers need a shared fleet; the manifest is checked first
        env["GATEWAY_CACHE_URL"] = require_shared_redis()
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--workers", workers],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"plivo-gateway: configuration error: GATEWAY_TRUSTED_DOCUMENTS {manifest}: document"
        f" {id_of(TYPENAME)} is not the sha256 of its text"
    )


# --- documents by id, on every transport --------------------------------------------------------


async def test_a_document_id_by_get_is_a_short_url(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    async with gateway_with(simulator, manifest) as client:
        params = {"documentId": id_of(SESSION), "variables": json.dumps({"uuid": DOCS})}
        answer = await client.get("/graphql", params=params)
        browser = await client.get("/graphql", params=params, headers={"Accept": "text/html"})
    assert answer.status_code == 200
    assert answer.json()["data"]["session"]["sessionUuid"] == DOCS
    assert browser.headers["content-type"].startswith("application/json")  # not GraphiQL


async def test_document_ids_in_a_batch_are_answered_item_by_item(
    simulator: Simulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION, TYPENAME))
    unknown = id_of("query Unknown { __typename }")
    batch = [
        {"documentId": id_of(SESSION), "variables": {"uuid": DOCS}},
        {"documentId": hex_of(TYPENAME)},
        {"query": FREE},
        {"documentId": unknown},
    ]
    async with gateway_with(simulator, manifest) as client:
        response = await client.post("/graphql", json=batch)
    assert response.status_code == 200
    first, second, third, fourth = response.json()
    assert first["data"]["session"]["sessionUuid"] == DOCS
    assert second == third == {"data": {"__typename": "Query"}}
    assert fourth == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }


async def test_an_unknown_document_id_is_persisted_query_not_found(
    simulator: Simulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    body = {"documentId": id_of("query Unknown { __typename }")}
    async with gateway_with(simulator, manifest) as client:
        as_json = await client.post("/graphql", json=body)
        strict = await client.post("/graphql", json=body, headers=STRICT)
    assert as_json.status_code == 200  # a request error: 200 with application/json
    assert strict.status_code == 400  # and 400 with application/graphql-response+json
    for response in (as_json, strict):
        assert "data" not in response.json()
        assert first_code(response.json()) == "PERSISTED_QUERY_NOT_FOUND"
    assert simulator.served() == 0


@contextmanager
def served_gateway(simulator: Simulator, **settings: object) -> Iterator[str]:
    """The gateway on a real loopback port (websockets, Apollo Client)."""
    app = create_app(make_settings(simulator.url, **settings))
    with serve_in_thread(app, lifespan=True) as url:
        yield url


async def ws_answer(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One operation over a fresh websocket: its first `next` or `error` message."""
    async with socket(url, {}) as ws:
        await messages(ws, "connection_ack")
        await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        seen = await messages(ws)
    answer: dict[str, Any] = next(m for m in seen if m["type"] in ("next", "error", "closed"))
    return answer


async def test_a_document_id_over_the_websocket(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    with served_gateway(simulator, GATEWAY_TRUSTED_DOCUMENTS=manifest) as url:
        by_id = await ws_answer(url, {"documentId": id_of(SESSION), "variables": {"uuid": DOCS}})
        by_hash = await ws_answer(url, apq(None, hex_of(SESSION), variables={"uuid": DOCS}))
        unknown = await ws_answer(url, {"documentId": id_of(FREE)})
        malformed = await ws_answer(url, {"documentId": "md5:abc"})
    for answer in (by_id, by_hash):
        assert answer["type"] == "next", answer
        assert answer["payload"]["data"]["session"]["sessionUuid"] == DOCS
    assert unknown["type"] == "error"
    assert unknown["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert malformed["type"] == "error"
    assert malformed["payload"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_the_metrics_label_of_an_operation_sent_by_id_is_its_document_id(
    simulator: Simulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    async with gateway_with(simulator, manifest) as client:
        body = {"documentId": hex_of(SESSION), "variables": {"uuid": DOCS}}
        assert "errors" not in (await client.post("/graphql", json=body)).json()
        by_text = {"query": SESSION, "variables": {"uuid": DOCS}, "operationName": "Session"}
        assert "errors" not in (await client.post("/graphql", json=by_text)).json()
        exposition = (await client.get("/metrics")).text
    assert f'gateway_requests_total{{operation="{id_of(SESSION)}",outcome="ok"}} 1.0' in exposition
    assert 'gateway_requests_total{operation="Session",outcome="ok"} 1.0' in exposition


# --- only trusted documents ---------------------------------------------------------------------


async def test_only_trusted_refuses_every_other_document_on_every_http_transport(
    simulator: Simulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    only = {"GATEWAY_ONLY_TRUSTED_DOCUMENTS": "true"}
    async with gateway_with(simulator, manifest, **only) as client:
        post = await client.post("/graphql", json={"query": FREE})
        strict = await client.post("/graphql", json={"query": FREE}, headers=STRICT)
        get = await client.get("/graphql", params={"query": FREE})
        registering = await client.post("/graphql", json=apq(FREE, hex_of(FREE)))
        batch = await client.post(
            "/graphql",
            json=[{"query": FREE}, {"documentId": id_of(SESSION), "variables": {"uuid": DOCS}}],
        )
        by_id = await client.post(
            "/graphql", json={"documentId": id_of(SESSION), "variables": {"uuid": DOCS}}
        )
        safelisted = await client.post(
            "/graphql", json={"query": SESSION, "variables": {"uuid": DOCS}}
        )
        hash_only = await client.post("/graphql", json=apq(None, hex_of(FREE)))
    for refused in (post, get, registering):
        assert refused.status_code == 200
        assert first_code(refused.json()) == "PERSISTED_QUERY_NOT_IN_LIST"
        assert "data" not in refused.json()
    assert strict.status_code == 400
    assert first_code(strict.json()) == "PERSISTED_QUERY_NOT_IN_LIST"
    refused_item, served_item = batch.json()
    assert first_code(refused_item) == "PERSISTED_QUERY_NOT_IN_LIST"
    assert served_item["data"]["session"]["sessionUuid"] == DOCS
    for served in (by_id, safelisted):  # by id, or exactly a manifest document's text
        assert served.json()["data"]["session"]["sessionUuid"] == DOCS
    assert first_code(hash_only.json()) == "PERSISTED_QUERY_NOT_FOUND"  # nothing was registered
    assert simulator.served() == 1  # the session's one read; the rest is the gateway's cache


async def test_only_trusted_holds_on_the_websocket_too(
    simulator: Simulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, codegen(SESSION))
    settings = {"GATEWAY_TRUSTED_DOCUMENTS": manifest, "GATEWAY_ONLY_TRUSTED_DOCUMENTS": "true"}
    with served_gateway(simulator, **settings) as url:
        free = await ws_answer(url, {"query": FREE})
        registering = await ws_answer(url, apq(FREE, hex_of(FREE)))
        trusted = await ws_answer(url, {"documentId": id_of(SESSION), "variables": {"uuid": DOCS}})
    for refused in (free, registering):
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert trusted["payload"]["data"]["session"]["sessionUuid"] == DOCS


async def test_trusted_documents_are_not_parsed_or_measured_at_request_time(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strawberry.schema.schema as strawberry_schema

    from gateway.operations.admission import Admission
    from gateway.operations.documents import Documents

    manifest = write_manifest(tmp_path, codegen(SESSION, TYPENAME))
    settings = make_settings(
        simulator.url, GATEWAY_TRUSTED_DOCUMENTS=manifest, GATEWAY_MAX_COST="2"
    )
    app = create_app(settings)  # the manifest is parsed, validated and measured here

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("a trusted document was parsed or measured again")

    for target, name in (
        ("gateway.operations.documents", "parse"),
        ("graphql", "parse"),
        ("graphql.validation", "validate"),
    ):
        monkeypatch.setattr(f"{target}.{name}", refuse)
    monkeypatch.setattr(strawberry_schema, "parse", refuse)
    monkeypatch.setattr(strawberry_schema, "validate_document", refuse)
    monkeypatch.setattr(Documents, "get", refuse)
    monkeypatch.setattr(Documents, "parse", refuse)
    monkeypatch.setattr(Admission, "document", refuse)
    item = {"documentId": id_of(SESSION), "variables": {"uuid": DOCS}}
    async with _client(app) as client:
        by_id = (await client.post("/graphql", json=item)).json()
        slow = (await client.post("/graphql", json={"documentId": id_of(TYPENAME)})).json()
        within = await client.post("/graphql", json=[item, item])
        over = await client.post("/graphql", json=[item, item, item])  # cost 3, the limit 2
        bad_variables = (await client.post("/graphql", json={**item, "variables": {}})).json()
    assert by_id["data"]["session"]["sessionUuid"] == DOCS
    assert slow == {"data": {"__typename": "Query"}}
    assert [answer["data"]["session"]["status"] for answer in within.json()] == ["EXPIRED"] * 2
    assert over.status_code == 400
    assert over.json()["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "cost",
        "maximum": 2,
        "cost": 3,
    }
    assert first_code(bad_variables) == "BAD_USER_INPUT"  # variables are still coerced


@asynccontextmanager
async def _client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


# --- APQ ------------------------------------------------------------------------------------


async def test_apq_registers_a_valid_document_and_serves_its_hash_after(
    simulator: Simulator,
) -> None:
    digest = hex_of(SESSION)
    variables = {"variables": {"uuid": DOCS}}
    async with gateway_with(simulator) as client:
        before = (await client.post("/graphql", json=apq(None, digest, **variables))).json()
        sent = (await client.post("/graphql", json=apq(SESSION, digest, **variables))).json()
        after = (await client.post("/graphql", json=apq(None, digest, **variables))).json()
        by_id = (await client.post("/graphql", json={"documentId": digest, **variables})).json()
        by_get = await client.get(
            "/graphql",
            params={
                "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}}),
                "variables": json.dumps({"uuid": DOCS}),
            },
        )
    assert before["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
    for answer in (sent, after, by_id, by_get.json()):
        assert answer["data"]["session"]["sessionUuid"] == DOCS, answer


async def test_apq_registers_nothing_that_fails_its_limits_or_validation(
    simulator: Simulator,
) -> None:
    deep = '{ session(uuid: "x") { attempts { status } } }'
    invalid = "{ nope }"
    async with gateway_with(simulator, GATEWAY_MAX_DEPTH="2") as client:
        over = await client.post("/graphql", json=apq(deep, hex_of(deep)))
        failed = await client.post("/graphql", json=apq(invalid, hex_of(invalid)))
        later = [
            (await client.post("/graphql", json=apq(None, hex_of(text)))).json()
            for text in (deep, invalid)
        ]
    assert over.status_code == 400
    assert first_code(over.json()) == "QUERY_TOO_COMPLEX"
    assert first_code(failed.json()) == "GRAPHQL_VALIDATION_FAILED"
    assert [first_code(answer) for answer in later] == ["PERSISTED_QUERY_NOT_FOUND"] * 2


async def test_a_hash_sent_with_another_text_is_refused_and_registers_nothing(
    simulator: Simulator,
) -> None:
    async with gateway_with(simulator) as client:
        mismatch = await client.post("/graphql", json=apq(FREE, hex_of(SESSION)))
        by_id = await client.post("/graphql", json={"query": FREE, "documentId": id_of(SESSION)})
        later = (await client.post("/graphql", json=apq(None, hex_of(SESSION)))).json()
    for response in (mismatch, by_id):
        assert response.status_code == 400
        assert first_code(response.json()) == "PERSISTED_QUERY_HASH_MISMATCH"
    assert first_code(later) == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"documentId": 12345},
        {"documentId": ["sha256:" + "0" * 64]},
        {"documentId": {"$gt": ""}},
        {"documentId": "sha256:" + "0" * 50_000},
        {"documentId": "md5:" + "0" * 32},
        {"documentId": "sha256:" + "z" * 64},
        {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}},
        {"extensions": {"persistedQuery": {"version": True, "sha256Hash": "0" * 64}}},
        {"extensions": {"persistedQuery": "0" * 64}},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": None}}},
        {"extensions": "not an object"},
        {"documentId": "0" * 64, **apq(None, "1" * 64)},
    ],
)
async def test_a_malformed_document_id_is_a_bad_request_never_echoed(
    simulator: Simulator, body: dict[str, object]
) -> None:
    async with gateway_with(simulator) as client:
        response = await client.post("/graphql", json=body)
        batch = await client.post("/graphql", json=[{"query": FREE}, body])
    for answer in (response, batch):
        assert answer.status_code == 400
        error = answer.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "0" * 32 not in error["message"]


def test_the_apq_store_stays_bounded_by_count_and_by_characters() -> None:
    persisted = PersistedDocuments(max_documents=3, max_characters=100)
    texts = [f"query Q{i} {{ __typename }}" for i in range(10)]  # 26 or 27 characters each
    for text in texts:
        persisted.register(id_of(text), text)
    assert len(persisted.registered) == 3
    assert persisted.registered.characters <= 100
    assert persisted.find(OperationRequest(None, document_id=id_of(texts[-1]))) == texts[-1]
    oldest = persisted.find(OperationRequest(None, document_id=id_of(texts[0])))
    assert not isinstance(oldest, str)  # dropped: PersistedQueryNotFound
    long = "query Long { " + "__typename " * 10 + "}"  # over the characters alone
    persisted.register(id_of(long), long)
    assert not isinstance(persisted.find(OperationRequest(None, document_id=id_of(long))), str)
    narrow = PersistedDocuments(max_documents=1000, max_characters=60)
    for text in texts:
        narrow.register(id_of(text), text)
    assert len(narrow.registered) == 2  # 48 characters: the characters bound the count here
    assert narrow.registered.characters <= 60


def test_a_registration_under_another_documents_hash_is_never_kept() -> None:
    persisted = PersistedDocuments()
    persisted.register(id_of(SESSION), FREE)  # the transports refuse this; the store does too
    assert len(persisted.registered) == 0
    off = PersistedDocuments(registration=False)
    off.register(id_of(FREE), FREE)
    assert len(off.registered) == 0
    only = PersistedDocuments({}, only_trusted=True)
    only.register(id_of(FREE), FREE)
    assert len(only.registered) == 0


def test_a_trusted_document_is_found_by_id_and_by_its_exact_text() -> None:
    document = Document(TYPENAME, None, None)
    persisted = PersistedDocuments({id_of(TYPENAME): document}, only_trusted=True)
    assert persisted.find(OperationRequest(None, document_id=id_of(TYPENAME))) is document
    assert persisted.find(OperationRequest(TYPENAME)) is document
    refused = persisted.find(OperationRequest(TYPENAME + " "))
    assert not isinstance(refused, str | Document)
    assert refused.extensions == {"code": "PERSISTED_QUERY_NOT_IN_LIST"}


async def test_with_registration_off_hash_and_text_is_served_and_nothing_is_kept(
    simulator: Simulator, tmp_path: Path
) -> None:
    digest = hex_of(SESSION)
    variables = {"variables": {"uuid": DOCS}}
    manifest = write_manifest(tmp_path, codegen(TYPENAME))
    async with gateway_with(simulator, GATEWAY_ENV="production") as client:
        sent = (await client.post("/graphql", json=apq(SESSION, digest, **variables))).json()
        again = (await client.post("/graphql", json=apq(None, digest, **variables))).json()
    async with gateway_with(simulator, manifest, GATEWAY_APQ_REGISTRATION="false") as client:
        with_manifest = await client.post("/graphql", json=apq(SESSION, digest, **variables))
        still = (await client.post("/graphql", json=apq(None, digest, **variables))).json()
    assert sent["data"]["session"]["sessionUuid"] == DOCS
    assert with_manifest.json()["data"]["session"]["sessionUuid"] == DOCS
    # No manifest and no registration: no hash can ever be served, so Apollo Client is told to
    # stop sending hashes; with a manifest, an unknown hash is only not found.
    assert again["errors"] == [
        {
            "message": "PersistedQueryNotSupported",
            "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
        }
    ]
    assert first_code(still) == "PERSISTED_QUERY_NOT_FOUND"


# --- a real Apollo Client ---------------------------------------------------------------------


def apollo_client(url: str, *, repeat: int = 1, get: bool = False) -> dict[str, Any]:
    payload = {
        "url": f"{url}/graphql",
        "headers": {},
        "query": SESSION,
        "variables": {"uuid": DOCS},
        "repeat": repeat,
        "get": get,
    }
    ran: dict[str, Any] = run_node("apq.mjs", payload)
    for result in ran["results"]:
        assert result["errors"] == [], ran
        assert result["data"]["session"]["sessionUuid"] == DOCS, ran
    return ran


def persisted_query(request: dict[str, Any]) -> Any:
    if request["method"] == "GET":
        return json.loads(request["params"]["extensions"])["persistedQuery"]
    return (request["body"].get("extensions") or {}).get("persistedQuery")


def has_text(request: dict[str, Any]) -> bool:
    where = request["params"] if request["method"] == "GET" else request["body"]
    return "query" in where


@pytest.mark.parametrize("get", [False, True], ids=["post", "get-for-hashed-queries"])
def test_apollo_clients_apq_exchange_registers_then_sends_the_hash_alone(
    simulator: Simulator, get: bool
) -> None:
    with served_gateway(simulator) as url:
        first = apollo_client(url, get=get)
        second = apollo_client(url, get=get)
    hashed, retried = first["sent"]
    assert not has_text(hashed)
    assert persisted_query(hashed)["version"] == 1
    assert hashed["response"]["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert has_text(retried)
    assert persisted_query(retried) == persisted_query(hashed)
    (again,) = second["sent"]  # a new client: the hash alone, now known
    assert not has_text(again)
    assert persisted_query(again) == persisted_query(hashed)
    assert again["response"]["data"]["session"]["sessionUuid"] == DOCS


def test_apollo_client_gets_its_data_in_production_and_nothing_is_registered(
    simulator: Simulator, tmp_path: Path
) -> None:
    with served_gateway(simulator, GATEWAY_ENV="production") as url:
        ran = apollo_client(url, repeat=2)
        hashed = apq(None, persisted_query(ran["sent"][0])["sha256Hash"])
        later = httpx.post(f"{url}/graphql", json=hashed | {"variables": {"uuid": DOCS}})
    hashed_first, with_text, second_operation = ran["sent"]
    code = hashed_first["response"]["errors"][0]["extensions"]["code"]
    assert code == "PERSISTED_QUERY_NOT_SUPPORTED"
    assert has_text(with_text)
    assert persisted_query(with_text) is None
    assert has_text(second_operation)
    assert persisted_query(second_operation) is None
    assert first_code(later.json()) == "PERSISTED_QUERY_NOT_SUPPORTED"  # nothing registered
    manifest = write_manifest(tmp_path, codegen(TYPENAME))
    settings = {"GATEWAY_ENV": "production", "GATEWAY_TRUSTED_DOCUMENTS": manifest}
    with served_gateway(simulator, **settings) as url:
        runs = [apollo_client(url)["sent"] for _ in range(2)]
    for hashed_alone, retried in runs:  # each run: not found, then the text, never kept
        assert hashed_alone["response"]["errors"][0]["extensions"]["code"] == (
            "PERSISTED_QUERY_NOT_FOUND"
        )
        assert has_text(retried)
        assert persisted_query(retried) is not None
