"""Prometheus metrics, one registry per app (served at /metrics).

Under `serve --workers N` each worker is its own process: with PROMETHEUS_MULTIPROC_DIR set
(the parent makes a private directory for it) every worker writes its values to files there,
and /metrics adds up the files of all workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.errors import ConfigError

BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_LABEL_VALUES = 50
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


class BoundedLabels:
    """Caller-chosen label values (operation names) up to a bound, then "other"."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return "other"
        self._seen.add(value)
        return value


class Metrics:
    """Every metric the gateway exports; its methods are the observers the layers call.

    Multiprocess mode follows PROMETHEUS_MULTIPROC_DIR, which prometheus-client reads once, at
    import: set before the process imports it (as `serve --workers N` does), never later.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.directory = os.environ.get(MULTIPROC_DIR) or None
        self._scraped = r
        if self.directory is not None:
            if not os.path.isdir(self.directory):
                raise ConfigError([f"{MULTIPROC_DIR} is set but is not a directory"])
            self._scraped = CollectorRegistry()
            MultiProcessCollector(self._scraped, self.directory)  # type: ignore[no-untyped-call]
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
        self.requests = Counter(
            "gateway_requests",
            "GraphQL operations by name and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "gateway_request_seconds",
            "GraphQL request latency",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_requests = Counter(
            "gateway_upstream_requests", "Requests to Plivo by status", ["status"], registry=r
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_seconds",
            "Plivo latency by status",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "gateway_cache_lookups",
            "Session lookups by result (hit, miss, stale)",
            ["result"],
            registry=r,
        )
        self.coalesced_waiters = Counter(
            "gateway_coalesced_waiters",
            "Lookups that waited for a fetch already in flight",
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["breaker"],
            registry=r,
            multiprocess_mode="livemax",  # each worker has its breakers: the worst of them
        )
        self.retries = Counter(
            "gateway_upstream_retries", "Retries by reason", ["reason"], registry=r
        )
        self.budget_refusals = Counter(
            "gateway_budget_refusals", "Upstream calls refused by the fleet-wide budget", registry=r
        )
        self.refresh_refusals = Counter(
            "gateway_refresh_refusals",
            "Cache-Control: no-cache refetches refused by rate",
            registry=r,
        )
        self.response_cache_hits = Counter(
            "gateway_response_cache_hits", "Requests answered from the response cache", registry=r
        )
        self.flow_operations = Counter(
            "gateway_flow_operations",
            "Starts and validations by outcome (started, replayed, a validation result, an error)",
            ["operation", "outcome"],
            registry=r,
        )
        self.status_callbacks = Counter(
            "gateway_status_callbacks",
            "Plivo status callbacks by outcome (accepted, invalid_signature, ...)",
            ["outcome"],
            registry=r,
        )
        self.watched_sessions = Gauge(
            "gateway_watched_sessions",
            "Sessions watched for subscribers (one poller each), all workers together",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.live_sessions = Gauge(
            "gateway_live_sessions",
            "In-progress sessions polled without callbacks, as the last fetch saw them (fleet-wide"
            " with Redis; the configured credential)",
            registry=r,
            multiprocess_mode="livemostrecent",  # fleet-wide already: the latest word on it
        )
        self.refresh_interval = Gauge(
            "gateway_refresh_interval_seconds",
            "How long an in-progress copy stays fresh now, so that refreshes fit the Plivo budget",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._operations = BoundedLabels()
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._upstream_children: dict[str, tuple[Any, Any]] = {}
        self._cache_children: dict[str, Any] = {}
        self._breakers = BoundedLabels()

    def request(self, operation: str, outcome: str, seconds: float) -> None:
        children = self._request_children.get((operation, outcome))
        if children is None:
            name = self._operations(operation)
            children = (self.requests.labels(name, outcome), self.request_seconds.labels(name))
            if len(self._request_children) < 4 * MAX_LABEL_VALUES:
                self._request_children[(operation, outcome)] = children
        children[0].inc()
        children[1].observe(seconds)

    def response_cached(self) -> None:
        self.response_cache_hits.inc()

    def upstream(self, status: str, seconds: float) -> None:
        # Statuses are HTTP codes or a failure kind: a small, bounded set of children.
        children = self._upstream_children.get(status)
        if children is None:
            children = (self.upstream_requests.labels(status), self.upstream_seconds.labels(status))
            self._upstream_children[status] = children
        children[0].inc()
        children[1].observe(seconds)

    def cache(self, result: str) -> None:
        child = self._cache_children.get(result)
        if child is None:
            child = self._cache_children[result] = self.cache_lookups.labels(result)
        child.inc()

    def flow(self, operation: str, outcome: str) -> None:
        self.flow_operations.labels(operation, outcome).inc()

    def callback(self, outcome: str) -> None:
        self.status_callbacks.labels(outcome).inc()

    def watching(self, count: Callable[[], int]) -> None:
        """Report the number of watched sessions from `count` at each scrape."""
        self._read_at_scrape(self.watched_sessions, count)

    def freshness(self, live: Callable[[], int], interval: Callable[[], float]) -> None:
        """Report the live sessions and the refresh interval at each scrape."""
        self._read_at_scrape(self.live_sessions, live)
        self._read_at_scrape(self.refresh_interval, interval)

    def _read_at_scrape(self, gauge: Gauge, read: Callable[[], float]) -> None:
        # A scrape reads the files of every worker, not this process's callbacks: in
        # multiprocess mode `sample` writes what the callbacks say (every few seconds).
        if self.directory is None:
            gauge.set_function(read)
        else:
            self._sampled.append((gauge, read))

    def sample(self) -> None:
        """Write the callback gauges' values for the other workers' scrapes (multiprocess mode).

        Also forgets the live gauges of workers that died without saying so (SIGKILL).
        """
        if self.directory is None:
            return
        for gauge, read in self._sampled:
            gauge.set(read())
        forget_workers(self.directory, lambda pid: not _is_alive(pid))

    def close(self) -> None:
        """This worker stops: its live gauges leave the sums (multiprocess mode)."""
        if self.directory is not None:
            forget_workers(self.directory, lambda pid: pid == os.getpid())

    def coalesced(self) -> None:
        self.coalesced_waiters.inc()

    def retried(self, reason: str) -> None:
        self.retries.labels(reason).inc()

    def breaker_changed(self, name: str, state: str) -> None:
        self.breaker_state.labels(self._breakers(name)).set(BREAKER_VALUES.get(state, -1.0))

    def budget_refused(self) -> None:
        self.budget_refusals.inc()

    def refresh_refused(self) -> None:
        self.refresh_refusals.inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes: all workers' values in multiprocess mode."""
        self.sample()
        return generate_latest(self._scraped)


def forget_workers(directory: str, gone: Callable[[int], bool]) -> None:
    """Remove the live gauges of the workers `gone` says are gone (killed, say, by SIGKILL)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(path))
        if match is not None and gone(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):  # another worker was quicker
                os.remove(path)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid is someone else's process by now
        return True
    return True


@contextlib.contextmanager
def workers_metrics_directory() -> Iterator[str]:
    """A fresh private directory for the workers of `serve --workers N`, removed at exit.

    Set in PROMETHEUS_MULTIPROC_DIR before the workers start, so that each imports
    prometheus-client in multiprocess mode.
    """
    directory = tempfile.mkdtemp(prefix="plivo-gateway-metrics-")  # mode 0700
    previous = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)
