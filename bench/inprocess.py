"""CPU per request with no network in front: requests handed straight to the gateway's ASGI app.

    taskset -c 0 .venv/bin/python -m bench.inprocess [--hits 20000] [--misses 3000] [--client lean]

The app runs in this process with production settings and an API key, in front of the
simulator in bench mode (pinned to LOAD_CPU). It prints the process CPU time, in microseconds,
of a response-cache hit and of a new session's request (one Plivo call each): what the gateway's
own code costs, with uvicorn's and the network's share left out, so two versions compare on a
noisy machine. To compare commits, run it with PYTHONPATH set to each checkout, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message

from bench.processes import API_KEY, API_KEY_SHA256, AUTH_ID, AUTH_TOKEN, start_simulator
from gateway.app import create_app
from gateway.config import Settings

QUERY = (
    "query Session($uuid: ID!) { session(uuid: $uuid) { apiId sessionUuid appUuid recipient"
    " channel status count attempts { attemptUuid channel status time } charges { totalCharge"
    " validationCharge attemptCharges { attemptUuid channel charge } } createdAt updatedAt } }"
)
HOT_UUID = "60ea68db-b123-46d9-9eb2-1201d516dbbd"


def body(session_uuid: str) -> bytes:
    """The request body of the peers harness's S1 and S2."""
    payload = {"operationName": "Session", "query": QUERY, "variables": {"uuid": session_uuid}}
    return json.dumps(payload).encode()


async def post(app: ASGIApp, content: bytes) -> int:
    """One POST /graphql through the whole app; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
            (b"content-length", str(len(content)).encode()),
        ],
    }
    messages = [{"type": "http.request", "body": content, "more_body": False}]
    status = 0

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(upstream: str, hits: int, misses: int, client: str) -> tuple[float, float]:
    """CPU microseconds of a hit and of a miss."""
    settings = Settings.from_env(
        {
            "PLIVO_AUTH_ID": AUTH_ID,
            "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
            "PLIVO_API_URL": upstream,
            "GATEWAY_ENV": "production",
            "GATEWAY_API_KEYS": f"bench:{API_KEY_SHA256}:read",
            "GATEWAY_LOG_LEVEL": "WARNING",
            # As bench/run.py's S2: with Plivo's default budget (300 in 5 s) all but the first
            # few hundred new sessions would be refused before any upstream call.
            "PLIVO_BUDGET_REQUESTS": "100000000",
            **({"PLIVO_HTTP_CLIENT": client} if client else {}),
        }
    )
    async with LifespanManager(create_app(settings)) as manager:
        app = manager.app
        hot = body(HOT_UUID)
        for _ in range(200):
            assert await post(app, hot) == 200
        started = time.process_time()
        for _ in range(hits):
            await post(app, hot)
        hit = (time.process_time() - started) / hits * 1e6
        cold = [body(str(uuid.uuid4())) for _ in range(misses + 200)]
        for content in cold[:200]:
            assert await post(app, content) == 200
        started = time.process_time()
        for content in cold[200:]:
            await post(app, content)
        miss = (time.process_time() - started) / misses * 1e6
    return hit, miss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--misses", type=int, default=3_000)
    parser.add_argument("--client", default="", help="PLIVO_HTTP_CLIENT (default: the default)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream = start_simulator(stack, logs)
        hit, miss = asyncio.run(measure(upstream, args.hits, args.misses, args.client))
    print(f"hit {hit:.1f} us/request, new session {miss:.1f} us/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
