"""Soak: a mixed load on one gateway for a while, two credentials, simulator faults injected.

    .venv/bin/python -m bench.soak [--seconds 60] [--workers 32] [--write BENCHMARKS.md]

Workers loop until the time is up, each request picking a credential (the gateway's own, or a
subaccount's sent through pass-through headers), a session from a pool, and now and then a
refetch or a malformed uuid. Every few seconds the simulator is told to fail (503, 502, 429,
slow, reset, garbage). Recorded: outcomes by code, latency percentiles, the gateway's RSS at
start and end, and whether any answer carried another credential's data (the simulator's bench
sessions name the asking account in `alias`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.processes import AUTH_HEADER, AUTH_ID, rss_mib, start_gateway, start_simulator
from bench.report import command_line, publish

SUB_ID, SUB_TOKEN = "SABENCHBENCHBENCH001", "sub-bench-token"
QUERY = (
    "query Soak($uuid: ID!) "
    "{ session(uuid: $uuid) { sessionUuid alias status charges { totalCharge } } }"
)
FAULTS = [
    {"fault": "503", "times": 20},
    {"fault": "502", "times": 10},
    {"fault": "429", "times": 5, "retry_after": "0"},
    {"fault": "slow", "times": 3, "delay_ms": 3000},
    {"fault": "reset", "times": 5},
    {"fault": "garbage", "times": 3},
]


class Tally:
    """What the load saw."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.crossed = 0

    def record(self, response: httpx.Response | None, account: str, seconds: float) -> None:
        self.latencies.append(seconds)
        if response is None:
            self.outcomes["transport error"] += 1
            return
        if response.status_code != 200:
            self.outcomes[f"HTTP {response.status_code}"] += 1
            return
        body = response.json()
        errors = body.get("errors") or []
        self.outcomes[errors[0]["extensions"]["code"] if errors else "ok"] += 1
        session = (body.get("data") or {}).get("session")
        if session is not None and session["alias"] != account:
            self.crossed += 1


async def worker(
    client: httpx.AsyncClient,
    url: str,
    pool: list[str],
    until: float,
    tally: Tally,
    rng: random.Random,
) -> None:
    own = {**AUTH_HEADER}
    sub = {**AUTH_HEADER, "X-Plivo-Auth-Id": SUB_ID, "X-Plivo-Auth-Token": SUB_TOKEN}
    while time.monotonic() < until:
        account, headers = (AUTH_ID, own) if rng.random() < 0.5 else (SUB_ID, sub)
        headers = dict(headers)
        session_uuid = rng.choice(pool)
        roll = rng.random()
        if roll < 0.03:
            session_uuid = f"{session_uuid}/../x"
        elif roll < 0.08:
            headers["Cache-Control"] = "no-cache"
        started = time.monotonic()
        try:
            response: httpx.Response | None = await client.post(
                url, json={"query": QUERY, "variables": {"uuid": session_uuid}}, headers=headers
            )
        except httpx.HTTPError:
            response = None
        tally.record(response, account, time.monotonic() - started)


async def inject_faults(simulator: str, until: float, every: float) -> int:
    injected = 0
    async with httpx.AsyncClient(base_url=simulator) as admin:
        for fault in itertools.cycle(FAULTS):
            await asyncio.sleep(every)
            if time.monotonic() >= until:
                return injected
            await admin.post("/__simulator/faults", json=fault)
            injected += 1
    return injected


async def load(url: str, simulator: str, seconds: float, workers: int) -> tuple[Tally, int]:
    tally, rng = Tally(), random.Random(7)
    pool = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        results = await asyncio.gather(
            inject_faults(simulator, until, every=3.0),
            *(worker(client, url, pool, until, tally, random.Random(i)) for i in range(workers)),
        )
    injected = results[0]
    assert isinstance(injected, int)
    return tally, injected


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    broker_key = "soak-broker-key"
    keys = f"soak:{hashlib.sha256(broker_key.encode()).hexdigest()}:read+passthrough"
    with tempfile.TemporaryDirectory(prefix="soak-") as logs, ExitStack() as stack:
        simulator = start_simulator(
            stack, Path(logs), latency_ms=20, extra=(f"{SUB_ID}:{SUB_TOKEN}",)
        )
        env = {"GATEWAY_API_KEYS": keys, "GATEWAY_LOG_LEVEL": "WARNING"}
        url, pid = start_gateway(stack, Path(logs), simulator, env, "gateway")
        AUTH_HEADER["Authorization"] = f"Bearer {broker_key}"
        rss_start = rss_mib(pid)
        tally, injected = asyncio.run(load(url, simulator, args.seconds, args.workers))
        rss_end = rss_mib(pid)
    total = sum(tally.outcomes.values())
    summary = {
        "requests": total,
        "outcomes": dict(tally.outcomes.most_common()),
        "p50_ms": round(statistics.median(tally.latencies) * 1000, 1),
        "p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 1),
        "rss_start_mib": round(rss_start, 1),
        "rss_end_mib": round(rss_end, 1),
        "faults_injected": injected,
        "crossed": tally.crossed,
    }
    print(json.dumps(summary))
    text = render(summary, args.seconds, args.workers, command_line("bench.soak", argv))
    publish(text, args.write, "soak")
    return 1 if tally.crossed else 0


def render(summary: dict[str, object], seconds: float, workers: int, command: str) -> str:
    outcomes = summary["outcomes"]
    assert isinstance(outcomes, dict)
    rows = "\n".join(f"| {code} | {count} |" for code, count in outcomes.items())
    return f"""{seconds:g} s, {workers} concurrent workers, production settings (API key, limits,
metrics, JSON request logs), upstream latency 20 ms, two credentials (the gateway's own and a
subaccount's through pass-through), 200 sessions, 5 % refetches, 3 % malformed uuids, a
simulator fault every 3 s ({summary["faults_injected"]} injected: 503, 502, 429, slow, reset,
garbage).

Command: `{command}`

| outcome | requests |
| --- | --- |
{rows}

| measure | value |
| --- | --- |
| requests | {summary["requests"]} |
| latency p50 / p99 | {summary["p50_ms"]} ms / {summary["p99_ms"]} ms |
| gateway RSS at start / end | {summary["rss_start_mib"]} MiB / {summary["rss_end_mib"]} MiB |
| answers carrying another credential's data | {summary["crossed"]} |"""


if __name__ == "__main__":
    sys.exit(main())
