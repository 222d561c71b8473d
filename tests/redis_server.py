"""Access to real Redis servers for tests: the shared one at 127.0.0.1:6379, or our own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import IN_CI
from tests.servers import free_port

SHARED_URL = "redis://127.0.0.1:6379/0"


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    """A PING gets +PONG."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_shared_redis() -> str:
    """The shared server's URL; skipped with a reason when it is down (failed under CI)."""
    if not redis_answers():
        reason = "no Redis at 127.0.0.1:6379 (start it: redis-server --daemonize yes ...)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return SHARED_URL


def unique_prefix() -> str:
    """A key prefix of its own, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


class OwnRedis:
    """A redis-server this test started on a port of its own, to stop, pause and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(port=self.port):
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(19)  # SIGSTOP: it accepts connections, answers nothing

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)  # SIGCONT


@contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """Start a redis-server on a free port; skipped with a reason where there is none."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI must run this test)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.stop()
