"""A Plivo credential: what the gateway sends requests with, named in keys by its digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credential:
    """A Plivo auth id and token; the token never shows in a repr."""

    auth_id: str
    auth_token: str = field(repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 of the credential: names it in keys without carrying the token."""
        return hashlib.sha256(f"{self.auth_id}:{self.auth_token}".encode()).hexdigest()
