"""Several processes on one Redis: an Idempotency-Key sends one code, however the race goes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator
from tests.servers import free_port, process, wait_for_http
from tests.test_flow import START

TRIALS = 20
CONCURRENT = 8


async def race(url: str, trial: int) -> set[str]:
    """CONCURRENT starts with one Idempotency-Key at once: the session uuids they got."""
    variables = {"input": {"recipient": f"91999930{trial:04d}"}}
    headers = {"Idempotency-Key": f"race-{trial}"}
    # A connection each, so that the kernel spreads them over the workers.
    clients = [httpx.AsyncClient(timeout=20) for _ in range(CONCURRENT)]
    try:
        answers = await asyncio.gather(
            *(
                client.post(url, json={"query": START, "variables": variables}, headers=headers)
                for client in clients
            )
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    bodies: list[dict[str, Any]] = [answer.json() for answer in answers]
    assert all("errors" not in body for body in bodies), bodies
    return {body["data"]["startVerification"]["sessionUuid"] for body in bodies}


def test_one_key_sends_one_code_across_four_worker_processes(
    tmp_path: Path, flow_sim: Simulator
) -> None:
    # Instance B read no record, A stored it and let go, B then locked and sent: two codes.
    # The claim reads the record and takes the key in one step, so that cannot happen.
    from tests.redis_server import require_shared_redis, unique_prefix

    port = free_port()
    env = {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": flow_sim.url,
        "GATEWAY_AUTH": "none",
        "GATEWAY_CACHE_URL": require_shared_redis(),
        "GATEWAY_CACHE_PREFIX": unique_prefix(),
        "GATEWAY_STARTS_PER_KEY": "1000/60",
    }
    args = ("serve", "--port", str(port), "--workers", "4")
    with process(*args, env=env, log=tmp_path / "gateway.log"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)  # four interpreters
        url = f"http://127.0.0.1:{port}/graphql"
        for trial in range(TRIALS):
            assert len(asyncio.run(race(url, trial))) == 1
    assert flow_sim.stats()["creates"] == TRIALS
