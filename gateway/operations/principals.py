"""Who is calling: API keys presented as `Authorization: Bearer <key>`, and pass-through.

Keys are configured by their SHA-256 digest only; a presented key is hashed and looked up,
so the gateway never holds a key in clear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import AUTH_ID_PATTERN, SCOPES, ApiKey
from gateway.errors import BadCredentialHeaders, Forbidden, Unauthenticated
from gateway.plivo.credentials import Credential


@dataclass(frozen=True)
class Principal:
    """The caller: its key's name, its scopes, and `id`, what everything per key is keyed by.

    `id` carries the key's digest (the name, for the logs, and the first 12 hex digits), so
    two keys never share a response cache, a throttle or a budget share, even under one name.
    """

    name: str
    scopes: frozenset[str]
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)

    def allows(self, scope: str) -> bool:
        """Whether this caller holds `scope`."""
        return scope in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


class Authenticator:
    """Maps a request's headers to a Principal (or raises Unauthenticated)."""

    def __init__(self, keys: tuple[ApiKey, ...], *, required: bool) -> None:
        self._by_digest = {
            key.sha256: Principal(key.name, key.scopes, f"{key.name}#{key.sha256[:12]}")
            for key in keys
        }
        self.required = required

    def principal(self, headers: Mapping[str, str]) -> Principal:
        """The caller, from `Authorization: Bearer <key>`."""
        if not self.required:
            return ANONYMOUS
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
        digest = hashlib.sha256(presented.strip().encode("utf-8", "replace")).hexdigest()
        principal = self._by_digest.get(digest)
        if principal is None:
            raise Unauthenticated("the API key is not known")
        return principal


def pass_through(headers: Mapping[str, str], principal: Principal) -> Credential | None:
    """The caller's own Plivo credential, if it sent one and may."""
    auth_id = headers.get("x-plivo-auth-id")
    token = headers.get("x-plivo-auth-token")
    if auth_id is None and token is None:
        return None
    if not principal.allows("passthrough"):
        raise Forbidden("this API key may not send a Plivo credential (needs passthrough)")
    if not auth_id or not token or not AUTH_ID_PATTERN.fullmatch(auth_id):
        raise BadCredentialHeaders(
            "X-Plivo-Auth-Id (MA or SA and 18 capitals or digits) and X-Plivo-Auth-Token"
            " must be sent together"
        )
    return Credential(auth_id, token)


def key_digest(key: str) -> str:
    """The SHA-256 hex digest to configure for `key`."""
    return hashlib.sha256(key.encode()).hexdigest()
