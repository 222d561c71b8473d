"""AiohttpUpstream and LeanUpstream: the URL they send, queries, JSON bodies, no cookies."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from gateway.errors import UpstreamUnavailable
from gateway.plivo.lean import LeanUpstream
from gateway.plivo.transport import AiohttpUpstream, UpstreamHTTP

PATH = "/v1/Account/MA0000/Verify/Session/a%2Fb/"


async def _serve_paths(seen: list[str]) -> web.AppRunner:
    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"ok": True}, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


CLIENTS = ["aiohttp", "lean"]


def _upstream(base: str, client: str) -> UpstreamHTTP:
    kind = AiohttpUpstream if client == "aiohttp" else LeanUpstream
    return kind(base, connect_timeout=1.0, read_timeout=1.0, max_connections=4, headers={})


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("prefix", ["", "/", "/plivo", "/plivo/"])
async def test_the_path_is_sent_as_encoded_after_the_base(prefix: str, client: str) -> None:
    seen: list[str] = []
    runner = await _serve_paths(seen)
    port = runner.addresses[0][1]
    upstream = _upstream(f"http://127.0.0.1:{port}{prefix}", client)
    try:
        response = await upstream.send("GET", PATH, {"Authorization": "Basic x"}, "session a/b")
    finally:
        await upstream.close()
        await runner.cleanup()
    assert response.status == 200
    assert response.retry_after == "3"
    assert seen == [prefix.rstrip("/") + PATH]  # %2F stays encoded, the prefix is kept


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_refused_connection_is_unavailable(client: str) -> None:
    runner = await _serve_paths([])
    port = runner.addresses[0][1]
    await runner.cleanup()  # nothing listens there any more
    upstream = _upstream(f"http://127.0.0.1:{port}", client)
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send("GET", PATH, {}, "session a/b")
    finally:
        await upstream.close()


@pytest.mark.parametrize("client", CLIENTS)
async def test_queries_and_json_bodies_are_sent(client: str) -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path, await request.read()))
        return web.json_response({"ok": True}, status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = _upstream(f"http://127.0.0.1:{runner.addresses[0][1]}", client)
    try:
        listed = await upstream.send("GET", "/list/", {}, "the list", params={"limit": "5"})
        posted = await upstream.send("POST", "/list/", {}, "a start", json={"recipient": "1"})
    finally:
        await upstream.close()
        await runner.cleanup()
    assert (listed.status, posted.status) == (202, 202)
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", "/list/?limit=5"),
        ("POST", "/list/"),
    ]
    assert (seen[0][2], json.loads(seen[1][2])) == (b"", {"recipient": "1"})


@pytest.mark.parametrize("client", CLIENTS)
async def test_no_cookie_is_kept_between_requests(client: str) -> None:
    # One pool serves every credential: a cookie one answer sets must never ride on the next.
    seen: list[str | None] = []

    async def cookies(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("plivo_session", "for-one-caller")
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", cookies)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    # A host name, not an address: a cookie jar keeps no cookies for bare IP addresses.
    upstream = _upstream(f"http://localhost:{runner.addresses[0][1]}", client)
    try:
        for _ in range(2):
            await upstream.send("GET", "/v1/", {}, "a page")
    finally:
        await upstream.close()
        await runner.cleanup()
    assert seen == [None, None]
