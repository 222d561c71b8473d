"""`serve --workers N`: every worker logs like `serve`, /metrics adds up all of them; open files."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.simulator import SimulatorSettings, create_simulator
from tests.conftest import AUTH_ID, AUTH_TOKEN
from tests.servers import COMMAND, free_port, serve_in_thread, wait_for_http
from tests.test_flow import START

pytestmark = pytest.mark.e2e
DEADLINE = 30.0
COUNTED = "query Counted { __typename }"
BASE_ENV = {
    "PLIVO_AUTH_ID": AUTH_ID,
    "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
    "GATEWAY_AUTH": "none",
    "GATEWAY_LOG_LEVEL": "INFO",
    "GATEWAY_LOG_FORMAT": "json",
}


@dataclass
class Gateway:
    """A `plivo-gateway` process on a loopback port, and its log."""

    child: subprocess.Popen[bytes]
    url: str
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The complete log lines so far, each a JSON object (a line that is not fails here)."""
        text = self.log.read_text()
        return [json.loads(line) for line in text.split("\n")[:-1]]


@contextmanager
def gateway(
    *args: str, env: dict[str, str], log: Path, open_files: tuple[int, int] | None = None
) -> Iterator[Gateway]:
    """`plivo-gateway serve|demo ...` started with `open_files` as its (soft, hard) limit."""
    port = free_port()

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    with log.open("wb") as output:
        child = subprocess.Popen(
            [COMMAND, *args, "--port", str(port)],
            env={**os.environ, **env},
            stdout=output,
            stderr=output,
            preexec_fn=limit,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            yield Gateway(child, f"http://127.0.0.1:{port}", log)
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def until(check: Callable[[], Any], what: str, within: float = DEADLINE) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after `within` s."""
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} after {within} s"
        time.sleep(0.05)
    return result


def worker_of(response: httpx.Response) -> str:
    """Which worker answered: the prefix each process draws for the request ids it makes."""
    return response.headers["x-request-id"][:16]


def on_a_new_connection(url: str, **request: Any) -> httpx.Response:
    """One request on a connection of its own, so that any worker may accept it."""
    with httpx.Client(timeout=10) as client:
        response = client.request("GET" if "json" not in request else "POST", url, **request)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`serve --workers 2` on the shared Redis, started with a soft open-files limit of 512."""
    from tests.redis_server import require_shared_redis, unique_prefix

    simulator = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN))
    with ExitStack() as stack:
        sim_url = stack.enter_context(serve_in_thread(simulator))
        env = {
            **BASE_ENV,
            "PLIVO_API_URL": sim_url,
            "GATEWAY_CACHE_URL": require_shared_redis(),
            "GATEWAY_CACHE_PREFIX": unique_prefix(),
            "GATEWAY_STARTS_PER_KEY": "10000/60",
        }
        log = tmp_path_factory.mktemp("workers") / "gateway.log"
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        yield stack.enter_context(
            gateway("serve", "--workers", "2", env=env, log=log, open_files=(512, hard))
        )


def test_every_worker_writes_json_access_and_audit_lines(workers: Gateway) -> None:
    answered: dict[str, list[str]] = {}  # worker -> the request ids it made

    def start_until_both_answered() -> bool:
        recipient = f"9199994{sum(map(len, answered.values())):05d}"
        body = {"query": START, "variables": {"input": {"recipient": recipient}}}
        response = on_a_new_connection(f"{workers.url}/graphql", json=body)
        assert "errors" not in response.json(), response.text
        answered.setdefault(worker_of(response), []).append(response.headers["x-request-id"])
        return len(answered) == 2

    until(start_until_both_answered, "second worker answering")

    def lines_of_every_request() -> dict[str, list[dict[str, Any]]] | None:
        by_id: dict[str, list[dict[str, Any]]] = {}
        for line in workers.lines():
            by_id.setdefault(line.get("request_id", ""), []).append(line)
        ids = [rid for rids in answered.values() for rid in rids]
        return by_id if all(len(by_id.get(rid, [])) >= 2 for rid in ids) else None

    by_id = until(lines_of_every_request, "access and audit lines for every request")
    pids = set()
    for rids in answered.values():
        for rid in rids:
            lines = {line["logger"]: line for line in by_id[rid]}
            access, audit = lines["gateway.access"], lines["gateway.audit"]
            assert (access["message"], access["path"]) == ("POST /graphql 200", "/graphql")
            assert audit["audit"]["operation"] == "startVerification"
            assert audit["audit"]["outcome"] == "started"
            assert access["pid"] == audit["pid"] != workers.child.pid
            pids.add(access["pid"])
    assert len(pids) == 2  # the two workers, each with its own lines
    for pid in pids:  # the workers inherited the raised limit on open files
        soft, hard = open_files_limits(pid)
        assert soft == hard


def test_metrics_count_the_requests_of_every_worker(workers: Gateway) -> None:
    served: dict[str, int] = {}

    def count_until_both_answered() -> bool:
        response = on_a_new_connection(f"{workers.url}/graphql", json={"query": COUNTED})
        served[worker_of(response)] = served.get(worker_of(response), 0) + 1
        return len(served) == 2 and sum(served.values()) >= 10

    until(count_until_both_answered, "second worker answering")
    expected = (
        f'gateway_requests_total{{operation="Counted",outcome="ok"}} {sum(served.values())}.0'
    )
    scraped: set[str] = set()

    def scrape_until_both_answered() -> bool:
        response = on_a_new_connection(f"{workers.url}/metrics")
        assert expected in response.text.splitlines(), (expected, response.text)
        scraped.add(worker_of(response))
        return len(scraped) == 2

    until(scrape_until_both_answered, "scrape answered by the second worker")


def test_the_workers_metrics_directory_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    from tests.redis_server import require_shared_redis, unique_prefix

    env = {
        **BASE_ENV,
        "PLIVO_API_URL": "http://127.0.0.1:9",
        "GATEWAY_CACHE_URL": require_shared_redis(),
        "GATEWAY_CACHE_PREFIX": unique_prefix(),
    }
    with gateway("serve", "--workers", "2", env=env, log=tmp_path / "log") as process:
        on_a_new_connection(f"{process.url}/graphql", json={"query": COUNTED})
        worker = until(
            lambda: next(
                (ln["pid"] for ln in process.lines() if ln["pid"] != process.child.pid), 0
            ),
            "line from a worker",
        )
        environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        directory = Path(
            next(v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
            .split(b"=", 1)[1]
            .decode()
        )
        assert directory.stat().st_mode & 0o777 == 0o700
        assert until(lambda: list(directory.glob("counter_*.db")), "counters in the directory")
    assert process.child.returncode == 0
    assert not directory.exists()


def open_files_limits(pid: int) -> tuple[int, int]:
    """The soft and hard limits on open files of a process, as /proc/<pid>/limits says."""
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_serve_and_demo_raise_the_open_files_limit_to_the_hard_one(
    command: str, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard <= 256:
        pytest.skip(f"the hard limit on open files ({hard}) leaves nothing to raise")
    args = ("demo", "--simulator-port", str(free_port())) if command == "demo" else ("serve",)
    env = {**BASE_ENV, "PLIVO_API_URL": "http://127.0.0.1:9"}
    with gateway(*args, env=env, log=tmp_path / "log", open_files=(256, hard)) as process:
        assert open_files_limits(process.child.pid) == (hard, hard)
        wanted = f"open files: limit {hard} (raised from 256)"
        until(lambda: wanted in process.log.read_text(), f"line {wanted!r}")


def test_a_warning_names_the_open_files_near_the_limit(tmp_path: Path) -> None:
    limit = 128
    env = {**BASE_ENV, "PLIVO_API_URL": "http://127.0.0.1:9"}
    with (
        gateway("serve", env=env, log=tmp_path / "log", open_files=(limit, limit)) as process,
        ExitStack() as sockets,
    ):
        assert any(line["message"] == f"open files: limit {limit}" for line in process.lines())
        low = [line for line in process.lines() if "is low for a server" in line["message"]]
        assert [line["level"] for line in low] == ["WARNING"]  # said at start, once
        # Connections enough to pass 90 % of the limit, and not to reach it.
        already = len(os.listdir(f"/proc/{process.child.pid}/fd"))
        for _ in range(int(0.95 * limit) - already):
            sockets.enter_context(socket.create_connection(("127.0.0.1", port(process)), 5))

        def warning() -> re.Match[str] | None:
            pattern = rf"open files: (\d+) of the limit {limit} \(\d+ %\)"
            return next(
                (
                    match
                    for line in process.lines()
                    if line["level"] == "WARNING"
                    and (match := re.match(pattern, line["message"])) is not None
                ),
                None,
            )

        found = until(warning, "warning about open files")
        assert 0.9 * limit <= int(found.group(1)) < limit


def port(process: Gateway) -> int:
    return int(process.url.rsplit(":", 1)[1])


MULTIPROCESS_WORKER = """
import sys
from gateway.metrics import Metrics
metrics = Metrics()
metrics.watching(lambda: int(sys.argv[1]))
sys.stdout.write(metrics.exposition().decode())
sys.stdout.flush()
if len(sys.argv) > 2:
    sys.stdin.read()  # stays alive until the test closes its stdin (or kills it)
"""


def test_callback_gauges_add_up_live_workers_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def scrape(watched: int) -> str:
        command = [sys.executable, "-c", MULTIPROCESS_WORKER, str(watched)]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    with subprocess.Popen(
        [sys.executable, "-c", MULTIPROCESS_WORKER, "2", "stay"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as staying:
        output = staying.stdout
        assert output is not None
        try:
            until(lambda: "gateway_watched_sessions 2.0" in output.readline(), "its scrape")
            assert "gateway_watched_sessions 5.0" in scrape(3).splitlines()  # 2 + 3
        finally:
            staying.kill()
    # Both are gone now, the second without a word: neither counts any more.
    assert "gateway_watched_sessions 4.0" in scrape(4).splitlines()


def test_workers_get_time_to_start_on_a_busy_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's supervisor kills a worker that has not answered in 5 s: too short for one that
    builds the app while the host is busy. `serve --workers` gives it WORKER_HEALTHCHECK_TIMEOUT.
    """
    from gateway import cli
    from tests.redis_server import require_shared_redis, unique_prefix

    given: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.setattr(cli, "raise_descriptor_limit", lambda: None)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    for name, value in {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "GATEWAY_AUTH": "none",
        "GATEWAY_CACHE_URL": require_shared_redis(),
        "GATEWAY_CACHE_PREFIX": unique_prefix(),
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", "--port", str(free_port()), "--workers", "2"]) == 0
    assert given["workers"] == 2
    assert given["timeout_worker_healthcheck"] == cli.WORKER_HEALTHCHECK_TIMEOUT >= 30
