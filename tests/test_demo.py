"""The real `plivo-gateway demo`: its banner works as printed; each log line names its part."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.fixtures import DOCS_EXAMPLE_UUID
from tests.servers import COMMAND, free_port, wait_for_http

pytestmark = pytest.mark.e2e
DEADLINE = 20.0
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d{3})? ")


@dataclass
class Demo:
    """A running demo: the process, what it printed, what it logged."""

    child: subprocess.Popen[bytes]
    out: Path
    err: Path
    url: str

    def banner_line(self, starting: str) -> str:
        lines = self.out.read_text().splitlines()
        return next(line.strip() for line in lines if line.strip().startswith(starting))

    def log(self) -> list[str]:
        return self.err.read_text().splitlines()

    def stop(self) -> list[str]:
        """Ctrl+C, as a user stops it: it exits 0; its log lines."""
        self.child.send_signal(signal.SIGINT)
        assert self.child.wait(timeout=DEADLINE) == 0, self.err.read_text()
        return self.log()


@contextmanager
def demo(tmp_path: Path, **env: str) -> Iterator[Demo]:
    port, sim_port = free_port(), free_port()
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(
            [COMMAND, "demo", "--port", str(port), "--simulator-port", str(sim_port)],
            env={**os.environ, **env},
            stdout=stdout,
            stderr=stderr,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            yield Demo(child, out, err, f"http://127.0.0.1:{port}")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} after {DEADLINE} s"
        time.sleep(0.05)
    return result


def run_gateway_curl(running: Demo) -> dict[str, Any]:
    """The banner's curl to the gateway, sent as curl would send it."""
    args = shlex.split(running.banner_line("curl -s http"))
    url, body = args[2], args[args.index("-d") + 1]
    answer = httpx.post(url, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_banners_curls_answer_and_the_simulator_credential_is_given(tmp_path: Path) -> None:
    with demo(tmp_path) as running:
        result = run_gateway_curl(running)
        assert result.get("errors") is None
        assert result["data"]["session"]["sessionUuid"] == DOCS_EXAMPLE_UUID
        curl, silent, user, credential, url = shlex.split(running.banner_line("curl -s -u"))
        assert (curl, silent, user) == ("curl", "-s", "-u")
        auth_id, _, token = credential.partition(":")
        assert running.banner_line("auth id:") == f"auth id:    {auth_id}"
        assert running.banner_line("auth token:") == f"auth token: {token}"
        direct = httpx.get(url, auth=(auth_id, token))
        assert direct.status_code == 200, direct.text
        assert direct.json()["session_uuid"] == DOCS_EXAMPLE_UUID
        assert httpx.get(url).status_code == 401  # it is the credential that opens it
        running.stop()


def test_each_log_line_names_its_part_and_none_is_there_twice(tmp_path: Path) -> None:
    with demo(tmp_path) as running:
        run_gateway_curl(running)
        until(lambda: any("gateway.access" in line for line in running.log()), "access line")
        lines = running.stop()
    assert "Traceback" not in "\n".join(lines)
    parts = [line.split(" | ", 1)[0].strip() for line in lines]
    assert set(parts) == {"gateway", "simulator"}, lines  # each line is one part's
    access = [line for line in lines if "gateway.access" in line]
    assert access
    assert all(line.startswith("gateway   | ") for line in access)
    without_time = [STAMP.sub("", line) for line in lines]
    assert len(set(without_time)) == len(without_time), lines
    for part in ("gateway", "simulator"):
        assert f"{part:<9} | INFO uvicorn.error [-] Application startup complete." in without_time


def test_json_lines_of_the_demo_carry_their_part(tmp_path: Path) -> None:
    with demo(tmp_path, GATEWAY_LOG_FORMAT="json") as running:
        run_gateway_curl(running)
        until(lambda: any("gateway.access" in line for line in running.log()), "access line")
        lines = [json.loads(line) for line in running.stop()]
    assert {line["component"] for line in lines} == {"gateway", "simulator"}
    assert {line["component"] for line in lines if line["logger"] == "gateway.access"} == {
        "gateway"
    }


def test_demo_at_debug_shows_the_gateways_debug_lines(tmp_path: Path) -> None:
    with demo(tmp_path, GATEWAY_LOG_LEVEL="DEBUG") as running:
        run_gateway_curl(running)  # a session read from the simulator: the client says so
        pattern = re.compile(r"^gateway   \| .* DEBUG gateway\.plivo\.client .* -> 200 in")
        until(lambda: any(pattern.match(line) for line in running.log()), "debug line")
        running.stop()


def test_demo_at_warning_hides_info_lines(tmp_path: Path) -> None:
    with demo(tmp_path, GATEWAY_LOG_LEVEL="WARNING") as running:
        run_gateway_curl(running)
        lines = running.stop()
    assert [line for line in lines if " INFO " in line] == []


ONE_PART_CANNOT_START = """
import asyncio
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from gateway.cli import _QuietSignalsServer, _serve_all, listen
from gateway.observability import configure_logging


@asynccontextmanager
async def refusing(app):
    raise RuntimeError("this part cannot start")
    yield


configure_logging("INFO", "text")
sockets = listen([("127.0.0.1", 0, "--port"), ("127.0.0.1", 0, "--simulator-port")])
parts = [
    ("gateway", Starlette(lifespan=refusing), sockets[0]),
    ("simulator", Starlette(), sockets[1]),
]
servers = [
    (part, _QuietSignalsServer(uvicorn.Config(app, log_config=None)), sock)
    for part, app, sock in parts
]
print("all started:", asyncio.run(_serve_all(servers)))
"""


def test_a_part_that_cannot_start_stops_the_other_without_a_stray_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ONE_PART_CANNOT_START],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "all started: False\n"), result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("gateway   | ") and "startup failed" in line for line in lines)
    assert any(line.startswith("simulator | ") and "Finished server" in line for line in lines)
    assert "Task was destroyed" not in result.stderr
    assert "SystemExit" not in result.stderr
