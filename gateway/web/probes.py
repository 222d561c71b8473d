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
        """Configuration loaded and the shared state reachable: 503 while it is not.

        Reads would still be answered, but idempotent starts would be refused and throttles
        decided alone: a balancer should send traffic to an instance that has them.
        """
        body = await readiness()
        return JSONResponse(body, status_code=200 if body.get("status") == "ready" else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
