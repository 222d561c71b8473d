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
from gateway.cache import SessionCache, create_cache
from gateway.config import Settings
from gateway.endpoint import GraphQLEndpoint
from gateway.plivo.client import Credential, PlivoClient, create_http_client
from gateway.schema import SchemaOptions, build_schema
from gateway.schema.context import Context
from gateway.sessions import CachePolicy, SessionService

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


def build_cache(settings: Settings) -> SessionCache:
    """Memory by default, Redis for a fleet, or none at all (GATEWAY_CACHE_URL=none)."""
    if settings.cache_url == "none":
        return SessionCache()
    return create_cache(
        settings.cache_url, max_entries=settings.cache_max_entries, timeout=settings.cache_timeout
    )


def cache_policy(settings: Settings) -> CachePolicy:
    """TTLs and stale windows from settings; a fetch lease as long as one upstream call."""
    return CachePolicy(
        terminal_ttl=settings.ttl_terminal,
        in_progress_ttl=settings.ttl_in_progress,
        not_found_ttl=settings.ttl_not_found,
        stale_while_revalidate=settings.stale_while_revalidate,
        stale_if_error=settings.stale_if_error,
        fetch_lease=settings.connect_timeout + settings.read_timeout + 1.0,
        key_prefix=settings.cache_prefix,
    )


def wants_refresh(request: Request) -> bool:
    """`Cache-Control: no-cache` asks for a copy fresh from Plivo."""
    directives = request.headers.get("cache-control", "").lower().split(",")
    return any(directive.strip() == "no-cache" for directive in directives)


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
        cache = build_cache(settings)
        app.state.sessions = SessionService(
            PlivoClient(http, credential),
            cache,
            cache_policy(settings),
            base_url=settings.plivo_api_url,
        )
        try:
            yield
        finally:
            await http.aclose()
            await cache.close()

    def context(request: Request) -> Context:
        return Context(sessions=request.app.state.sessions, refresh=wants_refresh(request))

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
