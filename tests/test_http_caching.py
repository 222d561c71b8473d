"""HTTP caching for browsers and CDNs: Cache-Control from what an answer read, ETag, 304.

Real GETs through the app in front of the simulator. The transport's clock is the test's (the
wall clock plus an offset the test sets), and freshness left is checked against bounds the test
measures around each request: no sleeps, no timing thresholds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway import fixtures
from gateway.app import create_app
from gateway.config import Settings
from gateway.operations.principals import key_digest
from gateway.simulator.seed import seed_sessions
from gateway.web import FrontDoor, GraphQLHTTP
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator, eventually, make_settings

DOCS = fixtures.DOCS_EXAMPLE_UUID  # EXPIRED: terminal
IN_PROGRESS = sorted(u for u, body in seed_sessions().items() if body["status"] == "in-progress")
SESSION = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
READER, READER_TOO, OPS, BROKER = "reader-key-0000", "reader-key-1111", "ops-key-2222", "brk-3333"
KEYS = ",".join(
    [
        f"frontend:{key_digest(READER)}:read",
        f"mobile:{key_digest(READER_TOO)}:read",
        f"ops:{key_digest(OPS)}:write",
        f"broker:{key_digest(BROKER)}:read+passthrough",
    ]
)
OWN_CREDENTIAL = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": AUTH_TOKEN}
VARY = {"accept", "authorization", "origin", "x-plivo-auth-id", "x-plivo-auth-token"}
START = """mutation Start($input: StartVerificationInput!) {
  startVerification(input: $input) { sessionUuid }
}"""
TWO = (
    "query T($a: ID!, $b: ID!) { a: session(uuid: $a) { status } b: session(uuid: $b) { status } }"
)
VALIDATE = """mutation Check($uuid: ID!, $otp: String!) {
  validateSession(uuid: $uuid, otp: $otp) { result }
}"""


@dataclass
class Clock:
    """The wall clock, `offset` seconds ahead."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Gateway:
    """The app in-process, a client of it, and the clock its transport reads."""

    client: httpx.AsyncClient
    clock: Clock
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    async def get(
        self,
        query: str,
        variables: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        params = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(dict(variables))
        return await self.client.get(
            "/graphql", params=params, headers={**self.headers, **(headers or {})}
        )

    async def post(
        self, query: str, variables: Mapping[str, object] | None = None
    ) -> httpx.Response:
        payload = {"query": query, "variables": dict(variables or {})}
        return await self.client.post("/graphql", json=payload, headers=self.headers)

    async def metric(self, line: str) -> float:
        """The value of one line of /metrics (its name and labels as printed), 0 when absent."""
        text = (await self.client.get("/metrics")).text
        found = [row for row in text.splitlines() if row.rpartition(" ")[0] == line]
        return float(found[0].rpartition(" ")[2]) if found else 0.0

    async def hits(self) -> float:
        return await self.metric("gateway_response_cache_hits_total")


@asynccontextmanager
async def serve(settings: Settings, **headers: str) -> AsyncIterator[Gateway]:
    app = create_app(settings)
    assert isinstance(app, FrontDoor)
    assert isinstance(app.graphql, GraphQLHTTP)
    clock = Clock()
    app.graphql.clock = clock
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Gateway(client, clock, dict(headers))


def keyed(simulator: Simulator, **overrides: object) -> Settings:
    return make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS, **overrides)


def directives(response: httpx.Response) -> list[str]:
    return [part.strip() for part in response.headers["cache-control"].split(",")]


def max_age(response: httpx.Response) -> int:
    found = [part for part in directives(response) if part.startswith("max-age=")]
    assert len(found) == 1, response.headers["cache-control"]
    return int(found[0].removeprefix("max-age="))


def vary(response: httpx.Response) -> set[str]:
    return {name.strip().lower() for name in response.headers["vary"].split(",")}


def assert_left(response: httpx.Response, ttl: float, began: float) -> None:
    """max-age is what is left of `ttl` for a copy fetched after `began`: never more."""
    assert math.floor(ttl - (time.time() - began)) <= max_age(response) <= ttl


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers


async def test_a_terminal_session_is_public_and_kept_long(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        began = time.time()
        response = await gw.get(SESSION, {"uuid": DOCS})
    assert response.json()["data"]["session"]["status"] == "EXPIRED"
    assert directives(response)[0] == "public"
    assert_left(response, 3600, began)  # GATEWAY_CACHE_TTL_TERMINAL's default


async def test_an_in_progress_session_gets_the_freshness_left_and_less_on_each_hit(
    simulator: Simulator,
) -> None:
    uuid_ = IN_PROGRESS[0]
    async with serve(make_settings(simulator.url, GATEWAY_CACHE_TTL_IN_PROGRESS="30")) as gw:
        began = time.time()
        first = await gw.get(SESSION, {"uuid": uuid_})
        assert_left(first, 30, began)
        gw.clock.offset = 10.0
        second = await gw.get(SESSION, {"uuid": uuid_})
        assert await gw.hits() == 1
    assert first.json()["data"]["session"]["status"] == "IN_PROGRESS"
    assert max_age(second) <= max_age(first) - 10
    # exactly what is left of the 30 s, by the clock that reports the copy's age in the body
    report = second.json()["extensions"]["cache"][uuid_]
    assert report["status"] == "hit"
    left = 30 - report["age"]  # rounded to a millisecond
    assert math.floor(left - 0.001) <= max_age(second) <= math.floor(left + 0.001)


async def test_a_session_that_may_change_is_kept_no_longer_than_the_in_progress_ttl(
    flow_sim: Simulator,
) -> None:
    # With callbacks on, the gateway keeps a started session's copy 60 s: it hears of each
    # change. Browsers and CDNs hear of none: they get GATEWAY_CACHE_TTL_IN_PROGRESS at most.
    settings = make_settings(
        flow_sim.url,
        GATEWAY_PUBLIC_URL="https://gateway.example",
        GATEWAY_CACHE_TTL_IN_PROGRESS="3",
        GATEWAY_CACHE_TTL_CALLBACKS="60",
    )
    async with serve(settings) as gw:
        started = await gw.post(START, {"input": {"recipient": "+919999000312"}})
        session_uuid = started.json()["data"]["startVerification"]["sessionUuid"]
        executed = await gw.get(SESSION, {"uuid": session_uuid})
        cached = await gw.get(SESSION, {"uuid": session_uuid})
        assert await gw.hits() == 1
    assert executed.json()["data"]["session"]["status"] == "IN_PROGRESS"
    for response in (executed, cached):
        assert 0 < max_age(response) <= 3


async def test_a_session_plivo_does_not_have_is_kept_briefly(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        began = time.time()
        response = await gw.get(SESSION, {"uuid": str(uuid.uuid4())})
    assert response.json()["data"] == {"session": None}
    assert_left(response, 5, began)  # GATEWAY_CACHE_TTL_NOT_FOUND's default


async def test_two_sessions_are_kept_as_long_as_the_shorter_lived(simulator: Simulator) -> None:
    query = TWO
    async with serve(make_settings(simulator.url)) as gw:
        began = time.time()
        response = await gw.get(query, {"a": DOCS, "b": str(uuid.uuid4())})
    assert response.json()["data"] == {"a": {"status": "EXPIRED"}, "b": None}
    assert_left(response, 5, began)


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        ("keys", {"Authorization": f"Bearer {READER}"}),
        ("keys", {"Authorization": f"Bearer {BROKER}", **OWN_CREDENTIAL}),
        ("none", OWN_CREDENTIAL),  # no keys, but the caller's own credential shaped it
    ],
)
async def test_an_answer_shaped_by_a_key_or_a_credential_is_private(
    simulator: Simulator, auth: str, headers: dict[str, str]
) -> None:
    settings = keyed(simulator) if auth == "keys" else make_settings(simulator.url)
    async with serve(settings, **headers) as gw:
        executed = await gw.get(SESSION, {"uuid": DOCS})
        cached = await gw.get(SESSION, {"uuid": DOCS})
        assert await gw.hits() == 1
    assert executed.json()["data"]["session"]["status"] == "EXPIRED"
    for response in (executed, cached):
        assert directives(response)[0] == "private"
        assert max_age(response) > 3000
        assert vary(response) == VARY


async def test_vary_names_every_request_header_the_answer_depends_on(
    simulator: Simulator,
) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        response = await gw.get(SESSION, {"uuid": DOCS})
        other_type = await gw.get(
            SESSION, {"uuid": DOCS}, {"Accept": "application/graphql-response+json"}
        )
    assert directives(response)[0] == "public"
    assert vary(response) == vary(other_type) == VARY
    # the same URL, another Accept: another representation, told apart by Vary and by its tag
    assert other_type.headers["content-type"] == "application/graphql-response+json"
    assert other_type.headers["etag"] != response.headers["etag"]


async def test_a_stale_copy_makes_the_answer_revalidated_before_each_reuse(
    simulator: Simulator,
) -> None:
    # Plivo's 404 is fresh for 0 s: read again, it is served stale while it is refreshed.
    missing = str(uuid.uuid4())
    query = TWO
    variables = {"a": DOCS, "b": missing}
    async with serve(make_settings(simulator.url, GATEWAY_CACHE_TTL_NOT_FOUND="0")) as gw:
        await gw.get(query, variables)
        response = await gw.get(query, variables)
        await eventually(lambda: _served(simulator, 3))  # the refresh behind the stale copy
    report = response.json()["extensions"]["cache"]
    assert (report[DOCS]["status"], report[missing]["status"]) == ("hit", "stale")
    assert directives(response) == ["public", "no-cache"]  # not the fresh one's hour
    assert response.headers["etag"].startswith('W/"')


async def _served(simulator: Simulator, count: int) -> bool:
    return simulator.served() >= count


async def test_a_list_page_is_revalidated_and_never_kept_by_the_response_cache(
    simulator: Simulator,
) -> None:
    page = "{ sessions(first: 2) { nodes { sessionUuid } } }"
    both = page[:-1] + f'session(uuid: "{DOCS}") {{ status }} }}'
    async with serve(make_settings(simulator.url)) as gw:
        listed = await gw.get(page)
        first = await gw.get(both)
        second = await gw.get(both)
        assert await gw.hits() == 0  # the page's freshness is not the session's hour
    assert "errors" not in listed.json()
    for response in (listed, first, second):
        assert directives(response) == ["public", "no-cache"]
        assert response.headers["etag"].startswith('W/"')
    assert first.headers["etag"] == second.headers["etag"]


async def test_an_answer_without_sessions_is_revalidated(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        response = await gw.get("{ __typename }")
        again = await gw.get("{ __typename }", headers={"If-None-Match": response.headers["etag"]})
    assert response.json() == {"data": {"__typename": "Query"}}
    assert directives(response) == ["public", "no-cache"]
    assert again.status_code == 304


async def test_the_etag_names_the_data_whatever_the_ages(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        miss = await gw.get(SESSION, {"uuid": DOCS})
        gw.clock.offset = 5.0
        hit = await gw.get(SESSION, {"uuid": DOCS})
        refetched = await gw.get(SESSION, {"uuid": DOCS}, {"Cache-Control": "no-cache"})
        assert await gw.hits() == 1
    statuses = [r.json()["extensions"]["cache"][DOCS]["status"] for r in (miss, hit, refetched)]
    assert statuses == ["miss", "hit", "miss"]
    assert miss.content != hit.content  # the ages differ
    assert miss.headers["etag"] == hit.headers["etag"] == refetched.headers["etag"]
    assert miss.headers["etag"].startswith('W/"')


@pytest.mark.parametrize("path", ["executed", "response cache"])
async def test_if_none_match_gets_a_304_without_a_body(
    simulator: Simulator,
    path: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")  # the access log writes INFO lines
    entries = "0" if path == "executed" else "100"
    settings = make_settings(simulator.url, GATEWAY_RESPONSE_CACHE_ENTRIES=entries)
    async with serve(settings) as gw:
        full = await gw.get(SESSION, {"uuid": DOCS})
        etag = full.headers["etag"]
        response = await gw.get(SESSION, {"uuid": DOCS}, {"If-None-Match": etag})
        assert await gw.hits() == (0 if path == "executed" else 1)
        counted = await gw.metric('gateway_requests_total{operation="S",outcome="ok"}')
    assert response.status_code == 304
    assert response.content == b""
    assert "content-type" not in response.headers
    assert "content-length" not in response.headers
    assert response.headers["etag"] == etag
    assert directives(response)[0] == "public"
    assert max_age(response) > 3000
    assert vary(response) == VARY
    assert counted == 2  # a 304 is the request it is, in the metrics
    assert "GET /graphql 304" in capsys.readouterr().err  # and in the access log


@pytest.mark.parametrize(
    "header",
    [
        "*",
        '"another", {etag}',
        '"another",{strong}',  # the weak comparison: W/ or not, the same tag
        "  {etag}  ",
        ", ".join(f'W/"{n:032x}"' for n in range(100)) + ", {etag}",  # many, within the limit
    ],
)
async def test_if_none_match_takes_lists_star_and_weak_comparison(
    simulator: Simulator, header: str
) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        etag = (await gw.get(SESSION, {"uuid": DOCS})).headers["etag"]
        strong = etag.removeprefix("W/")
        response = await gw.get(
            SESSION, {"uuid": DOCS}, {"If-None-Match": header.format(etag=etag, strong=strong)}
        )
    assert response.status_code == 304


@pytest.mark.parametrize(
    "header",
    [
        'W/"0123456789abcdef0123456789abcdef"',
        "W/",
        '"{opaque}x"',  # our tag's text within another's
        "x{strong}",
        ", " * 3000 + "{etag}",  # too long to be read: ignored
        "\u00ff\u00fe",
    ],
)
async def test_other_or_malformed_tags_get_the_whole_answer(
    simulator: Simulator, header: str
) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        etag = (await gw.get(SESSION, {"uuid": DOCS})).headers["etag"]
        strong, opaque = etag.removeprefix("W/"), etag[3:-1]
        sent = header.format(etag=etag, strong=strong, opaque=opaque).encode("latin-1")
        response = await gw.client.get(
            "/graphql",
            params={"query": SESSION, "variables": json.dumps({"uuid": DOCS})},
            headers={b"If-None-Match": sent},
        )
    assert response.status_code == 200
    assert response.json()["data"]["session"]["status"] == "EXPIRED"
    assert response.headers["etag"] == etag


async def test_new_data_gets_a_new_etag_and_the_whole_answer(flow_sim: Simulator) -> None:
    settings = make_settings(flow_sim.url, GATEWAY_CACHE_TTL_IN_PROGRESS="60")
    async with serve(settings) as gw:
        started = await gw.post(START, {"input": {"recipient": "+919999000311"}})
        assert_no_store(started)
        session_uuid = started.json()["data"]["startVerification"]["sessionUuid"]
        before = await gw.get(SESSION, {"uuid": session_uuid})
        with flow_sim.admin() as admin:
            code = admin.get(f"/__simulator/codes/{session_uuid}").json()["code"]
        validated = await gw.post(VALIDATE, {"uuid": session_uuid, "otp": code})
        assert validated.json()["data"]["validateSession"]["result"] == "VERIFIED"
        assert_no_store(validated)
        after = await gw.get(
            SESSION, {"uuid": session_uuid}, {"If-None-Match": before.headers["etag"]}
        )
    assert before.json()["data"]["session"]["status"] == "IN_PROGRESS"
    assert after.status_code == 200
    assert after.json()["data"]["session"]["status"] == "VERIFIED"
    assert after.headers["etag"] != before.headers["etag"]
    assert max_age(after) > 3000  # terminal now


async def test_short_document_id_urls_get_the_same_headers(simulator: Simulator) -> None:
    document_id = "sha256:" + hashlib.sha256(SESSION.encode()).hexdigest()
    persisted = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": document_id[7:]}})
    variables = json.dumps({"uuid": DOCS})
    async with serve(make_settings(simulator.url)) as gw:
        unknown = await gw.client.get(
            "/graphql", params={"documentId": document_id, "variables": variables}
        )
        registered = await gw.client.get(  # APQ: the hash with its text, once
            "/graphql", params={"extensions": persisted, "query": SESSION, "variables": variables}
        )
        short = await gw.client.get(
            "/graphql", params={"documentId": document_id, "variables": variables}
        )
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert_no_store(unknown)  # else a CDN would keep answering "send the text"
    assert (
        short.json()["data"]
        == registered.json()["data"]
        == {"session": {"sessionUuid": DOCS, "status": "EXPIRED"}}
    )
    assert directives(short)[0] == "public"
    assert max_age(short) > 3000
    assert short.headers["etag"] == registered.headers["etag"]


async def test_posts_are_no_store(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        executed = await gw.post(SESSION, {"uuid": DOCS})
        cached = await gw.post(SESSION, {"uuid": DOCS})
        assert await gw.hits() == 1
    for response in (executed, cached):
        assert response.json()["data"]["session"]["status"] == "EXPIRED"
        assert_no_store(response)


@pytest.mark.parametrize(
    ("query", "variables", "status"),
    [
        (SESSION, {"uuid": "not-a-uuid"}, 200),  # BAD_USER_INPUT
        ("{ session(uuid: 1) { nope } }", None, 200),  # validation failed
        ("mutation { x }", None, 405),
        ("{ session(", None, 200),  # a syntax error
    ],
)
async def test_errors_are_no_store_whatever_if_none_match_says(
    simulator: Simulator, query: str, variables: dict[str, object] | None, status: int
) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        response = await gw.get(query, variables, {"If-None-Match": "*"})
    assert response.status_code == status
    assert response.json()["errors"]
    assert_no_store(response)


async def test_upstream_errors_and_refusals_are_no_store(simulator: Simulator) -> None:
    simulator.queue_fault("500")
    async with serve(keyed(simulator, PLIVO_RETRY_ATTEMPTS="1")) as gw:
        gw.headers["Authorization"] = f"Bearer {READER}"
        failed = await gw.get(SESSION, {"uuid": DOCS}, {"If-None-Match": "*"})
        gw.headers["Authorization"] = "Bearer not-a-key"
        refused = await gw.get(SESSION, {"uuid": DOCS})
        gw.headers["Authorization"] = f"Bearer {READER}"
        no_query = await gw.client.get(
            "/graphql", headers={"Accept": "application/json", **gw.headers}
        )
    assert failed.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_ERROR"
    assert (refused.status_code, no_query.status_code) == (401, 400)
    for response in (failed, refused, no_query):
        assert_no_store(response)


async def test_a_304_never_confirms_another_callers_answer(simulator: Simulator) -> None:
    async with serve(keyed(simulator)) as gw:
        mine = await gw.get(SESSION, {"uuid": DOCS}, {"Authorization": f"Bearer {READER}"})
        etag = mine.headers["etag"]
        write_only = await gw.get(
            SESSION, {"uuid": DOCS}, {"Authorization": f"Bearer {OPS}", "If-None-Match": etag}
        )
        other_reader = await gw.get(
            SESSION,
            {"uuid": DOCS},
            {"Authorization": f"Bearer {READER_TOO}", "If-None-Match": etag},
        )
        with_credential = await gw.get(
            SESSION,
            {"uuid": DOCS},
            {"Authorization": f"Bearer {BROKER}", "If-None-Match": etag, **OWN_CREDENTIAL},
        )
    assert write_only.status_code == 200
    assert write_only.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert_no_store(write_only)
    for response in (other_reader, with_credential):  # the same data, but not theirs to confirm
        assert response.status_code == 200
        assert response.json()["data"] == mine.json()["data"]
        assert response.headers["etag"] != etag


async def test_graphiql_is_revalidated(simulator: Simulator) -> None:
    async with serve(make_settings(simulator.url)) as gw:
        page = await gw.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["vary"] == "Accept"


async def test_browsers_may_read_the_etag_and_send_if_none_match(simulator: Simulator) -> None:
    origin = "https://app.example.com"
    settings = make_settings(simulator.url, GATEWAY_CORS_ORIGINS=origin)
    async with serve(settings, Origin=origin) as gw:
        preflight = await gw.client.options(
            "/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "if-none-match",
            },
        )
        response = await gw.get(SESSION, {"uuid": DOCS})
        again = await gw.get(SESSION, {"uuid": DOCS}, {"If-None-Match": response.headers["etag"]})
    assert preflight.status_code == 200
    assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()
    assert response.headers["access-control-allow-origin"] == origin
    assert "etag" in response.headers["access-control-expose-headers"].lower()
    assert vary(response) == VARY
    assert again.status_code == 304
    assert again.headers["access-control-allow-origin"] == origin


class BrowserCache:
    """A private HTTP cache as a browser keeps one: by URL and the request headers named in
    Vary; fresh copies reused without asking, others revalidated with If-None-Match."""

    def __init__(self, client: httpx.AsyncClient, clock: Clock) -> None:
        self.client, self.clock = client, clock
        self.stored: dict[str, tuple[httpx.Response, float, dict[str, str | None]]] = {}
        self.sent = 0

    async def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        request = httpx.Headers(headers)
        kept = self.stored.get(url)
        if kept is not None:
            response, expires, varied = kept
            if {name: request.get(name) for name in varied} == varied:
                if self.clock() < expires:
                    return response
                headers = {**headers, "If-None-Match": response.headers["etag"]}
        self.sent += 1
        fresh = await self.client.get(url, headers=headers)
        if fresh.status_code == 304 and kept is not None:
            fresh, stored = kept[0], fresh  # the copy, with the 304's headers
            fresh.headers.update(stored.headers)
        if "no-store" not in directives(fresh):
            ages = [max_age(fresh)] if "no-cache" not in directives(fresh) else [0]
            names = [n.strip() for n in fresh.headers.get("vary", "").split(",") if n.strip()]
            varied = {name.lower(): request.get(name) for name in names}
            self.stored[url] = (fresh, self.clock() + ages[0], varied)
        return fresh


async def test_a_browser_cache_reuses_fresh_answers_and_revalidates_the_rest(
    simulator: Simulator,
) -> None:
    def url(query: str) -> str:
        return str(httpx.URL("/graphql", params={"query": query}))

    terminal = url(f'{{ session(uuid: "{DOCS}") {{ status }} }}')
    listing = url("{ sessions(first: 2) { nodes { sessionUuid } } }")
    async with serve(keyed(simulator)) as gw:
        browser = BrowserCache(gw.client, gw.clock)
        reader = {"Authorization": f"Bearer {READER}"}
        first = await browser.get(terminal, reader)
        again = await browser.get(terminal, reader)
        assert browser.sent == 1  # fresh: not asked again
        gw.clock.offset = 4000.0  # the browser's copy is past its max-age: it asks, with its tag
        revalidated = await browser.get(terminal, reader)
        assert browser.sent == 2
        other_key = await browser.get(terminal, {"Authorization": f"Bearer {READER_TOO}"})
        assert browser.sent == 3  # Vary: Authorization
        page = await browser.get(listing, reader)
        page_again = await browser.get(listing, reader)
        assert browser.sent == 5  # each of the page's reuses asked first
        assert await gw.metric('gateway_requests_total{operation="anonymous",outcome="ok"}') == 5
    assert again is first
    assert other_key.json()["data"] == first.json()["data"]
    assert revalidated is first  # a 304: the stored body
    assert page_again is page
    assert page.json()["data"]["sessions"]["nodes"]
