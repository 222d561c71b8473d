"""One SessionService per Plivo credential: the configured one and callers' pass-through ones.

Each credential gets its own circuit breaker, its own cache keys and flights and its own share
of the bulkhead; they share the HTTP pool, the cache backend, the bulkhead's whole and the
metrics. Pass-through services are kept for the most recently used credentials only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.fleet import Fleet
from gateway.metrics import Metrics
from gateway.plivo.bulkhead import Bulkhead
from gateway.plivo.client import Credential, PlivoClient
from gateway.plivo.resilience import CircuitBreaker, ResilientClient, RetryPolicy
from gateway.plivo.transport import UpstreamHTTP
from gateway.verify.flow import FlowPolicy, VerificationService
from gateway.verify.sessions import CachePolicy, SessionService

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
        fleet: Fleet,
        *,
        base_url: str,
        default: Credential,
        cache_policy: CachePolicy,
        retry_policy: RetryPolicy,
        breaker_policy: BreakerPolicy,
        max_concurrency: int,
        metrics: Metrics,
        credential_share: float = 0.5,
        flow_policy: FlowPolicy | None = None,
        changed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._http, self._fleet, self._base_url = http, fleet, base_url
        self._cache_policy, self._retry_policy = cache_policy, retry_policy
        self._breaker_policy, self._metrics = breaker_policy, metrics
        self._bulkhead = Bulkhead(max_concurrency, credential_share)
        self._flow_policy = flow_policy or FlowPolicy()
        self._changed = changed or self.forget
        self.default, self._default_flow = self._build(default, name="default")
        self._pass_through: OrderedDict[str, tuple[SessionService, VerificationService]] = (
            OrderedDict()
        )

    def for_credential(self, credential: Credential | None) -> SessionService:
        """The configured credential's service when None, else the caller's own."""
        return self._pair(credential)[0]

    def flow_for(self, credential: Credential | None) -> VerificationService:
        """List, start and validate with the configured credential, or the caller's own."""
        return self._pair(credential)[1]

    def all(self) -> list[SessionService]:
        """Every session service: the configured credential's and the recent pass-through ones."""
        return [self.default, *(pair[0] for pair in self._pass_through.values())]

    async def forget(self, session_uuid: str) -> None:
        """This process's copies of a session go (without a change feed: tests)."""
        self._fleet.entries.forget_here(session_uuid)

    def _pair(self, credential: Credential | None) -> tuple[SessionService, VerificationService]:
        if credential is None:
            return self.default, self._default_flow
        digest = credential.digest
        pair = self._pass_through.get(digest)
        if pair is None:
            # named by a digest: the account id never becomes a metric label
            pair = self._build(credential, name=f"passthrough:{digest[:12]}")
            self._pass_through[digest] = pair
            while len(self._pass_through) > MAX_PASS_THROUGH:
                self._pass_through.popitem(last=False)
        self._pass_through.move_to_end(digest)
        return pair

    def _build(
        self, credential: Credential, *, name: str
    ) -> tuple[SessionService, VerificationService]:
        breaker = CircuitBreaker(
            name, self._breaker_policy.threshold, self._breaker_policy.cooldown, self._metrics
        )
        client = ResilientClient(
            PlivoClient(self._http, credential, self._metrics),
            policy=self._retry_policy,
            breaker=breaker,
            # a pass-through credential's share is its account's, whatever the token
            bulkhead=self._bulkhead.for_credential(
                None if name == "default" else credential.auth_id
            ),
            observer=self._metrics,
        )
        fleet = self._fleet
        sessions = SessionService(
            client,
            fleet.entries,
            self._cache_policy,
            base_url=self._base_url,
            observer=self._metrics,
        )
        client.admit_retry = sessions.admit_retry  # each retry is paid for like a request
        flow = VerificationService(
            client,
            sessions,
            self._flow_policy,
            entries=fleet.entries,
            counters=fleet.counters,
            memos=fleet.memos,
            changed=self._changed,
            observer=self._metrics,
        )
        return sessions, flow
