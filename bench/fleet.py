"""Fleet freshness: in-progress sessions polled through two gateways within Plivo's budget.

    .venv/bin/python -m bench.fleet [--duration 20] [--change-every 1] [--write BENCHMARKS.md]

Plivo allows an account about 300 requests per 5 s. Two `plivo-gateway serve` processes
(production settings, default limits and budget, Redis shared, keys "web" and "mobile") stand
in front of the simulator's live bench mode (every uuid an in-progress session whose attempts
change; 100 ms latency). Three scenarios, each with fresh gateways, a fresh Redis prefix and a
fresh simulator: 100 sessions polled, 1,000 sessions polled, and 1,000 sessions with status
callbacks on (GATEWAY_PUBLIC_URL per instance) and a status change every second. Each starts
with a warm-up that reads every session once at about 40 first reads a second (RATE_LIMITED
answers retried after their retryAfter), not counted; then two wrk processes, one per instance,
poll every session round-robin with 50 connections in all. The simulator tells when each
session GET arrived, so the most upstream requests in any 5 s window is exact. The simulator
and wrk run on LOAD_CPU, the gateways on GATEWAY_CPU. Needs wrk and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.herd import REDIS_URL, redis_answers
from bench.processes import (
    LOAD_CPU,
    api_keys_setting,
    free_port,
    pinned,
    start_gateway,
    start_simulator,
)
from bench.report import command_line, publish

HERE = Path(__file__).parent
CONNECTIONS = 50
LATENCY_MS = 100
WARMUP_RATE = 40.0
WINDOW = 5.0
BUCKET = 0.1  # seconds: the width of the age histogram's buckets
KEYS = {"web": "bench-fleet-web-key", "mobile": "bench-fleet-mobile-key"}
QUERY = '{ session(uuid: "%s") { status attempts { status } } }'
# The targets: 1,000 sessions answered within the budget; 100 sessions kept fresh; callbacks.
BUDGET_PER_WINDOW = 300
MAX_P50_AGE_1000 = 20.0
MAX_UPSTREAM_RPS_100 = 50.0
MAX_P50_AGE_100 = 2.0
MAX_CALLS_PER_CHANGE = 2.0


@dataclass(frozen=True)
class Scenario:
    """How many sessions, and whether callbacks are on."""

    name: str
    sessions: int
    callbacks: bool = False


@dataclass
class WrkResult:
    """What one or more wrk processes counted."""

    requests: int = 0
    seconds: float = 0.0
    socket_errors: int = 0
    error_answers: int = 0
    aged: int = 0
    ages: Counter[int] = field(default_factory=Counter)
    first_error: str = ""

    def __add__(self, other: WrkResult) -> WrkResult:
        """Two processes that ran at once: counts add up, the duration is the longer one."""
        return WrkResult(
            self.requests + other.requests,
            max(self.seconds, other.seconds),
            self.socket_errors + other.socket_errors,
            self.error_answers + other.error_answers,
            self.aged + other.aged,
            self.ages + other.ages,
            self.first_error or other.first_error,
        )


@dataclass
class Outcome:
    """One scenario's figures."""

    scenario: Scenario
    polls: WrkResult
    upstream: int
    seconds: float
    window_max: int
    changes: int = 0
    callbacks: dict[str, int] = field(default_factory=dict)
    warmup_retries: int = 0
    warmup_failures: int = 0
    warmup_seconds: float = 0.0

    @property
    def polls_per_s(self) -> float:
        return self.polls.requests / self.polls.seconds if self.polls.seconds else 0.0

    @property
    def upstream_per_s(self) -> float:
        return self.upstream / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.polls.error_answers + self.polls.socket_errors

    @property
    def per_change(self) -> float | None:
        if not self.scenario.callbacks:
            return None
        return self.upstream / self.changes if self.changes else float("inf")

    def age(self, fraction: float) -> float | None:
        return percentile(self.polls.ages, fraction)


def window_max(times: Iterable[float], window: float = WINDOW) -> int:
    """The most of `times` in any half-open interval [t, t + window): every interval, not only
    those aligned to whole seconds (the fullest one starts at one of the times)."""
    ordered = sorted(times)
    best, end = 0, 0
    for start, at in enumerate(ordered):
        while end < len(ordered) and ordered[end] < at + window:
            end += 1
        best = max(best, end - start)
    return best


def percentile(
    histogram: Mapping[int, int], fraction: float, width: float = BUCKET
) -> float | None:
    """The `fraction` percentile of a histogram of buckets `width` wide, as its bucket's upper
    edge (the value is at most that); None for an empty histogram."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(total * fraction)), 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round((bucket + 1) * width, 3)
    return round((max(histogram) + 1) * width, 3)


_FLEET_LINE = re.compile(
    r"^FLEET requests=(\d+) seconds=([\d.]+) socket_errors=(\d+) error_answers=(\d+)"
    r" aged=(\d+)$",
    re.M,
)


def parse_wrk(output: str) -> WrkResult:
    """The FLEET, AGES and FIRST_ERROR lines bench/fleet.lua prints in done()."""
    match = _FLEET_LINE.search(output)
    if match is None:
        raise ValueError(f"no FLEET line in wrk's output: {output[-500:]!r}")
    ages: Counter[int] = Counter()
    first_error = ""
    for line in output.splitlines():
        if line.startswith("AGES "):
            for item in line[5:].split(","):
                if item:
                    bucket, count = item.split(":")
                    ages[int(bucket)] += int(count)
        elif line.startswith("FIRST_ERROR "):
            first_error = line[len("FIRST_ERROR ") :].strip()
    requests, seconds, socket_errors, error_answers, aged = match.groups()
    return WrkResult(
        int(requests),
        float(seconds),
        int(socket_errors),
        int(error_answers),
        int(aged),
        ages,
        first_error,
    )


def verdicts(outcome: Outcome) -> list[tuple[str, bool]]:
    """Each target that applies to the scenario, and whether it was met."""
    checks: list[tuple[str, bool]] = []
    p50 = outcome.age(0.5)
    if outcome.scenario.sessions >= 1000:
        checks += [
            ("0 error answers", outcome.errors == 0),
            (
                f"at most {BUDGET_PER_WINDOW} upstream in every {WINDOW:g} s window",
                outcome.window_max <= BUDGET_PER_WINDOW,
            ),
        ]
        if not outcome.scenario.callbacks:  # with callbacks an old copy is still current
            checks.append(
                (
                    f"p50 age <= {MAX_P50_AGE_1000:g} s",
                    p50 is not None and p50 <= MAX_P50_AGE_1000,
                )
            )
    else:
        checks += [
            (
                f"at most {MAX_UPSTREAM_RPS_100:g} upstream req/s",
                outcome.upstream_per_s <= MAX_UPSTREAM_RPS_100,
            ),
            (f"p50 age <= {MAX_P50_AGE_100:g} s", p50 is not None and p50 <= MAX_P50_AGE_100),
        ]
    per_change = outcome.per_change
    if per_change is not None:
        checks.append(
            (
                f"at most {MAX_CALLS_PER_CHANGE:g} upstream calls per change",
                per_change <= MAX_CALLS_PER_CHANGE,
            )
        )
    return checks


async def warm_up(
    targets: Sequence[tuple[str, str]], uuids: Sequence[str], rate: float
) -> Counter[str]:
    """Read every session once, `rate` first reads a second, alternating over `targets` (URL,
    API key); an answer RATE_LIMITED is retried after its retryAfter. Counts reads, retries and
    failures (no answer with data within 120 s)."""
    tally: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def first_read(index: int, session_uuid: str) -> None:
            url, key = targets[index % len(targets)]
            headers = {"Authorization": f"Bearer {key}"}
            body = {"query": QUERY % session_uuid}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                wait = 1.0
                try:
                    answer = await client.post(url, json=body, headers=headers)
                    payload = answer.json()
                except (httpx.HTTPError, ValueError):
                    payload = {}
                errors = payload.get("errors") if isinstance(payload, dict) else None
                if payload.get("data") and not errors:
                    tally["reads"] += 1
                    return
                for error in errors or []:
                    extensions = error.get("extensions") or {}
                    if extensions.get("code") == "RATE_LIMITED":
                        wait = float(extensions.get("retryAfter") or 1.0)
                tally["retries"] += 1
                await asyncio.sleep(wait)
            tally["failures"] += 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        reads = []
        for index, session_uuid in enumerate(uuids):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
            reads.append(asyncio.create_task(first_read(index, session_uuid)))
        await asyncio.gather(*reads)
    return tally


def simulator_now(simulator: str) -> float:
    """The simulator's monotonic clock (the one its traffic times are on)."""
    answer = httpx.get(f"{simulator}/__simulator/traffic", params={"since": "inf"}).json()
    now: float = answer["now"]
    return now


def traffic(simulator: str, since: float, until: float) -> list[float]:
    answer = httpx.get(
        f"{simulator}/__simulator/traffic", params={"since": since, "until": until}, timeout=30
    ).json()
    times: list[float] = answer["times"]
    return times


def count(figures: Mapping[str, object], name: str) -> int:
    value = figures[name]
    assert isinstance(value, int)
    return value


def stats(simulator: str) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{simulator}/__simulator/stats").json()
    return body


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.2)


def poll(
    targets: Sequence[tuple[str, str]], uuid_file: Path, sessions: int, seconds: float
) -> WrkResult:
    """Two wrk processes at once, one per gateway, each round-robin over every session."""
    script = str(HERE / "fleet.lua")
    children = []
    for index, (url, key) in enumerate(targets):
        argv = [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS // len(targets)}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            script,
            url,
            "--",
            str(uuid_file),
            str(index * sessions // len(targets)),
            f"Authorization: Bearer {key}",
        ]
        children.append(
            subprocess.Popen(
                pinned(LOAD_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [(child, *child.communicate()) for child in children]
    result = WrkResult()
    for child, output, errors in outputs:
        if child.returncode != 0:
            raise RuntimeError(f"wrk failed ({child.returncode}): {errors.strip()}")
        result = result + parse_wrk(output)
    return result


def run_scenario(scenario: Scenario, index: int, args: argparse.Namespace, logs: Path) -> Outcome:
    prefix = f"bench-fleet-{os.getpid()}-{index}-{secrets.token_hex(3)}"
    uuids = [str(uuid.uuid4()) for _ in range(scenario.sessions)]
    uuid_file = logs / f"uuids-{index}.txt"
    uuid_file.write_text("\n".join(uuids) + "\n")
    try:
        with ExitStack() as stack:
            simulator = start_simulator(
                stack, logs, latency_ms=LATENCY_MS, live=True, name=f"simulator-{index}"
            )
            targets: list[tuple[str, str]] = []
            callback_urls: list[str] = []
            for name, key in KEYS.items():
                port = free_port()
                env = gateway_env(prefix, port if scenario.callbacks else None)
                url, _pid = start_gateway(
                    stack, logs, simulator, env, f"gateway-{index}-{name}", port=port
                )
                targets.append((url, key))
                callback_urls.append(f"http://127.0.0.1:{port}/plivo/callbacks")
            warm_start = time.monotonic()
            if scenario.callbacks:
                start_changes(simulator, uuids, callback_urls, args.change_every)
                wait_until(
                    lambda: count(stats(simulator), "callbacks_sent") >= len(uuids),
                    60,
                    "the initial callbacks",
                )
            tally = asyncio.run(warm_up(targets, uuids, args.warmup_rate))
            warmup_seconds = time.monotonic() - warm_start
            before = stats(simulator)
            start = simulator_now(simulator)
            polls = poll(targets, uuid_file, scenario.sessions, args.duration)
            end = simulator_now(simulator)
            after = stats(simulator)
            if scenario.callbacks:
                httpx.delete(f"{simulator}/__simulator/bench/changes", timeout=30)
            times = traffic(simulator, start, end)
            return Outcome(
                scenario,
                polls,
                upstream=len(times),
                seconds=end - start,
                window_max=window_max(times),
                changes=count(after, "changes") - count(before, "changes"),
                callbacks=difference(after["callbacks_by_status"], before["callbacks_by_status"]),
                warmup_retries=tally["retries"],
                warmup_failures=tally["failures"],
                warmup_seconds=warmup_seconds,
            )
    finally:
        forget_prefix(prefix)


def gateway_env(prefix: str, callback_port: int | None) -> dict[str, str]:
    """What each gateway runs with, on top of bench/processes.py's production settings."""
    env = {
        "GATEWAY_CACHE_URL": REDIS_URL,
        "GATEWAY_CACHE_PREFIX": prefix,
        "GATEWAY_API_KEYS": api_keys_setting(KEYS),
    }
    if callback_port is not None:
        env["GATEWAY_PUBLIC_URL"] = f"http://127.0.0.1:{callback_port}"
    return env


def start_changes(simulator: str, uuids: list[str], urls: list[str], every: float) -> None:
    body = {
        "uuids": uuids,
        "callback_urls": urls,
        "initial": True,
        "initial_over": 5.0,
        "every": every,
    }
    answer = httpx.post(f"{simulator}/__simulator/bench/changes", json=body, timeout=30)
    answer.raise_for_status()


def difference(after: object, before: object) -> dict[str, int]:
    assert isinstance(after, dict)
    assert isinstance(before, dict)
    return {k: int(v) - int(before.get(k, 0)) for k, v in after.items() if v != before.get(k, 0)}


def forget_prefix(prefix: str) -> None:
    """Delete the run's keys from Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def render(outcomes: list[Outcome], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"Each scenario: two gateways (production settings, default limits and Plivo budget,"
        f" Redis shared) on GATEWAY_CPU, the simulator's live bench mode ({LATENCY_MS} ms"
        f" latency) and wrk on LOAD_CPU; a warm-up reads every session once at about"
        f" {args.warmup_rate:g} a second (not counted), then two wrk processes poll every session"
        f" round-robin for {args.duration:g} s, {CONNECTIONS} connections in all. Ages are"
        f" extensions.cache's, to {BUCKET:g} s. Upstream: the simulator's session GETs during"
        f" the polling; window: the most in any {WINDOW:g} s sliding window.",
        "",
        f"Command: `{command}`",
        "",
        "| scenario | polls/s | error answers | upstream max in 5 s | upstream req/s"
        " | age p50 / p99 s | upstream per change | targets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for outcome in outcomes:
        checks = "; ".join(
            f"{name}: {'met' if met else 'NOT MET'}" for name, met in verdicts(outcome)
        )
        per_change = outcome.per_change
        lines.append(
            f"| {outcome.scenario.name} | {outcome.polls_per_s:,.0f} | {outcome.errors:,}"
            f" | {outcome.window_max:,} | {outcome.upstream_per_s:.1f}"
            f" | {_seconds(outcome.age(0.5))} / {_seconds(outcome.age(0.99))}"
            f" | {'n/a' if per_change is None else f'{per_change:.2f} ({outcome.changes} changes)'}"
            f" | {checks} |"
        )
    notes = []
    for outcome in outcomes:
        note = (
            f"{outcome.scenario.name}: warm-up {outcome.warmup_seconds:.0f} s,"
            f" {outcome.warmup_retries:,} retried reads, {outcome.warmup_failures:,} failed"
        )
        if outcome.scenario.callbacks:
            note += f"; callbacks answered during the polling: {outcome.callbacks or 'none'}"
        if outcome.polls.first_error:
            note += f"; first error answer: `{outcome.polls.first_error[:300]}`"
        notes.append(f"- {note}")
    return "\n".join([*lines, "", *notes])


def add_heading(path: Path) -> None:
    """The section's heading and what it measures, the first time it is written."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if "<!-- fleet:begin -->" in current:
        return
    heading = (
        "## Fleet freshness: polling within Plivo's budget (`make bench-fleet`)\n\n"
        "Frontends poll in-progress sessions through two gateways that share Redis; Plivo allows"
        " an account about 300 requests per 5 s. Targets: at 1,000 sessions no error answers, at"
        " most 300 upstream requests in every 5 s window and a median age of at most 20 s; at 100"
        " sessions at most 50 upstream requests a second and a median age of at most 2 s; with"
        " callbacks on, at most 2 upstream calls per status change.\n"
    )
    path.write_text(current.rstrip() + "\n\n" + heading, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds of polling (20)")
    parser.add_argument(
        "--change-every", type=float, default=1.0, help="seconds between status changes (1)"
    )
    parser.add_argument(
        "--warmup-rate", type=float, default=WARMUP_RATE, help="first reads a second (40)"
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if not redis_answers():
        print(f"no Redis answers at {REDIS_URL} (redis-server --daemonize yes)", file=sys.stderr)
        return 2
    scenarios = (
        Scenario("100 sessions, polled", 100),
        Scenario("1,000 sessions, polled", 1000),
        Scenario(f"1,000 sessions, callbacks, a change every {args.change_every:g} s", 1000, True),
    )
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        outcomes = []
        for index, scenario in enumerate(scenarios):
            print(f"{scenario.name} ...", file=sys.stderr, flush=True)
            outcomes.append(run_scenario(scenario, index, args, logs))
    text = render(outcomes, args, command_line("bench.fleet", argv))
    if args.write is not None:
        add_heading(args.write)
    publish(text, args.write, "fleet")
    for outcome in outcomes:
        for name, met in verdicts(outcome):
            print(f"{outcome.scenario.name}: {name}: {'met' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
