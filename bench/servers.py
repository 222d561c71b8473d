"""The HTTP server under the gateway: uvicorn (httptools, uvloop) against granian, S1 and S2.

    .venv/bin/pip install granian   # not a dependency of the gateway: for this measurement
    .venv/bin/python -m bench.servers [--repeats 3] [--duration 10] [--only uvicorn,granian]

The gateway is unchanged. uvicorn serves it as `plivo-gateway serve` does; granian serves
`gateway.cli:worker_app` (the factory of `serve --workers N`) through its ASGI interface, with
its lifespan, HTTP/1.1, uvloop, one worker, websockets on and its access log off
(`granian-auto`: its default loop and HTTP versions; `granian-asyncio`: asyncio's loop).
Production settings, an API key, the Plivo budget lifted; every server pinned to GATEWAY_CPU
(0), the simulator (bench mode) and wrk to LOAD_CPU (1). The servers run side by side against
one simulator and their runs are interleaved (U G U G ...), each printed as it ends with the
load average before and after it: the cores may be shared, and a figure read without its
neighbours says little.

Beside req/s, each run gives the CPU time the server's processes (every thread, granian's
worker included) spent per request, which another load on GATEWAY_CPU moves far less than
req/s, and how much of the run they ran and waited to run (seconds a second, summed over
threads; the wait is the scheduler's run delay). A server that ran well under 1.0 shared its
core with something else, and its req/s says more about the scheduler than about the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.processes import API_KEY, start_gateway, start_simulator
from bench.run import Measure, wrk

BIN = Path(sys.executable).parent
HEADER = f"Authorization: Bearer {API_KEY}"
GRANIAN = [
    *(str(BIN / "granian"), "--interface", "asgi", "--workers", "1", "--no-access-log"),
    *("--log-level", "warning", "--factory", "gateway.cli:worker_app"),
]
SERVERS: dict[str, list[str]] = {
    "uvicorn": [str(BIN / "plivo-gateway"), "serve"],
    "granian": [*GRANIAN, "--http", "1", "--loop", "uvloop"],
    "granian-asyncio": [*GRANIAN, "--http", "1", "--loop", "asyncio"],
    "granian-auto": GRANIAN,  # its default loop (rloop, else uvloop) and HTTP (1 and 2)
}


def start_server(stack: ExitStack, logs: Path, name: str, upstream: str) -> tuple[str, int]:
    """The gateway served by `name`, pinned to GATEWAY_CPU: its /graphql URL and pid."""
    env = {"PLIVO_BUDGET_REQUESTS": "100000000"}
    return start_gateway(stack, logs, upstream, env, name, command=SERVERS[name])


def cpu_seconds(pid: int) -> tuple[float, float]:
    """Time `pid` and its descendants (every thread of each) ran, and waited to run, in s."""
    ran = waited = 0.0
    for process in [pid, *descendants(pid)]:
        for task in Path(f"/proc/{process}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                on_cpu, run_delay, _ = (task / "schedstat").read_text().split()
                ran, waited = ran + int(on_cpu) / 1e9, waited + int(run_delay) / 1e9
    return ran, waited


def descendants(pid: int) -> list[int]:
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return [grandchild for child in children for grandchild in [child, *descendants(child)]]


def load() -> str:
    """The 1-minute load average, as `uptime` gives it first."""
    return f"{os.getloadavg()[0]:.2f}"


def run(names: list[str], repeats: int, duration: float, logs: Path) -> None:
    with ExitStack() as stack:
        simulator = start_simulator(stack, logs)
        servers = {name: start_server(stack, logs, name, simulator) for name in names}
        for url, _ in servers.values():  # warm-up: imports, caches, the allocator
            wrk(url, "hot", 2, HEADER)
            wrk(url, "cold", 2, HEADER)
        print(
            "| scenario | run | server | req/s | p50 / p99 ms | CPU µs/req | ran, waited s/s"
            " | errors, bad | load |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        results: dict[tuple[str, str], list[tuple[Measure, float]]] = {}
        for mode, scenario in (("hot", "S1"), ("cold", "S2")):
            for repeat in range(1, repeats + 1):
                for name, (url, pid) in servers.items():
                    measure, per_request = one_run(
                        f"{scenario} | {repeat} | {name}", url, pid, mode, duration
                    )
                    results.setdefault((scenario, name), []).append((measure, per_request))
        summary(results)


def one_run(label: str, url: str, pid: int, mode: str, duration: float) -> tuple[Measure, float]:
    """One wrk run, printed as a row: its figures, and the CPU time spent per request in µs."""
    before, (ran, waited), started = load(), cpu_seconds(pid), time.monotonic()
    measure = wrk(url, mode, duration, HEADER)
    ran_after, waited_after = cpu_seconds(pid)
    elapsed = time.monotonic() - started
    per_request = (ran_after - ran) / (measure.rps * duration) * 1e6
    share, wait = (ran_after - ran) / elapsed, (waited_after - waited) / elapsed
    print(
        f"| {label} | {measure.rps:,.0f} | {measure.p50_ms:.2f} / {measure.p99_ms:.2f}"
        f" | {per_request:.0f} | {share:.2f}, {wait:.2f} | {measure.errors}, {measure.bad}"
        f" | {before} -> {load()} |",
        flush=True,
    )
    return measure, per_request


def summary(results: dict[tuple[str, str], list[tuple[Measure, float]]]) -> None:
    print("\n| scenario | server | median req/s | median p99 ms | median CPU µs/req | runs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (scenario, name), runs in results.items():
        rps = statistics.median(m.rps for m, _ in runs)
        p99 = statistics.median(m.p99_ms for m, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"| {scenario} | {name} | {rps:,.0f} | {p99:.2f} | {cpu:.0f} | {len(runs)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--only", default="uvicorn,granian", help="servers, comma-separated")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        print(f"unknown servers {unknown} (known: {', '.join(SERVERS)})", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if any(name.startswith("granian") for name in names) and not (BIN / "granian").exists():
        print(f"granian is not installed: {BIN / 'pip'} install granian", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        run(names, args.repeats, args.duration, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
