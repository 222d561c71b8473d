"""SessionService: what the resolvers call to read Verify sessions."""

from __future__ import annotations

from gateway.errors import SessionNotFound
from gateway.plivo.client import PlivoClient
from gateway.plivo.models import Session, canonical_session_uuid


class SessionService:
    """Reads sessions through the Plivo client; a session Plivo does not know is None."""

    def __init__(self, client: PlivoClient) -> None:
        self._client = client

    async def get(self, session_uuid: str) -> Session | None:
        """The session, or None for Plivo's 404; other upstream failures raise."""
        uuid = canonical_session_uuid(session_uuid)
        try:
            return await self._client.get_session(uuid)
        except SessionNotFound:
            return None
