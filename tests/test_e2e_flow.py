"""The whole Verify flow, scripted, against a real `plivo-gateway demo` process.

Start a verification over HTTP, watch it over a websocket, read the code from the demo's
simulator, validate it, and see the subscription deliver VERIFIED and complete. The demo sets
GATEWAY_PUBLIC_URL to itself, so the simulator's signed status callbacks reach the gateway too.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from tests.servers import free_port, process, wait_for_http

START = """mutation Start($input: StartVerificationInput!) {
  startVerification(input: $input) { sessionUuid session { status } }
}"""
WATCH = "subscription W($uuid: ID!) { sessionUpdated(uuid: $uuid) { status count } }"
VALIDATE = (
    "mutation V($uuid: ID!, $otp: String!) { validateSession(uuid: $uuid, otp: $otp) { result } }"
)


async def post(url: str, query: str, variables: dict[str, object]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(url, json={"query": query, "variables": variables})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def watch_until_complete(
    ws_url: str, uuid: str, ready: asyncio.Event
) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, protocols=["graphql-transport-ws"]) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": {}})
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "connection_ack"
        await ws.send_json(
            {
                "id": "w",
                "type": "subscribe",
                "payload": {"query": WATCH, "variables": {"uuid": uuid}},
            }
        )
        seen: list[dict[str, Any]] = []
        while True:
            data = json.loads((await ws.receive(timeout=20)).data)
            seen.append(data)
            ready.set()
            if data["type"] in ("complete", "error"):
                return seen


async def test_start_watch_validate_and_the_subscription_completes(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    args = ("demo", "--port", str(port), "--simulator-port", str(sim_port))
    with process(*args, env={}, log=tmp_path / "demo.log"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/graphql"
        started = await post(url, START, {"input": {"recipient": "+14155550123", "channel": "SMS"}})
        uuid = started["startVerification"]["sessionUuid"]
        assert started["startVerification"]["session"]["status"] == "IN_PROGRESS"
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_until_complete(url.replace("http", "ws"), uuid, ready))
        await asyncio.wait_for(ready.wait(), 20)
        async with httpx.AsyncClient() as client:
            codes = await client.get(f"http://127.0.0.1:{sim_port}/__simulator/codes/{uuid}")
        code = codes.json()["code"]
        result = await post(url, VALIDATE, {"uuid": uuid, "otp": code})
        assert result["validateSession"]["result"] == "VERIFIED"
        seen = await asyncio.wait_for(watcher, 30)
    log = (tmp_path / "demo.log").read_text()
    assert [m["type"] for m in seen][-2:] == ["next", "complete"]
    statuses = [
        m["payload"]["data"]["sessionUpdated"]["status"] for m in seen if m["type"] == "next"
    ]
    assert statuses[0] == "IN_PROGRESS"
    assert statuses[-1] == "VERIFIED"
    assert f"status callback for session {uuid}" in log  # the simulator's signed callbacks arrived
    assert code not in log
