"""CPU per upstream GET of each HTTP client under `UpstreamHTTP`, in-process, on one core.

    .venv/bin/python -m bench.upstream_clients [--clients aiohttp,httpx,lean] [--requests 20000]
        [--concurrency 50] [--repeats 5] [--extra-path DIR]

A raw asyncio server (uvloop, pinned to LOAD_CPU) answers every GET with a fixed Plivo session
body (Content-Length, keep-alive). For each client, a fresh process pinned to GATEWAY_CPU
drives `--concurrency` GETs in flight through its `send` until `--requests` have been answered
(after a warm-up of the same size) and prints the process CPU time per request, in
microseconds: what one upstream call costs the gateway's core, with the server's share left
out. Runs are interleaved (A B C, then C B A, ...) and the medians reported, because the
machine is shared and noisy.

Clients: aiohttp, httpx, lean (the project's), and, when importable (e.g. installed with
`pip install --target DIR curl-cffi niquests rnet` and named by `--extra-path DIR`, which only
their runs see), curl-cffi, niquests and rnet through thin adapters that read the whole body:
they skip the size cap, so their figures are a floor for what they would cost here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from gateway import fixtures
from gateway.plivo.client import DEFAULT_HEADERS, create_http_client
from gateway.plivo.transport import AiohttpUpstream, HttpxUpstream, UpstreamHTTP

GATEWAY_CPU = os.environ.get("GATEWAY_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
BODY = json.dumps(fixtures.load("get-docs-example")).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Connection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)
PATH = "/v1/Account/MA0000000000000000000/Verify/Session/6ad1b8c4-6ee4-4ba5-b22c-64e8e6a4d2c4/"
HEADERS = {"Authorization": "Basic TUEwMDAwMDAwMDAwMDAwMDAwMDAwOnRva2Vu"}
BUILTIN = ("aiohttp", "httpx", "lean")
EXTRA = ("curl-cffi", "niquests", "rnet")


class _Answering(asyncio.Protocol):
    """Answers each request (a head without a body) with ANSWER, pipelining included."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport, self._pending = cast(asyncio.Transport, transport), b""

    def data_received(self, data: bytes) -> None:
        self._pending += data
        count = self._pending.count(b"\r\n\r\n")
        if count:
            self._pending = self._pending[self._pending.rfind(b"\r\n\r\n") + 4 :]
            self._transport.write(ANSWER * count)


async def serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Answering, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


class _Adapter:
    """A third-party client's GET under `UpstreamHTTP` (no cap, no error mapping)."""

    def __init__(self, base: str, get: Callable[[str], Awaitable[tuple[int, bytes]]]) -> None:
        self._base, self._get = base, get
        self.closers: list[Callable[[], Awaitable[Any] | Any]] = []

    async def send(
        self, method: str, path: str, headers: dict[str, str], subject: str, **_: Any
    ) -> tuple[int, bytes]:
        return await self._get(self._base + path)

    async def close(self) -> None:
        for close in self.closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result


def _extra(name: str, base: str, concurrency: int) -> _Adapter:
    headers = {**DEFAULT_HEADERS, **HEADERS}
    if name == "curl-cffi":
        requests: Any = importlib.import_module("curl_cffi.requests")
        session = requests.AsyncSession(max_clients=concurrency, headers=headers)

        async def curl_get(url: str) -> tuple[int, bytes]:
            response = await session.get(url)
            return response.status_code, response.content

        adapter = _Adapter(base, curl_get)
        adapter.closers.append(session.close)
        return adapter
    if name == "niquests":
        niquests: Any = importlib.import_module("niquests")
        nsession = niquests.AsyncSession(pool_connections=1, pool_maxsize=concurrency)
        nsession.headers.update(headers)

        async def niquests_get(url: str) -> tuple[int, bytes]:
            response = await nsession.get(url)
            return response.status_code, response.content

        adapter = _Adapter(base, niquests_get)
        adapter.closers.append(nsession.close)
        return adapter
    rnet: Any = importlib.import_module("rnet")
    client = rnet.Client(http1_only=True, pool_max_size=concurrency, no_proxy=True)

    async def rnet_get(url: str) -> tuple[int, bytes]:
        response = await client.get(url, headers=headers)
        return int(response.status), await response.bytes()

    return _Adapter(base, rnet_get)


def build(name: str, base: str, concurrency: int) -> UpstreamHTTP | _Adapter:
    if name == "aiohttp":
        return AiohttpUpstream(
            base,
            connect_timeout=3,
            read_timeout=10,
            max_connections=128,
            headers=DEFAULT_HEADERS,
        )
    if name == "httpx":
        return HttpxUpstream(create_http_client(base, connect_timeout=3, read_timeout=10))
    if name == "lean":
        lean = importlib.import_module("gateway.plivo.lean")
        upstream: UpstreamHTTP = lean.LeanUpstream(
            base, connect_timeout=3, read_timeout=10, max_connections=128, headers=DEFAULT_HEADERS
        )
        return upstream
    return _extra(name, base, concurrency)


async def drive(upstream: UpstreamHTTP | _Adapter, total: int, concurrency: int) -> None:
    """`total` GETs, `concurrency` at a time, each checked."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = await upstream.send("GET", PATH, HEADERS, "a session")
            status, body = answer if isinstance(answer, tuple) else (answer.status, answer.body)
            assert (status, len(body)) == (200, len(BODY)), status

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(name: str, base: str, total: int, concurrency: int) -> dict[str, object]:
    upstream = build(name, base, concurrency)
    try:
        await drive(upstream, total, concurrency)  # warm-up: connections, caches
        cpu, wall = time.process_time(), time.perf_counter()
        await drive(upstream, total, concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await upstream.close()
    return {"client": name, "cpu_us": cpu / total * 1e6, "rps": total / wall}


def pinned(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def run_one(name: str, base: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    if name in EXTRA and args.extra_path:
        env["PYTHONPATH"] = os.pathsep.join([args.extra_path, os.getcwd()])
    command = [*pinned(GATEWAY_CPU), sys.executable, "-m", "bench.upstream_clients", "--run"]
    command += [name, "--url", base, "--requests", str(args.requests)]
    command += ["--concurrency", str(args.concurrency)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"client": name, "cpu_us": float("nan"), "rps": float("nan")}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(args: argparse.Namespace) -> None:
    command = [*pinned(LOAD_CPU), sys.executable, "-m", "bench.upstream_clients", "--serve"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.clients}
        for repeat in range(args.repeats):
            order = args.clients if repeat % 2 == 0 else args.clients[::-1]
            for name in order:
                result = run_one(name, base, args)
                results[name].append(result)
                print(f"  {name:10} {result['cpu_us']:7.1f} us/req  {result['rps']:8.0f} req/s")
    finally:
        server.terminate()
        server.wait()
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print("\n| client | CPU µs per GET, median (each run) | req/s, median |")
    print("| --- | --- | --- |")
    for name, runs in results.items():
        cpus = [run["cpu_us"] for run in runs]
        each = ", ".join(f"{cpu:.1f}" for cpu in cpus)
        rps = statistics.median(run["rps"] for run in runs)
        print(f"| {name} | {statistics.median(cpus):.1f} ({each}) | {rps:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="aiohttp,httpx,lean")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extra-path", default="")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop  # what uvicorn runs the gateway on

    if args.serve:
        uvloop.run(serve())
    elif args.run:
        result = uvloop.run(measure(args.run, args.url, args.requests, args.concurrency))
        print(json.dumps(result))
    else:
        args.clients = [name.strip() for name in args.clients.split(",") if name.strip()]
        unknown = set(args.clients) - {*BUILTIN, *EXTRA}
        if unknown:
            parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
        compare(args)


if __name__ == "__main__":
    main()
