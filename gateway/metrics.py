"""Prometheus metrics, one registry per app (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_LABEL_VALUES = 50


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
    """Every metric the gateway exports; its methods are the observers the layers call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
            "Sessions watched for subscribers in this process (one poller each)",
            registry=r,
        )
        self.live_sessions = Gauge(
            "gateway_live_sessions",
            "In-progress sessions polled without callbacks, as the last fetch saw them (fleet-wide"
            " with Redis; the configured credential)",
            registry=r,
        )
        self.refresh_interval = Gauge(
            "gateway_refresh_interval_seconds",
            "How long an in-progress copy stays fresh now, so that refreshes fit the Plivo budget",
            registry=r,
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
        self.watched_sessions.set_function(count)

    def freshness(self, live: Callable[[], int], interval: Callable[[], float]) -> None:
        """Report the live sessions and the refresh interval at each scrape."""
        self.live_sessions.set_function(live)
        self.refresh_interval.set_function(interval)

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
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
