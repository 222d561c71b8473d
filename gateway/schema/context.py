"""What resolvers get: a Context of plain services behind Protocols, and the Info alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import strawberry

from gateway.plivo.models import Session


class SessionReader(Protocol):
    """Reads one Verify session; None when Plivo has no such session."""

    async def get(self, session_uuid: str) -> Session | None: ...


@dataclass(frozen=True)
class Context:
    """Per-request context handed to every resolver."""

    sessions: SessionReader


Info = strawberry.Info[Context, None]
