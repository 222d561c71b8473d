"""One SessionService per Plivo credential: the configured one and callers' pass-through ones.

Each credential gets its own circuit breaker and its own cache keys and flights; they share
the HTTP pool, the cache backend, the bulkhead and the metrics. Pass-through services are
kept for the most recently used credentials only.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from gateway.cache import SessionCache
from gateway.metrics import Metrics
from gateway.plivo.client import Credential, PlivoClient
from gateway.plivo.resilience import CircuitBreaker, ResilientClient, RetryPolicy
from gateway.plivo.transport import UpstreamHTTP
from gateway.sessions import CachePolicy, SessionService

MAX_PASS_THROUGH = 1000


@dataclass(frozen=True)
class BreakerPolicy:
    """When the breaker opens and for how long."""

    threshold: int = 5
    cooldown: float = 10.0


class SessionServices:
    """Finds or builds the SessionService of a credential."""

    def __init__(
        self,
        http: UpstreamHTTP,
        cache: SessionCache,
        *,
        base_url: str,
        default: Credential,
        cache_policy: CachePolicy,
        retry_policy: RetryPolicy,
        breaker_policy: BreakerPolicy,
        max_concurrency: int,
        metrics: Metrics,
    ) -> None:
        self._http, self._cache, self._base_url = http, cache, base_url
        self._cache_policy, self._retry_policy = cache_policy, retry_policy
        self._breaker_policy, self._metrics = breaker_policy, metrics
        self._bulkhead = asyncio.Semaphore(max_concurrency)
        self.default = self._build(default, name="default")
        self._pass_through: OrderedDict[str, SessionService] = OrderedDict()

    def for_credential(self, credential: Credential | None) -> SessionService:
        """The configured credential's service when None, else the caller's own."""
        if credential is None:
            return self.default
        digest = credential.digest
        service = self._pass_through.get(digest)
        if service is None:
            service = self._build(credential, name=f"passthrough:{credential.auth_id}")
            self._pass_through[digest] = service
            while len(self._pass_through) > MAX_PASS_THROUGH:
                self._pass_through.popitem(last=False)
        self._pass_through.move_to_end(digest)
        return service

    def _build(self, credential: Credential, *, name: str) -> SessionService:
        breaker = CircuitBreaker(
            name, self._breaker_policy.threshold, self._breaker_policy.cooldown, self._metrics
        )
        client = ResilientClient(
            PlivoClient(self._http, credential, self._metrics),
            policy=self._retry_policy,
            breaker=breaker,
            bulkhead=self._bulkhead,
            observer=self._metrics,
        )
        return SessionService(
            client, self._cache, self._cache_policy, base_url=self._base_url, observer=self._metrics
        )
