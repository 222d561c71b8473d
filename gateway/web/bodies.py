"""Request bodies read under a limit, declared or streamed."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The body, or None once it declares or streams more than `limit` bytes.

    Its time limit is the front door's: `receive` says the client went away (ClientDisconnect
    here) once GATEWAY_BODY_TIMEOUT has passed, and the door answers 408 (gateway.web.deadlines).
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
