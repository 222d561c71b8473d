"""What guards the flow beyond one request: recipients at rest, and sessions known to have ended.

Recipients. A throttle keeps a counter per recipient; its key names the number by an HMAC-SHA256
under a secret (GATEWAY_RECIPIENT_SECRET, or else a key derived from the configured Plivo auth
token, which every instance of a fleet shares and which is already secret), never by a bare
hash: the space of phone numbers is small enough to hash whole. The HMAC also covers the
credential, so each account (and each token of it) has its own counters.

Ended sessions. Once a session is known to be verified, expired or out of tries (a validation's
result, or the session cache's copy of its status), a validation is answered from that
knowledge and Plivo is not asked: it would refuse. Verified is answered as ALREADY_VERIFIED,
never VERIFIED, since the code given was not checked. What a validation learnt is kept in the
fleet's entries (Redis for a fleet, this process otherwise) for `keep_for` seconds; when it
cannot be read, Plivo is asked as before.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from gateway.fleet import Entries, MemoryEntries
from gateway.fleet.entries import decode_entry
from gateway.plivo.credentials import Credential
from gateway.plivo.flow import ValidationResult
from gateway.plivo.models import Session, SessionStatus
from gateway.verify.sessions import SessionService

logger = logging.getLogger(__name__)
DERIVATION_LABEL = b"plivo-verify-gateway recipient key v1"
# A validation's result that ends the session -> its record; a record -> the answer it gives.
ENDED = {
    ValidationResult.VERIFIED: "verified",
    ValidationResult.EXPIRED: "expired",
    ValidationResult.TOO_MANY_ATTEMPTS: "too_many_attempts",
}
ANSWERS = {
    "verified": ValidationResult.ALREADY_VERIFIED,
    "expired": ValidationResult.EXPIRED,
    "too_many_attempts": ValidationResult.TOO_MANY_ATTEMPTS,
}


def recipient_key(secret: str | None, auth_token: str) -> bytes:
    """The HMAC key for recipients: the secret, else one derived from the auth token."""
    if secret is not None:
        return secret.encode()
    return hmac.new(auth_token.encode(), DERIVATION_LABEL, hashlib.sha256).digest()


def recipient_id(key: bytes, credential: Credential, number: str) -> str:
    """Names a recipient of one credential in keys: an HMAC, never the number or its hash."""
    message = f"{credential.digest}\n{number}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


class EndedSessions:
    """The sessions of one credential known to have ended, and what a validation answers."""

    def __init__(
        self, entries: Entries, sessions: SessionService, *, prefix: str, keep_for: float
    ) -> None:
        self._entries, self._sessions = entries, sessions
        self._prefix, self._keep_for = prefix, keep_for

    def _key(self, session_uuid: str) -> str:
        return f"{self._prefix}:ended:{self._sessions.namespace}:{session_uuid}"

    async def answer(self, session_uuid: str) -> ValidationResult | None:
        """What a validation answers without Plivo, or None when the session may still verify."""
        record = await self._entries.recall(self._key(session_uuid))
        if record is not None:
            known = ANSWERS.get(record)
            if known is not None:
                return known
            logger.warning("an unreadable record of an ended session was ignored")
        session = await self._cached(session_uuid)
        if session is None:
            return None
        if session.status is SessionStatus.VERIFIED:
            return ValidationResult.ALREADY_VERIFIED
        if session.status is SessionStatus.EXPIRED:
            return ValidationResult.EXPIRED
        return None

    async def learn(self, session_uuid: str, result: ValidationResult) -> None:
        """Keep a validation's result when it ended the session."""
        record = ENDED.get(result)
        if record is not None:
            await self._entries.remember(self._key(session_uuid), record, self._keep_for)

    async def _cached(self, session_uuid: str) -> Session | None:
        """The session cache's copy, fresh or not: a terminal status stays true (no claim)."""
        key = self._sessions.cache_key(session_uuid)
        if isinstance(self._entries, MemoryEntries):
            entry = await self._entries.get(key)
        else:  # Redis keeps the encoded entry under its key (this process's copy if it is away)
            raw = await self._entries.recall(key)
            entry = decode_entry(raw) if raw is not None else None
        return entry.session if entry is not None else None
