"""Health, readiness, metrics, request ids, JSON logs, traces and CORS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import fixtures
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.observability import (
    UVICORN_LOGGERS,
    AccessLog,
    DescriptorWatch,
    JsonFormatter,
    RequestIds,
    configure_logging,
    open_descriptors,
    writing_as,
)
from gateway.request_context import request_id
from tests.conftest import Simulator, eventually, gateway_client, graphql, make_settings
from tests.redis_server import own_redis
from tests.servers import free_port, process, wait_for_http

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


async def readiness(client: httpx.AsyncClient, changes: str) -> dict[str, str] | None:
    """/readyz's body when it says `changes`; None while it says otherwise.

    200 when ready, 503 while the shared state (or anything else it needs) is unreachable.
    """
    response = await client.get("/readyz")
    body: dict[str, str] = response.json()
    assert response.status_code == (200 if body["status"] == "ready" else 503)
    return body if body.get("changes") == changes else None


async def test_readyz_is_503_while_redis_is_down_and_queries_are_still_answered(
    simulator: Simulator,
) -> None:
    with own_redis() as redis:
        settings = make_settings(simulator.url, GATEWAY_CACHE_URL=redis.url)
        async with gateway_client(settings) as client:
            # Start-up waited for the subscription to the fleet's changes.
            assert (await readiness(client, "listening")) == {
                "status": "ready",
                "fleet": "ok",
                "changes": "listening",
            }
            redis.stop()
            down = await eventually(lambda: readiness(client, "not listening"))
            assert (down["status"], down["fleet"]) == ("not ready", "unreachable")
            assert (await graphql(client, QUERY, {"uuid": UUID}))["data"] is not None
            redis.start()
            back = await eventually(lambda: readiness(client, "listening"))
            assert (back["status"], back["fleet"]) == ("ready", "ok")


async def test_readyz_without_redis_is_ready_with_the_state_of_this_process(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "fleet": "this process"},
    )


async def test_a_response_held_while_deaf_to_the_fleet_is_dropped(simulator: Simulator) -> None:
    # A change published during a Redis outage is lost to this instance: once subscribed again
    # it drops its response cache rather than serve what may have changed meanwhile.
    with own_redis() as redis:
        settings = make_settings(simulator.url, GATEWAY_CACHE_URL=redis.url)
        async with gateway_client(settings) as client:
            for _ in range(2):
                await graphql(client, QUERY, {"uuid": UUID})
            assert simulator.served(UUID) == 1  # the second came from the response cache
            redis.stop()
            await eventually(lambda: readiness(client, "not listening"))
            redis.start()
            await eventually(lambda: readiness(client, "listening"))
            await graphql(client, QUERY, {"uuid": UUID})
            assert simulator.served(UUID) == 2


async def test_metrics_count_requests_cache_and_upstream(gateway: httpx.AsyncClient) -> None:
    await gateway.post(
        "/graphql", json={"query": QUERY, "variables": {"uuid": UUID}, "operationName": "S"}
    )
    await gateway.post(
        "/graphql", json={"query": QUERY, "variables": {"uuid": UUID}, "operationName": "S"}
    )
    await gateway.post("/graphql", json={"query": "{ nope }"})
    response = await gateway.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'gateway_requests_total{operation="S",outcome="ok"} 2.0' in text
    assert 'outcome="GRAPHQL_VALIDATION_FAILED"' in text
    assert 'gateway_cache_lookups_total{result="miss"} 1.0' in text
    assert "gateway_response_cache_hits_total 1.0" in text
    assert 'gateway_upstream_requests_total{status="200"} 1.0' in text
    assert "gateway_request_seconds_bucket" in text
    assert "gateway_upstream_seconds_bucket" in text


async def test_operation_names_cannot_blow_up_metric_labels(gateway: httpx.AsyncClient) -> None:
    for index in range(80):
        await gateway.post("/graphql", json={"query": f"query Q{index} {{ __typename }}"})
    text = (await gateway.get("/metrics")).text
    assert 'operation="other"' in text
    assert 'operation="Q79"' not in text


async def test_coalesced_waiters_are_counted(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.configure(latency_ms=100)
    await asyncio.gather(*(graphql(gateway, QUERY, {"uuid": UUID}) for _ in range(5)))
    text = (await gateway.get("/metrics")).text
    assert "gateway_coalesced_waiters_total 4.0" in text


async def test_request_id_is_accepted_returned_and_sent_upstream() -> None:
    seen: list[str | None] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(200, json=fixtures.load("get-docs-example"))

    settings = make_settings("http://upstream.test")
    async with gateway_client(settings, transport=httpx.MockTransport(upstream)) as client:
        body = {"query": QUERY, "variables": {"uuid": UUID}}
        given = await client.post("/graphql", json=body, headers={"X-Request-ID": "abc-123"})
        made = await client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert given.headers["x-request-id"] == "abc-123"
    assert seen == ["abc-123"]
    assert made.headers["x-request-id"] != "bad id\nwith newline"
    assert len(made.headers["x-request-id"]) == 32


def test_only_sane_request_ids_are_accepted() -> None:
    ids = RequestIds()
    assert ids.accept("req-1.2:3_x") == "req-1.2:3_x"
    assert ids.accept(b"req-1.2:3_x") == "req-1.2:3_x"
    for bad in (None, "", "x" * 129, "a b", "ü"):
        assert ids.accept(bad) != bad
    assert ids.accept(None) != ids.accept(None)  # new ones are unique


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("gateway", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    token = request_id.set("rid-42")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "hello x"
    assert line["request_id"] == "rid-42"
    assert line["level"] == "WARNING"
    assert line["pid"] == os.getpid()  # which worker of `serve --workers N` wrote it


def test_json_audit_lines_carry_the_audit_object() -> None:
    record = logging.LogRecord("gateway.audit", logging.INFO, __file__, 1, "audit", (), None)
    audit = {"key": "app", "operation": "validateSession", "session_uuid": "u", "outcome": "ok"}
    record.audit = audit
    assert json.loads(JsonFormatter().format(record))["audit"] == audit


async def test_each_request_is_a_span_when_an_sdk_is_configured(simulator: Simulator) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(simulator.url)
    async with gateway_client(settings, tracer=provider.get_tracer("test")) as client:
        await client.post(
            "/graphql",
            json={"query": QUERY, "variables": {"uuid": UUID}},
            headers={"X-Request-ID": "trace-me"},
        )
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["POST /graphql"]
    attributes = dict(spans[0].attributes or {})
    assert attributes["gateway.request_id"] == "trace-me"
    assert attributes["http.response.status_code"] == 200


async def test_cors_allow_list(simulator: Simulator) -> None:
    settings = make_settings(simulator.url, GATEWAY_CORS_ORIGINS="https://app.example.com")
    async with gateway_client(settings) as client:
        allowed = await client.options(
            "/graphql",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        other = await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": "https://evil.example"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_a_browser_may_send_an_idempotency_key_and_a_request_id(
    simulator: Simulator,
) -> None:
    settings = make_settings(simulator.url, GATEWAY_CORS_ORIGINS="https://app.example.com")
    async with gateway_client(settings) as client:
        preflight = await client.options(
            "/graphql",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,idempotency-key,"
                "x-request-id",
            },
        )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_no_cors_headers_by_default(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Origin": "https://app.example.com"}
    )
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.e2e
def test_shutdown_drains_requests_in_flight(simulator: Simulator, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG",
        "PLIVO_AUTH_TOKEN": "sim-token-for-tests",
        "PLIVO_API_URL": simulator.url,
        "GATEWAY_AUTH": "none",
    }
    simulator.configure(latency_ms=1000)
    results: list[httpx.Response] = []
    with process("serve", "--port", str(port), env=env, log=tmp_path / "gw.log") as child:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/graphql"
        body = {"query": QUERY, "variables": {"uuid": UUID}}
        thread = threading.Thread(
            target=lambda: results.append(httpx.post(url, json=body, timeout=10))
        )
        thread.start()
        time.sleep(0.4)
        child.send_signal(signal.SIGTERM)
        thread.join(timeout=10)
        child.wait(timeout=10)
    assert results[0].status_code == 200
    assert results[0].json()["data"]["session"]["sessionUuid"] == UUID
    lines = [json.loads(line) for line in (tmp_path / "gw.log").read_text().splitlines()]
    access = [line for line in lines if line.get("path") == "/graphql"]  # JSON from `serve`
    assert access[0]["message"] == "POST /graphql 200"
    assert access[0]["logger"] == "gateway.access"
    assert access[0]["request_id"] == results[0].headers["x-request-id"]


@pytest.mark.parametrize("kernel", ["6.2 or later", "older"])
def test_open_descriptors_are_counted(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel == "older":  # /proc/self/fd has no size: the entries are listed and counted
        stat = os.stat

        def sizeless(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if path == "/proc/self/fd":
                return os.stat_result((0,) * 10)
            return stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", sizeless)
    before = open_descriptors()
    assert before is not None
    with contextlib.ExitStack() as files:
        for _ in range(20):
            files.enter_context(open(os.devnull, "rb"))
        assert open_descriptors() == before + 20
    assert open_descriptors() == before


def test_open_files_near_the_limit_are_a_warning_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, count = [1000.0], [100]
    watch = DescriptorWatch(count=lambda: count[0], limit=lambda: 1000, clock=lambda: now[0])

    def warned() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        return found

    with caplog.at_level(logging.WARNING, logger="gateway.observability"):
        watch.check()
        assert warned() == []  # 10 %
        count[0] = 905
        watch.check()
        assert [line.split(":")[1] for line in warned()] == [" 905 of the limit 1000 (90 %)"]
        now[0] += 59
        count[0] = 990
        watch.check()
        assert warned() == []  # said a minute ago
        now[0] += 2
        watch.check()
        assert len(warned()) == 1


def test_a_metrics_directory_that_is_not_one_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR is set but is not a directory"):
        Metrics()


# --- which part wrote a line; GATEWAY_LOG_LEVEL applied ------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root logger's handlers and level, and uvicorn's levels, as they were before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in UVICORN_LOGGERS}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


def test_lines_written_as_a_part_name_it_and_others_do_not(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "started", (), None)
    with writing_as("simulator"):
        assert json.loads(JsonFormatter().format(record))["component"] == "simulator"
    assert "component" not in json.loads(JsonFormatter().format(record))
    configure_logging("INFO", "text")
    with writing_as("gateway"):
        logging.getLogger("uvicorn.error").info("started")
    logging.getLogger("uvicorn.error").info("alone")
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("gateway   | ")
    assert first.endswith(" INFO uvicorn.error [-] started")
    assert not second.startswith(("gateway", "simulator"))


async def test_access_lines_written_as_a_part_name_it(restored_logging: None) -> None:
    logging.getLogger().setLevel(logging.INFO)  # access lines are INFO
    for fmt in ("text", "json"):
        stream = StringIO()
        access = AccessLog(fmt, stream)
        with writing_as("gateway"):
            access.write("POST", "/graphql", 200, 0.001, "rid-1")
        access.write("GET", "/healthz", 200, 0.001, "rid-2")
        access.flush()
        labelled, plain = stream.getvalue().splitlines()
        if fmt == "text":
            assert labelled.startswith("gateway   | ")
            assert not plain.startswith("gateway")
        else:
            assert json.loads(labelled)["component"] == "gateway"
            assert "component" not in json.loads(plain)


def test_the_workers_factory_logs_at_gateway_log_level(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import cli

    monkeypatch.setattr(cli, "tune_garbage_collector", lambda: None)  # not in the test process
    monkeypatch.setenv("PLIVO_AUTH_ID", "MAODZKMDFJMJU3MTEYNG")
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "tok")
    monkeypatch.setenv("GATEWAY_AUTH", "none")
    for level in (logging.DEBUG, logging.WARNING):
        monkeypatch.setenv("GATEWAY_LOG_LEVEL", logging.getLevelName(level).lower())
        cli.worker_app()
        for name in ("", "gateway", "gateway.plivo.client", *UVICORN_LOGGERS):
            assert logging.getLogger(name).getEffectiveLevel() == level, name


@pytest.mark.e2e
@pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
def test_serve_logs_at_gateway_log_level(level: str, simulator: Simulator, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "gw.log"
    env = {
        "PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG",
        "PLIVO_AUTH_TOKEN": "sim-token-for-tests",
        "PLIVO_API_URL": simulator.url,
        "GATEWAY_AUTH": "none",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": level,
    }

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text().split("\n")[:-1]]

    def client_debug_line() -> bool:
        return any(
            line["level"] == "DEBUG" and line["logger"] == "gateway.plivo.client"
            for line in lines()
        )

    with process("serve", "--port", str(port), env=env, log=log):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        body = {"query": QUERY, "variables": {"uuid": UUID}}
        answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json=body, timeout=10)
        assert answer.json().get("errors") is None
        assert "server" not in answer.headers  # serve names no server (server_header=False)
        if level == "DEBUG":  # the session was read from Plivo: the client says so, at DEBUG
            deadline = time.monotonic() + 10
            while not client_debug_line():
                assert time.monotonic() < deadline, "no DEBUG line from the Plivo client"
                time.sleep(0.05)
    if level == "WARNING":
        assert {line["level"] for line in lines()} == {"WARNING"}, lines()
        assert any("GATEWAY_AUTH=none" in line["message"] for line in lines())


async def test_access_lines_escape_what_the_request_sent(restored_logging: None) -> None:
    """The JSON access line is written as text: every string from the request is escaped."""
    logging.getLogger().setLevel(logging.INFO)
    stream = StringIO()
    access = AccessLog("json", stream)
    path = '/graph"ql\\\n\x00\u00e9\U0001f600'
    before = datetime.now(UTC)
    with writing_as('part"1'):
        access.write('PO"ST', path, 404, 0.0123456, 'rid"\n')
    access.flush()
    (line,) = stream.getvalue().split("\n")[:-1]
    entry = json.loads(line)
    assert entry == {
        "time": entry["time"],
        "level": "INFO",
        "logger": "gateway.access",
        "message": f'PO"ST {path} 404',
        "pid": os.getpid(),
        "request_id": 'rid"\n',
        "method": 'PO"ST',
        "path": path,
        "status": 404,
        "duration_ms": 12.35,
        "component": 'part"1',
    }
    written = datetime.fromisoformat(entry["time"])
    assert before - timedelta(milliseconds=1) <= written <= datetime.now(UTC)


def test_access_lines_carry_the_pid_of_a_forked_child(restored_logging: None) -> None:
    """The process id is read once, and again in a child after a fork."""
    logging.getLogger().setLevel(logging.INFO)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            stream = StringIO()
            access = AccessLog("json", stream)
            access._scheduled = True  # no loop here: flushed below
            access.write("GET", "/healthz", 200, 0.001, "rid")
            access.flush()
            os.write(write, stream.getvalue().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read()
    os.waitpid(child, 0)
    assert json.loads(output)["pid"] == child != os.getpid()


async def test_a_text_access_line_is_one_line_whatever_the_path(restored_logging: None) -> None:
    """A path with a newline (`%0a`) or other control characters cannot forge a line."""
    logging.getLogger().setLevel(logging.INFO)
    stream = StringIO()
    access = AccessLog("text", stream)
    forged = "/graphql\n2026-01-01 00:00:00,000 INFO gateway.access [x] GET /admin 200 1 ms\r\x00"
    access.write("GET", forged, 404, 0.001, "rid-1")
    access.write("GET", "/graphql/é", 200, 0.001, "rid-2")  # printable: as it is
    access.flush()
    first, second = stream.getvalue().split("\n")[:-1]
    assert first.endswith(" 404 1.0 ms")
    assert "/graphql\\n2026-01-01" in first
    assert "\\r\\x00" in first
    assert second.endswith("GET /graphql/é 200 1.0 ms")
