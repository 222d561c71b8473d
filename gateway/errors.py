"""The errors the gateway raises on purpose.

GatewayError                     # we raised this on purpose
├── ConfigError                  # bad or missing settings: fail at start-up, naming each
├── InvalidInput                 # a caller's argument is unusable: rejected before any I/O
│   └── InvalidSessionUuid       # a uuid that is not canonical
├── Throttled                    # a gateway-side rate (starts per key or recipient), retry_after
├── IdempotencyConflict          # the same Idempotency-Key is still being served elsewhere
├── StateUnavailable             # shared state that protects money is unreachable, retry_after
├── Unauthenticated              # no API key, or an unknown one (HTTP 401)
├── Forbidden                    # the key lacks the scope (FORBIDDEN)
├── BadCredentialHeaders         # pass-through headers incomplete or malformed (HTTP 400)
├── LimitExceeded                # a document over a depth, alias or token limit (HTTP 400)
└── UpstreamError                # carries method and path, never credentials
    ├── UpstreamTimeout          # no answer in time: may be retried
    ├── UpstreamUnavailable      # refused, reset, breaker open: may be retried
    ├── UpstreamFailed           # 5xx or an unreadable body: may be retried
    ├── UpstreamRateLimited      # 429, with retry_after
    └── UpstreamRejected         # other 4xx, with status_code (401 and 403 included)
        └── SessionNotFound      # 404

Messages never carry a credential or Plivo's raw body; context lives in attributes.
"""

from __future__ import annotations

NOT_SENT_PATH = "(not sent)"  # the path of an upstream error refused before it was sent


class GatewayError(Exception):
    """An error the gateway raised on purpose, with a message safe to show a caller."""


class ConfigError(GatewayError):
    """One or more settings are missing or malformed; `problems` names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class InvalidInput(GatewayError):
    """An argument the gateway cannot use; the message names the argument, not its value."""


class Throttled(GatewayError):
    """A gateway-side rate was reached; `retry_after` says in how many seconds to try again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class IdempotencyConflict(GatewayError):
    """A start with the same Idempotency-Key is in flight, or ended with no known outcome.

    `retry_after` is set when trying again later may succeed (still in flight).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StateUnavailable(GatewayError):
    """Shared state that guards money or people (idempotency records) cannot be reached now."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class InvalidSessionUuid(InvalidInput):
    """A session uuid is not in the canonical 8-4-4-4-12 hex form."""

    def __init__(self) -> None:
        super().__init__("uuid must be a canonical UUID (8-4-4-4-12 hexadecimal digits)")


class Unauthenticated(GatewayError):
    """No API key, or one the gateway does not know."""


class Forbidden(GatewayError):
    """The API key lacks the scope this needs."""


class BadCredentialHeaders(GatewayError):
    """Pass-through headers that are incomplete or malformed."""


class LimitExceeded(GatewayError):
    """A document over one of the configured limits; `limit` names it, `maximum` its value."""

    def __init__(self, limit: str, maximum: int) -> None:
        self.limit, self.maximum = limit, maximum
        super().__init__(f"the document is over the {limit} limit of {maximum}")


class CostExceeded(LimitExceeded):
    """A request that may cause more Plivo requests than GATEWAY_MAX_COST allows."""

    def __init__(self, cost: int, maximum: int) -> None:
        super().__init__("cost", maximum)
        self.cost = cost
        self.args = (f"the request may cause {cost} Plivo requests; the cost limit is {maximum}",)


class BatchTooLarge(LimitExceeded):
    """A batch of more operations than GATEWAY_MAX_BATCH allows."""

    def __init__(self, maximum: int) -> None:
        super().__init__("batch", maximum)
        self.args = (f"a batch may hold at most {maximum} operations",)


class OperationNotSelected(GatewayError):
    """The document names no operation to run: none by that name, or several and no name."""


class OperationNotAllowed(GatewayError):
    """An operation its transport cannot carry: a mutation by GET, a subscription by HTTP."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        message = (
            "subscriptions need a websocket"
            if operation == "subscription"
            else f"only queries may be sent with GET, not a {operation}"
        )
        super().__init__(message)


class UpstreamError(GatewayError):
    """Plivo (or the transport to it) did not give a usable answer."""

    def __init__(self, message: str, *, method: str, path: str) -> None:
        self.method = method
        self.path = path
        super().__init__(message)


class UpstreamTimeout(UpstreamError):
    """Plivo did not answer within the connect or read timeout."""


class UpstreamUnavailable(UpstreamError):
    """The connection to Plivo was refused, reset or dropped before a whole answer."""


class UpstreamFailed(UpstreamError):
    """Plivo answered 5xx, or with a body that is not the JSON we expect."""

    def __init__(
        self, message: str, *, method: str, path: str, status_code: int | None = None
    ) -> None:
        self.status_code = status_code
        super().__init__(message, method=method, path=path)


class UpstreamRateLimited(UpstreamError):
    """Plivo answered 429; `retry_after` holds its Retry-After in seconds when it sent one."""

    def __init__(
        self, message: str, *, method: str, path: str, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, method=method, path=path)


class UpstreamRejected(UpstreamError):
    """Plivo refused the request with a 4xx other than 429; `status_code` says which."""

    def __init__(self, message: str, *, method: str, path: str, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message, method=method, path=path)


class SessionNotFound(UpstreamRejected):
    """Plivo has no session with that uuid (404)."""

    def __init__(self, *, method: str, path: str) -> None:
        super().__init__("Plivo has no such session", method=method, path=path, status_code=404)
