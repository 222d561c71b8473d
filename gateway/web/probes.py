"""Probes and metrics: /healthz (alive), /readyz (what the app reports), /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

Readiness = Callable[[], Awaitable[dict[str, str]]]


def probe_routes(readiness: Readiness, exposition: Callable[[], bytes]) -> list[BaseRoute]:
    """The three GET routes."""

    async def healthz(request: Request) -> Response:
        """The process is alive."""
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Configuration loaded; the cache reachable, or degraded (queries still answered)."""
        return JSONResponse(await readiness())

    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
