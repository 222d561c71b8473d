"""Whole responses for identical requests, checked before any other work.

Keyed by everything that can change the answer: the caller (the API key's id, which carries
its digest, and the pass-through credential's digest), the method, the response media type,
and the request itself (the body of a POST, the query string of a GET). An entry lives as long
as the shortest-lived session in it, and holds the `data` bytes and each session's storage
time, so that `extensions.cache` still reports each copy's true age when served again. Only
answers without errors, built from fresh copies and nothing else, are kept; a
`Cache-Control: no-cache` request never reads one.

`reusable_until` says how long any answer may be reused, here and by HTTP caches alike, and
`entity_tag` names its data for revalidation; an entry's tag is made once, when it is kept.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from gateway.operations.principals import Principal
from gateway.plivo.credentials import Credential
from gateway.schema.context import Context

MAX_ENTRY_BYTES = 256 * 1024
REVALIDATE = 0.0  # "fresh until 1970": reused only after asking again


def response_scope(
    method: str, media_type: str, principal: Principal, credential: Credential | None
) -> bytes:
    """What a key names besides the request: method, media type, caller, credential digest.

    Three lines, each ending in a newline (none holds one): a key's scope is its first three.
    """
    caller = principal.id if credential is None else f"{principal.id}:{credential.digest}"
    return f"{method}\n{media_type}\n{caller}\n".encode()


def response_key(
    method: str, media_type: str, principal: Principal, credential: Credential | None, raw: bytes
) -> bytes:
    """The key: caller, credential digest, method, media type, and the request as sent."""
    return response_scope(method, media_type, principal, credential) + raw


def entity_tag(scope: bytes, data: bytes) -> str:
    """A weak ETag of an answer's `data` (its ages left out) for one caller and media type."""
    digest = hashlib.sha256(scope)  # the scope ends where its third line does
    digest.update(data)
    return f'W/"{digest.hexdigest()[:32]}"'


def reusable_until(body: Mapping[str, Any], context: Context | None) -> float | None:
    """Until when (wall-clock seconds) an answer may be reused without asking again.

    None: never kept (errors, a mutation, nothing executed). REVALIDATE: kept, but asked
    again before each reuse: a stale copy is in it, or something whose freshness is not
    tracked (a page of the list), or no session at all. Otherwise when its shortest-lived
    session stops being fresh in the gateway's own cache: never later.
    """
    if context is None or context.mutated or "errors" in body or "data" not in body:
        return None
    freshness = context.freshness
    if context.untracked or not freshness or len(freshness) != len(context.cache_report):
        return REVALIDATE
    return min(until for _, until in freshness.values())


def _scope_of(key: bytes) -> bytes:
    """A key's scope (see `response_scope`); a key of another shape is its own."""
    parts = key.split(b"\n", 3)
    return key[: len(key) - len(parts[3])] if len(parts) == 4 else key


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A response's data, when each session in it was stored, when it stops being fresh, its
    ETag (made once, when kept), and whether a session in it may still change."""

    data: bytes
    stored_at: tuple[tuple[str, float], ...]
    fresh_until: float
    label: str
    etag: str
    changing: bool = False
    # The last body made, and the millisecond it was made for: ages are given to the
    # millisecond, so the hits of one millisecond share one body (made once, not each).
    _last: list[Any] = field(default_factory=lambda: [None, b""], compare=False, repr=False)

    def body(self, now: float) -> bytes:
        """The response body as normal execution would give it now (every copy a hit)."""
        millisecond = round(now * 1000)
        last = self._last
        if last[0] == millisecond:
            return cast(bytes, last[1])
        now = millisecond / 1000
        report = {uuid: {"status": "hit", "age": round(now - at, 3)} for uuid, at in self.stored_at}
        body = b'{"data":' + self.data + b',"extensions":' + orjson.dumps({"cache": report}) + b"}"
        last[0], last[1] = millisecond, body
        return body


class ResponseCache:
    """A bounded LRU of CachedResponse, by request key."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, CachedResponse] = OrderedDict()
        self._by_session: dict[str, set[bytes]] = {}  # which entries hold each session

    def get(self, key: bytes) -> CachedResponse | None:
        """The entry while fresh; an expired one is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.fresh_until <= time.time():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: bytes,
        data: object,
        freshness: dict[str, tuple[float, float]],
        label: str,
        *,
        encoded: bytes | None = None,
        changing: bool = False,
    ) -> None:
        """Keep `data` while its sessions stay fresh; `encoded` is its JSON when already made;
        `changing`: a session in it is not terminal."""
        if self.max_entries <= 0 or not freshness:
            return
        if encoded is None:
            encoded = orjson.dumps(data)
        if len(encoded) > MAX_ENTRY_BYTES:
            return
        fresh_until = min(until for _, until in freshness.values())
        stored = tuple((uuid, at) for uuid, (at, _) in freshness.items())
        self._drop(key)
        etag = entity_tag(_scope_of(key), encoded)
        self._entries[key] = CachedResponse(encoded, stored, fresh_until, label, etag, changing)
        for uuid, _ in stored:
            self._by_session.setdefault(uuid, set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def forget(self, session_uuid: str) -> None:
        """Drop every response that holds this session (it changed)."""
        for key in list(self._by_session.get(session_uuid, ())):
            self._drop(key)

    def clear(self) -> None:
        """Drop every response."""
        self._entries.clear()
        self._by_session.clear()

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for uuid, _ in entry.stored_at:
            keys = self._by_session.get(uuid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_session[uuid]

    def __len__(self) -> int:
        return len(self._entries)
