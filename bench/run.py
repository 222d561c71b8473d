"""S1 hot, S2 cold and S3 herd against the simulator's bench mode, written to BENCHMARKS.md.

    .venv/bin/python -m bench.run [--repeats 5] [--duration 10] [--write BENCHMARKS.md]

Each gateway (one process, production settings: API key checked, limits, metrics and request
logging on) is pinned to GATEWAY_CPU (0), the simulator and wrk to LOAD_CPU (1); the gateways
run side by side and their runs are interleaved. Every figure is the median of the repeats;
ratios are against baselines measured in the same run: the simulator queried directly (the
ceiling of the load side), the gateway with its caches off, and (for Redis) the memory cache.
Needs wrk (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.herd import REDIS_URL, redis_answers, wave
from bench.processes import (
    API_KEY,
    AUTH_ID,
    AUTH_TOKEN,
    LOAD_CPU,
    pinned,
    rss_mib,
    start_gateway,
    start_simulator,
    upstream_calls,
)
from bench.report import command_line, publish

HERE = Path(__file__).parent
HOT_UUID = "60ea68db-b123-46d9-9eb2-1201d516dbbd"
CONNECTIONS = 50


@dataclass(frozen=True)
class Measure:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    bad: int


def wrk(url: str, mode: str, seconds: float, header: str, direct: bool = False) -> Measure:
    """wrk against `url` (the GraphQL endpoint, or the simulator's session path)."""
    seed = random.randrange(0x10000000, 0x7FFFFFFF)
    if direct:
        argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-H", header, url]
        output = subprocess.run(
            pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True
        ).stdout
        return _parse_plain(output)
    script = str(HERE / "wrk.lua")
    body = str(HERE / "session.json")
    argv = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        script,
        url,
        "--",
        body,
        mode,
        str(seed),
        HOT_UUID,
        header,
    ]
    output = subprocess.run(
        pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True
    ).stdout
    result = next(row for row in output.splitlines() if row.startswith("RESULT "))
    _, _requests, rps, p50, p99, errors, bad = result.split()
    return Measure(float(rps), float(p50), float(p99), int(errors), int(bad))


def _parse_plain(output: str) -> Measure:
    rps = float(next(row for row in output.splitlines() if "Requests/sec" in row).split()[1])
    return Measure(rps, float("nan"), float("nan"), 0, 0)


def median(measures: list[Measure]) -> Measure:
    return Measure(
        statistics.median(m.rps for m in measures),
        statistics.median(m.p50_ms for m in measures),
        statistics.median(m.p99_ms for m in measures),
        sum(m.errors for m in measures),
        sum(m.bad for m in measures),
    )


def herd(url: str, simulator: str) -> tuple[int, int]:
    """200 identical lookups of a new session at 200 ms upstream latency: calls per wave."""
    import httpx

    httpx.put(f"{simulator}/__simulator/config", json={"latency_ms": 200})
    session_uuid = str(uuid.uuid4())
    upstream_calls(simulator)
    asyncio.run(wave([url], session_uuid, 200, False))
    first = upstream_calls(simulator)
    asyncio.run(wave([url], session_uuid, 200, False))
    second = upstream_calls(simulator)
    httpx.put(f"{simulator}/__simulator/config", json={"latency_ms": 0})
    return first, second


def run_targets(
    targets: dict[str, dict[str, str]], args: argparse.Namespace, logs: Path
) -> list[dict[str, object]]:
    """Every target side by side against one simulator, their runs interleaved.

    Each repeat measures every target in turn (hot, then cold), so that a machine that gets
    slower or faster during the run moves every target's figures alike, and ratios between
    targets hold better than when each target's runs come one after another.
    """
    header = f"Authorization: Bearer {API_KEY}"
    with ExitStack() as stack:
        simulator = start_simulator(stack, logs)
        started = {
            name: start_gateway(stack, logs, simulator, env, name) for name, env in targets.items()
        }
        rss_after_warmup: dict[str, float] = {}
        for name, (url, pid) in started.items():
            wrk(url, "hot", 2, header)
            wrk(url, "cold", 2, header)
            rss_after_warmup[name] = rss_mib(pid)
        hot: dict[str, list[Measure]] = {name: [] for name in started}
        cold: dict[str, list[Measure]] = {name: [] for name in started}
        for mode, measures in (("hot", hot), ("cold", cold)):
            for _ in range(args.repeats):
                for name, (url, _pid) in started.items():
                    measures[name].append(wrk(url, mode, args.duration, header))
        rows: list[dict[str, object]] = []
        for name, (url, pid) in started.items():
            rss_end = rss_mib(pid)
            rows.append(
                {
                    "name": name,
                    "S1": median(hot[name]),
                    "S2": median(cold[name]),
                    "S3": herd(url, simulator),
                    "rss": (rss_after_warmup[name], rss_end),
                }
            )
        return rows


def rss_under_cold_load(args: argparse.Namespace, logs: Path) -> tuple[float, float]:
    """Peak RSS of a memory-cache gateway after 10 s and after 60 s of S2 (new uuids)."""
    with ExitStack() as stack:
        simulator = start_simulator(stack, logs)
        env = {"PLIVO_BUDGET_REQUESTS": "100000000"}
        url, pid = start_gateway(stack, logs, simulator, env, "rss")
        header = f"Authorization: Bearer {API_KEY}"
        wrk(url, "cold", 10, header)
        at_10 = peak_rss_mib(pid)
        wrk(url, "cold", 50, header)
        return at_10, peak_rss_mib(pid)


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the peak resident memory of `pid` so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_direct(args: argparse.Namespace, logs: Path) -> Measure:
    import base64

    with ExitStack() as stack:
        simulator = start_simulator(stack, logs)
        basic = base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()).decode()
        url = f"{simulator}/v1/Account/{AUTH_ID}/Verify/Session/{HOT_UUID}/"
        wrk(url, "", 2, f"Authorization: Basic {basic}", direct=True)
        return median(
            [
                wrk(url, "", args.duration, f"Authorization: Basic {basic}", direct=True)
                for _ in range(args.repeats)
            ]
        )


def render(
    direct: Measure,
    rows: list[dict[str, object]],
    peak: tuple[float, float] | None,
    args: argparse.Namespace,
    command: str,
) -> str:
    baseline = next(r for r in rows if r["name"] == "caches off")
    lines = [
        f"Medians of {args.repeats} runs of {args.duration:g} s, {CONNECTIONS} connections,"
        " the gateways' runs interleaved (each repeat measures every gateway in turn),"
        " wrk and the simulator on LOAD_CPU, the gateways on GATEWAY_CPU. The simulator"
        f" queried directly (GET, no GraphQL) made {direct.rps:,.0f} req/s: the load side's"
        " ceiling.",
        "",
        f"Command: `{command}`",
        "",
        "| gateway | S1 hot req/s | x caches off | p50 / p99 ms | S2 cold req/s | x caches off"
        " | p50 / p99 ms | S3 upstream calls, wave 1 / 2 | errors, bad bodies"
        " | RSS after warm-up / end MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    b1, b2 = baseline["S1"], baseline["S2"]
    assert isinstance(b1, Measure)
    assert isinstance(b2, Measure)
    for row in rows:
        s1, s2, s3, rss = row["S1"], row["S2"], row["S3"], row["rss"]
        assert isinstance(s1, Measure)
        assert isinstance(s2, Measure)
        assert isinstance(s3, tuple)
        assert isinstance(rss, tuple)
        lines.append(
            f"| {row['name']} | {s1.rps:,.0f} | {s1.rps / b1.rps:.2f}"
            f" | {s1.p50_ms:.2f} / {s1.p99_ms:.2f}"
            f" | {s2.rps:,.0f} | {s2.rps / b2.rps:.2f} | {s2.p50_ms:.2f} / {s2.p99_ms:.2f}"
            f" | {s3[0]} / {s3[1]} | {s1.errors + s2.errors}, {s1.bad + s2.bad}"
            f" | {rss[0]:.0f} / {rss[1]:.0f} |"
        )
    redis = next((r for r in rows if r["name"] == "Redis cache"), None)
    memory = next((r for r in rows if r["name"] == "memory cache"), None)
    if redis is not None and memory is not None:
        r1, r2, m1, m2 = redis["S1"], redis["S2"], memory["S1"], memory["S2"]
        assert isinstance(r1, Measure)
        assert isinstance(r2, Measure)
        assert isinstance(m1, Measure)
        assert isinstance(m2, Measure)
        lines += [
            "",
            f"Redis cache against the memory cache, same run: S1 {r1.rps / m1.rps:.2f} x,"
            f" S2 {r2.rps / m2.rps:.2f} x.",
        ]
    if peak is not None:
        lines += [
            "",
            f"Peak RSS under S2 (memory cache, new uuids throughout): {peak[0]:.0f} MiB after"
            f" 10 s, {peak[1]:.0f} MiB after 60 s ({peak[1] / peak[0]:.2f} x).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--skip-rss", action="store_true", help="leave out the 60 s RSS run")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    # The simulator has no account limit: lift the fleet budget so that it is not what is measured.
    unlimited = {"PLIVO_BUDGET_REQUESTS": "100000000"}
    targets = {"memory cache": unlimited, "caches off": {**unlimited, "GATEWAY_CACHE_URL": "none"}}
    if redis_answers():
        targets["Redis cache"] = {
            **unlimited,
            "GATEWAY_CACHE_URL": REDIS_URL,
            "GATEWAY_CACHE_PREFIX": f"bench-{os.getpid()}",
        }
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        logs = str(args.logs or scratch)
        Path(logs).mkdir(parents=True, exist_ok=True)
        direct = run_direct(args, Path(logs))
        rows = run_targets(targets, args, Path(logs))
        rss = None if args.skip_rss else rss_under_cold_load(args, Path(logs))
    text = render(direct, rows, rss, args, command_line("bench.run", argv))
    publish(text, args.write, "throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
