"""HTTP caching of GraphQL answers: Cache-Control from what an answer read, an ETag, and 304.

Only a GET's answer with `data` and no errors may be kept by a browser or a CDN, and never
longer than the gateway's own copies stay fresh (`reusable_until`): `max-age` is the shortest
remaining freshness of the sessions it read (and, with a session that may still change, no
more than the transport's `changing_max_age`); `no-cache` (kept, asked again before each
reuse) when it holds a stale copy, a page of the list or no session at all. It is `private`
whenever an API key or a pass-through credential shaped it. Everything else is `no-store`.

The ETag is weak and names the data only: `extensions.cache` reports each copy's age, which
changes with every request, while the data it describes does not. It is made for one caller
and media type (`entity_tag`), so a 304 only ever confirms what that caller would be sent.
See docs/http-caching.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from gateway.operations import body_with_data, entity_tag, reusable_until

if TYPE_CHECKING:
    from gateway.operations.execution import Result

Fields = tuple[tuple[bytes, bytes], ...]

# Every request header the answer (or its response key) depends on; Origin for CORS, whose
# middleware only sees cross-origin requests: a copy kept for a same-origin request must not
# be reused for a cross-origin one without its Access-Control-Allow-Origin.
VARY = (b"vary", b"Accept, Authorization, Origin, X-Plivo-Auth-Id, X-Plivo-Auth-Token")
NO_STORE: Fields = ((b"cache-control", b"no-store"),)
PAGE: Fields = ((b"cache-control", b"no-cache"), (b"vary", b"Accept"))  # GraphiQL
MAX_IF_NONE_MATCH = 4096  # characters; a longer If-None-Match is ignored (a full answer)
_REVALIDATE = (b"public, no-cache", b"private, no-cache")


def validated(
    etag: str, until: float, now: float, *, private: bool, most: float = math.inf
) -> Fields:
    """The header fields of a reusable answer and of its 304: Cache-Control with `max-age` in
    whole seconds left (rounded down, `most` at most), or `no-cache` when under one; ETag; Vary.
    """
    seconds = int(min(until - now, most))
    if seconds > 0:
        control = f"private, max-age={seconds}" if private else f"public, max-age={seconds}"
        return ((b"cache-control", control.encode()), (b"etag", etag.encode()), VARY)
    return ((b"cache-control", _REVALIDATE[private]), (b"etag", etag.encode()), VARY)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match is `*` or lists `etag`, by weak comparison (RFC 9110 13.1.2)."""
    if if_none_match is None or if_none_match == etag:  # what a browser sends: the tag it has
        return if_none_match is not None
    if len(if_none_match) > MAX_IF_NONE_MATCH:
        return False
    opaque = etag[2:]  # our tags are all weak: W/"..."
    if opaque not in if_none_match:  # most requests: one scan in C, no list made
        return if_none_match.strip() == "*"
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


@dataclass(frozen=True, slots=True)
class Reusable:
    """An executed answer caches may keep: its ETag, until when, whether a session in it may
    still change (see `GraphQLHTTP`), and its body."""

    etag: str
    until: float
    changing: bool
    content: bytes


def executed(result: Result, scope: bytes) -> Reusable | None:
    """What caches may keep of an executed answer; None: nothing (no-store)."""
    body, context = result.body, result.context
    until = reusable_until(body, context)
    if until is None or context is None:
        return None
    try:  # what the response cache kept was serialised once, there
        data = result.data if result.data is not None else orjson.dumps(body["data"])
        content = result.encoded or body_with_data(data, body)
    except TypeError:  # what orjson cannot encode: the transport escapes it, and keeps nothing
        return None
    return Reusable(entity_tag(scope, data), until, context.changing, content)
