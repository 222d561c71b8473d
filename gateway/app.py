"""The composition root: `create_app` wires settings, the Plivo client, services and schema."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway import graphiql
from gateway.config import Settings
from gateway.endpoint import GraphQLEndpoint
from gateway.plivo.client import Credential, PlivoClient, create_http_client
from gateway.schema import SchemaOptions, build_schema
from gateway.schema.context import Context
from gateway.sessions import SessionService

logger = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


def asset_endpoint(files: dict[str, Path]) -> Callable[[Request], Awaitable[Response]]:
    """Serves exactly the GraphiQL files by name, nothing else of node_modules."""

    async def asset(request: Request) -> Response:
        path = files.get(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    return asset


def create_app(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The gateway as an ASGI app; `transport` replaces the network (tests)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = create_http_client(
            settings.plivo_api_url,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            transport=transport,
        )
        credential = Credential(settings.plivo_auth_id, settings.plivo_auth_token)
        app.state.sessions = SessionService(PlivoClient(http, credential))
        try:
            yield
        finally:
            await http.aclose()

    def context(request: Request) -> Context:
        return Context(sessions=request.app.state.sessions)

    schema = build_schema(SchemaOptions(introspection=not settings.is_production))
    routes: list[Route] = [Route("/healthz", healthz, methods=["GET"])]
    graphiql_html = None
    if not settings.is_production:
        assets = graphiql.local_assets(settings.graphiql_assets)
        graphiql_html = graphiql.render_page(local=assets is not None)
        if assets is not None:
            routes.append(Route(f"{graphiql.ASSET_PATH}/{{name}}", asset_endpoint(assets)))
        else:
            logger.warning(
                "GraphiQL assets are not installed (run `make assets`); "
                "GraphiQL will load its scripts and styles from unpkg.com"
            )
    endpoint = GraphQLEndpoint(schema, context, graphiql_html=graphiql_html)
    routes.append(Route("/graphql", endpoint.handle, methods=["GET", "POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


def create_app_from_env() -> Starlette:
    """The app with settings from the environment (uvicorn's factory for several workers)."""
    return create_app(Settings.from_env())
