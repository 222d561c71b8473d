"""The herd scenario: N concurrent identical lookups of a new session, upstream latency 200 ms.

    .venv/bin/python -m bench.herd [--requests 200] [--latency-ms 200] [--write BENCHMARKS.md]

Runs each configuration in turn against the simulator's bench mode (the simulator pinned to
LOAD_CPU, gateways to GATEWAY_CPU), fires two waves at once, and counts the upstream calls
of each wave from the simulator's counter. Without a Redis at 127.0.0.1:6379 the fleet rows
are left out, said so in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import (
    AUTH_HEADER,
    AUTH_ID,
    AUTH_TOKEN,
    start_gateway,
    start_simulator,
    upstream_calls,
)
from bench.report import command_line, publish

QUERY = (
    "query Session($uuid: ID!) { session(uuid: $uuid) { apiId sessionUuid status "
    "attempts { attemptUuid channel status time } charges { totalCharge } } }"
)
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Scenario:
    """A configuration of the gateway: how many processes, which cache."""

    name: str
    processes: int
    env: dict[str, str]
    direct: bool = False


SCENARIOS = (
    Scenario("simulator queried directly (baseline)", 0, {}, direct=True),
    Scenario("gateway, caches off (GATEWAY_CACHE_URL=none)", 1, {"GATEWAY_CACHE_URL": "none"}),
    Scenario("gateway, memory cache, 1 process", 1, {}),
    Scenario("gateway, Redis cache, 2 processes", 2, {"GATEWAY_CACHE_URL": REDIS_URL}),
)


async def wave(urls: list[str], session_uuid: str, count: int, direct: bool) -> int:
    """`count` lookups at once; returns how many answered without an error."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        if direct:
            path = f"/v1/Account/{AUTH_ID}/Verify/Session/{session_uuid}/"
            calls = [client.get(urls[0] + path, auth=(AUTH_ID, AUTH_TOKEN)) for _ in range(count)]
        else:
            body = {"query": QUERY, "variables": {"uuid": session_uuid}}
            calls = [
                client.post(urls[i % len(urls)], json=body, headers=AUTH_HEADER)
                for i in range(count)
            ]
        responses = await asyncio.gather(*calls)
    return sum(1 for r in responses if r.status_code == 200 and b'"errors"' not in r.content)


def run(scenario: Scenario, requests: int, latency_ms: int, logs: Path) -> dict[str, object]:
    with ExitStack() as stack:
        simulator = start_simulator(stack, logs, latency_ms=latency_ms)
        env = dict(scenario.env)
        if "GATEWAY_CACHE_URL" in env and env["GATEWAY_CACHE_URL"].startswith("redis"):
            env["GATEWAY_CACHE_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
        urls = [
            start_gateway(stack, logs, simulator, env, f"gateway-{index}")[0]
            for index in range(scenario.processes)
        ] or [simulator]
        session_uuid = str(uuid.uuid4())
        upstream_calls(simulator)  # reset
        answered = [asyncio.run(wave(urls, session_uuid, requests, scenario.direct))]
        first = upstream_calls(simulator)
        answered.append(asyncio.run(wave(urls, session_uuid, requests, scenario.direct)))
        second = upstream_calls(simulator)
    return {"scenario": scenario.name, "wave1": first, "wave2": second, "answered": answered}


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def table(rows: list[dict[str, object]], requests: int, latency_ms: int, command: str) -> str:
    lines = [
        f"{requests} concurrent identical lookups of a new session, upstream latency"
        f" {latency_ms} ms, then the same again (wave 2). Upstream calls counted by the simulator.",
        "",
        f"Command: `{command}`",
        "",
        "| configuration | upstream calls, wave 1 | upstream calls, wave 2 | answered |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        answered = row["answered"]
        assert isinstance(answered, list)
        lines.append(
            f"| {row['scenario']} | {row['wave1']} | {row['wave2']} | "
            f"{answered[0]}/{requests}, {answered[1]}/{requests} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--write", type=Path, help="update the herd section of this file")
    args = parser.parse_args(argv)
    has_redis = redis_answers()
    scenarios = [s for s in SCENARIOS if has_redis or REDIS_URL not in s.env.values()]
    if len(scenarios) < len(SCENARIOS):
        print("no Redis at 127.0.0.1:6379: the fleet rows are left out", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="herd-") as logs:
        rows = [run(s, args.requests, args.latency_ms, Path(logs)) for s in scenarios]
    for row in rows:
        print(json.dumps(row))
    text = table(rows, args.requests, args.latency_ms, command_line("bench.herd", argv))
    publish(text, args.write, "herd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
