"""Real servers for tests: an ASGI app on a loopback socket in a thread, and free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from gateway.web.protocol import HTTP_SERVING

COMMAND = str(Path(sys.executable).with_name("plivo-gateway"))


def loopback_socket() -> socket.socket:
    """A listening-ready socket bound to a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A loopback port that was free a moment ago (for child processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: ASGIApp, *, lifespan: bool = False) -> Iterator[str]:
    """Serve `app` with uvicorn on a loopback port; yields its base URL."""
    sock = loopback_socket()
    config = uvicorn.Config(
        app,
        **HTTP_SERVING,  # as `serve` runs
        log_config=None,
        access_log=False,
        lifespan="on" if lifespan else "off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_for_http(
    url: str,
    *,
    timeout: float = 20.0,
    child: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `url` until it answers 200, or fail after `timeout` seconds; with `child`, fail as
    soon as that process ends, showing its `log`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            output = log.read_text() if log is not None else ""
            raise AssertionError(f"{url}: the process exited:\n{output}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def process(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, its output in `log`, terminated (then killed) when the block ends."""
    with log.open("wb") as output:
        child = subprocess.Popen(
            [COMMAND, *args], env={**os.environ, **env}, stdout=output, stderr=output
        )
        try:
            yield child
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
