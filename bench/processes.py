"""Start the simulator and gateways as pinned child processes, and stop them again."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx

COMMAND = str(Path(sys.executable).with_name("plivo-gateway"))
AUTH_ID = "MABENCHBENCHBENCH000"
AUTH_TOKEN = "bench-token"
API_KEY = "bench-api-key"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
AUTH_HEADER = {"Authorization": f"Bearer {API_KEY}"}
GATEWAY_CPU = os.environ.get("GATEWAY_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: str, argv: list[str]) -> list[str]:
    """`argv` under taskset on `cpu`, where taskset exists."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpu, *argv] if taskset else argv


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def start(stack: ExitStack, argv: list[str], env: dict[str, str], log: Path) -> int:
    """Run `argv` until the stack closes; output to `log`; returns its pid."""
    output = stack.enter_context(log.open("wb"))
    child = subprocess.Popen(argv, env={**os.environ, **env}, stdout=output, stderr=output)

    def stop() -> None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    stack.callback(stop)
    return child.pid


def start_simulator(
    stack: ExitStack,
    logs: Path,
    *,
    latency_ms: int = 0,
    extra: tuple[str, ...] = (),
    live: bool = False,
    name: str = "simulator",
) -> str:
    """The simulator in bench mode (`live`: --bench-live), pinned to LOAD_CPU; returns its URL."""
    port = free_port()
    mode = "--bench-live" if live else "--bench"
    argv = [COMMAND, "simulate", mode, "--port", str(port), "--latency-ms", str(latency_ms)]
    argv += [f"--extra-credential={credential}" for credential in extra]
    credential = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    start(stack, pinned(LOAD_CPU, argv), credential, logs / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/__simulator/stats")
    return url


def start_gateway(
    stack: ExitStack,
    logs: Path,
    upstream: str,
    env: dict[str, str],
    name: str,
    port: int | None = None,
    command: Sequence[str] = (COMMAND, "serve"),
) -> tuple[str, int]:
    """One gateway process pinned to GATEWAY_CPU: its /graphql URL and pid. `command` serves
    the app, `plivo-gateway serve` by default, and is given `--port`."""
    port = port or free_port()
    settings = {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": upstream,
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_API_KEYS": f"bench:{API_KEY_SHA256}:read",
        "GATEWAY_ENV": "production",
        **env,
    }
    argv = [*command, "--port", str(port)]
    pid = start(stack, pinned(GATEWAY_CPU, argv), settings, logs / f"{name}.log")
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return f"http://127.0.0.1:{port}/graphql", pid


def api_keys_setting(keys: Mapping[str, str], scopes: str = "read") -> str:
    """GATEWAY_API_KEYS for these keys by name (`name:sha256:scopes`, comma-separated)."""
    return ",".join(
        f"{name}:{hashlib.sha256(key.encode()).hexdigest()}:{scopes}" for name, key in keys.items()
    )


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upstream_calls(simulator: str) -> int:
    """Session requests the simulator served since the last reset; resets the counter."""
    served: int = httpx.post(f"{simulator}/__simulator/stats").json()["served"]
    return served
