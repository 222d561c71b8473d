"""Structured logs, request ids, traces, and the process's file descriptors.

Every request gets an id (the caller's `X-Request-ID` when it is a sane token, else a new
one): it is returned in `X-Request-ID`, sent to Plivo, and carried by every log line of the
request. Each request is a server span when an OpenTelemetry SDK is configured. JSON lines
carry the process id, which tells the workers of `serve --workers N` apart; where one process
runs several parts (`demo`: the gateway and the simulator), each line also names its part.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import resource
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

import orjson
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.request_context import request_id

access_log = logging.getLogger("gateway.access")
logger = logging.getLogger(__name__)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Which part of the process writes: set for each server's task, inherited by its requests.
component: ContextVar[str | None] = ContextVar("component", default=None)


@contextmanager
def writing_as(part: str) -> Iterator[None]:
    """Every line logged within (and within the tasks started within) names `part`."""
    token = component.set(part)
    try:
        yield
    finally:
        component.reset(token)


def _label() -> str:
    """The start of a text line: its part, when the process runs several; else nothing."""
    part = component.get()
    return "" if part is None else f"{part:<9} | "


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, audit, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        part = component.get()
        if part is not None:
            entry["component"] = part
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key in ("method", "path", "status", "duration_ms", "audit"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        record.label = _label()
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Logs to stderr at `level` (uvicorn's too), as JSON lines or as text with the request id."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(_ContextFilter())
        handler.setFormatter(
            logging.Formatter(
                "%(label)s%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in UVICORN_LOGGERS:  # uvicorn sets its own levels, from its config
        logging.getLogger(name).setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RequestIds:
    """Request ids: the caller's when sane, else this process's random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def accept(self, given: bytes | str | None) -> str:
        """The id for a request that sent `given` in X-Request-ID."""
        text = given.decode("latin-1") if isinstance(given, bytes) else given
        if text and _SANE_ID.fullmatch(text):
            return text
        return f"{self._prefix}{next(self._counter):016x}"


def _json(text: str) -> str:
    """`text` as a JSON string."""
    return orjson.dumps(text).decode()


def _printable(text: str) -> str:
    """`text` for a text line: escaped (backslashes) when it holds anything unprintable, so
    that a request's path (with `%0a` in it, say) cannot start a line of its own."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


_process_id = os.getpid()  # read once: each call is a system call


def _forked() -> None:
    global _process_id
    _process_id = os.getpid()


os.register_at_fork(after_in_child=_forked)


class AccessLog:
    """One line a request (JSON or text, like the other logs), written in batches.

    Lines wait in a buffer and go out together a moment later (or once 64 KiB wait), so a
    busy gateway makes one write a batch instead of one a request.
    """

    def __init__(self, fmt: str, stream: TextIO | None = None, delay: float = 0.1) -> None:
        self.fmt = fmt
        self._stream = stream
        self._delay = delay
        self._lines: list[str] = []
        self._size = 0
        self._scheduled = False
        self._second, self._second_text = -1, ""

    @property
    def enabled(self) -> bool:
        """Whether access lines are logged at all (INFO on the gateway.access logger)."""
        return access_log.isEnabledFor(logging.INFO)

    def write(self, method: str, path: str, status: int, seconds: float, rid: str) -> None:
        """Queue one line."""
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # the date and time to the second, made once a second
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        millis = min(int((now - second) * 1000), 999)
        duration = round(seconds * 1000, 2)
        if self.fmt == "json":
            # JsonFormatter's object, written as text: on a hot cache, building a dict, the
            # date and the process id (a system call) for every line was a sixth of a
            # request's CPU (BENCHMARKS.md). Every string that comes from a request is escaped.
            part = component.get()
            line = (
                f'{{"time":"{self._second_text}.{millis:03d}+00:00","level":"INFO",'
                f'"logger":"gateway.access","message":{_json(f"{method} {path} {status}")},'
                f'"pid":{_process_id},"request_id":{_json(rid)},"method":{_json(method)},'
                f'"path":{_json(path)},"status":{status},"duration_ms":{duration}'
                + ("}" if part is None else f',"component":{_json(part)}}}')
            )
        else:
            line = (
                f"{_label()}{self._second_text.replace('T', ' ')},{millis:03d} INFO"
                f" gateway.access [{rid}] {method} {_printable(path)} {status} {duration} ms"
            )
        self._lines.append(line)
        self._size += len(line)
        if self._size > 65_536:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self._delay, self.flush)

    def flush(self) -> None:
        """Write what waits."""
        self._scheduled = False
        if not self._lines:
            return
        stream = self._stream or sys.stderr
        stream.write("\n".join(self._lines) + "\n")
        stream.flush()
        self._lines.clear()
        self._size = 0


class RequestContextMiddleware:
    """Sets the request id, returns it, logs one access line, opens a server span."""

    def __init__(
        self,
        app: ASGIApp,
        tracer: trace.Tracer | None,
        access: AccessLog,
        ids: RequestIds,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.access = access
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self.ids.accept(_header(scope, b"x-request-id"))
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if self.tracer is None:
                await self.app(scope, receive, send_with_id)
            else:
                await self._traced(scope, receive, send_with_id, rid, lambda: status)
        finally:
            seconds = time.perf_counter() - started
            self.access.write(scope["method"], scope["path"], status, seconds, rid)
            request_id.reset(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, rid: str, status: Callable[[], int]
    ) -> None:
        assert self.tracer is not None
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            span.set_attribute("gateway.request_id", rid)
            await self.app(scope, receive, send)
            span.set_attribute("http.response.status_code", status())


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def sdk_configured() -> bool:
    """Whether an OpenTelemetry SDK set a tracer provider (else spans would be no-ops)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


LOW_DESCRIPTOR_LIMIT = 4096  # below it a few thousand connections exhaust the process


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one; log one line; return the limit.

    Each connection is a descriptor: the usual soft limit (1024) refuses the 1025th, while the
    hard limit allows far more. The raised limit is inherited by the worker processes. A limit
    still low after that is a warning: the hard limit must be raised outside the process.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit some systems refuse
            logger.info("open files: limit %d (the hard limit %d could not be set)", soft, hard)
        else:
            limit = hard
            logger.info("open files: limit %d (raised from %d)", hard, soft)
    else:
        logger.info("open files: limit %d", soft)
    if limit < LOW_DESCRIPTOR_LIMIT:
        logger.warning(
            "open files: the limit %d is low for a server (each connection holds one; under"
            " %d, a few thousand clients exhaust it): raise the hard limit (ulimit -Hn,"
            " systemd LimitNOFILE=, docker --ulimit nofile=)",
            limit,
            LOW_DESCRIPTOR_LIMIT,
        )
    return limit


def open_descriptors() -> int | None:
    """How many descriptors this process has open; None where /proc does not say."""
    try:
        counted = os.stat("/proc/self/fd").st_size  # Linux 6.2 and later: the count itself
        return counted if counted > 0 else len(os.listdir("/proc/self/fd")) - 1  # minus its own
    except OSError:
        return None


def descriptor_limit() -> int:
    """The soft limit on this process's open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class DescriptorWatch:
    """Warns, at most once a minute, when open descriptors reach 90 % of the limit."""

    def __init__(
        self,
        *,
        count: Callable[[], int | None] = open_descriptors,
        limit: Callable[[], int] = descriptor_limit,
        clock: Callable[[], float] = time.monotonic,
        share: float = 0.9,
        quiet: float = 60.0,
    ) -> None:
        self._count, self._limit, self._clock = count, limit, clock
        self._share, self._quiet = share, quiet
        self._warned: float | None = None

    def check(self) -> None:
        """Look once; log a WARNING when near the limit and none was logged in the last minute."""
        count, limit = self._count(), self._limit()
        if count is None or limit <= 0 or count < self._share * limit:
            return
        now = self._clock()
        if self._warned is not None and now - self._warned < self._quiet:
            return
        self._warned = now
        logger.warning(
            "open files: %d of the limit %d (%d %%): new connections will soon be refused;"
            " raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=)",
            count,
            limit,
            100 * count // limit,
        )


async def periodically(steps: Sequence[Callable[[], None]], interval: float = 2.0) -> None:
    """Run each step now and every `interval` seconds, until cancelled; a failing step is logged."""
    while True:
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("periodic check %s failed", getattr(step, "__qualname__", step))
        await asyncio.sleep(interval)
