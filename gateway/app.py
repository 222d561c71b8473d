"""The composition root: `create_app` wires settings, clients, services, schema and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from graphql import GraphQLSchema
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp

from gateway.config import Settings
from gateway.fleet import Changes, Fleet, KeyedRate, open_fleet
from gateway.metrics import Metrics
from gateway.observability import (
    AccessLog,
    DescriptorWatch,
    RequestContextMiddleware,
    RequestIds,
    periodically,
    sdk_configured,
)
from gateway.operations import (
    Admission,
    Authenticator,
    Caller,
    Documents,
    Executor,
    PersistedDocuments,
    Pipeline,
    QueryLimits,
    ResponseCache,
    load_manifest,
)
from gateway.plivo.client import DEFAULT_HEADERS, Credential, create_http_client
from gateway.plivo.lean import LeanUpstream
from gateway.plivo.resilience import RetryPolicy
from gateway.plivo.transport import AiohttpUpstream, HttpxUpstream, UpstreamHTTP
from gateway.schema import SchemaOptions, build_schema
from gateway.schema.context import Context
from gateway.verify.flow import FlowPolicy
from gateway.verify.guards import recipient_key
from gateway.verify.services import BreakerPolicy, SessionServices
from gateway.verify.sessions import CachePolicy, SessionService
from gateway.verify.watch import SessionWatcher
from gateway.web import (
    CALLBACK_PATH,
    ClientConnections,
    FrontDoor,
    GraphQLHTTP,
    MessageLimit,
    Subscriptions,
    callback_endpoint,
    graphiql,
    probe_routes,
)

logger = logging.getLogger(__name__)
PASS_THROUGH_HEADERS = ("x-plivo-auth-id", "x-plivo-auth-token")
LISTEN_WAIT = 2.0  # seconds start-up waits to hear the fleet's changes before serving anyway


def build_upstream(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> UpstreamHTTP:
    """Lean by default; aiohttp or httpx when chosen; httpx when a test hands in a transport."""
    if settings.upstream_client in ("lean", "aiohttp") and transport is None:
        chosen = LeanUpstream if settings.upstream_client == "lean" else AiohttpUpstream
        return chosen(
            settings.plivo_api_url,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_connections=settings.max_upstream_concurrency,
            headers=DEFAULT_HEADERS,
            max_body=settings.max_response_bytes,
        )
    client = create_http_client(
        settings.plivo_api_url,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_connections=settings.max_upstream_concurrency,
        transport=transport,
    )
    return HttpxUpstream(client, max_body=settings.max_response_bytes)


def build_fleet(settings: Settings) -> Fleet:
    """Memory by default, Redis for a fleet; GATEWAY_CACHE_URL=none: no session cache."""
    policy = cache_policy(settings)
    return open_fleet(
        settings.cache_url,
        prefix=settings.cache_prefix,
        max_entries=settings.cache_max_entries,
        timeout=settings.cache_timeout,
        generation_ttl=policy.terminal_ttl + policy.keep_for,
    )


def cache_policy(settings: Settings) -> CachePolicy:
    """TTLs, stale windows and the fleet budget from settings; a lease as long as a call."""
    return CachePolicy(
        terminal_ttl=settings.ttl_terminal,
        in_progress_ttl=settings.ttl_in_progress,
        not_found_ttl=settings.ttl_not_found,
        stale_while_revalidate=settings.stale_while_revalidate,
        max_stale=settings.max_stale,
        callback_ttl=settings.callback_ttl,
        key_share=settings.key_budget_share,
        fetch_lease=settings.upstream_deadline + 1.0,
        key_prefix=settings.cache_prefix,
        budget_requests=settings.budget_requests,
        budget_window=settings.budget_window,
    )


def flow_policy(settings: Settings) -> FlowPolicy:
    """List cache, idempotency, start and validation limits, recipients' key, callback URL."""
    callback = settings.public_url.rstrip("/") + CALLBACK_PATH if settings.public_url else None
    return FlowPolicy(
        list_ttl=settings.ttl_list,
        idempotency_window=settings.idempotency_window,
        starts_per_key=settings.starts_per_key,
        starts_per_recipient=settings.starts_per_recipient,
        validations_per_session=settings.validations_per_session,
        validations_per_key=settings.validations_per_key,
        ended_for=settings.ttl_terminal,  # an ended session is cached as long
        callback_url=callback,
        key_prefix=settings.cache_prefix,
        lease=settings.upstream_deadline + 1.0,
        recipient_key=recipient_key(settings.recipient_secret, settings.plivo_auth_token),
    )


def persisted_documents(
    settings: Settings, documents: Documents, admission: Admission
) -> PersistedDocuments:
    """The trusted documents (GATEWAY_TRUSTED_DOCUMENTS, each checked now: ConfigError names the
    first that fails) and APQ's registrations, as configured."""
    path = settings.trusted_documents
    return PersistedDocuments(
        None if path is None else load_manifest(path, documents, admission),
        only_trusted=settings.only_trusted_documents,
        registration=settings.apq_registration,
    )


def check_trusted_documents(settings: Settings) -> None:
    """Load the manifest as the app would, for a parent process whose workers build the app."""
    if settings.trusted_documents is not None:
        production = settings.is_production
        options = SchemaOptions(introspection=not production, federation=settings.federation)
        schema = build_schema(options)._schema
        limits = query_limits(settings)
        admission = Admission(schema, limits)
        persisted_documents(settings, build_documents(settings, schema, limits), admission)


def query_limits(settings: Settings) -> QueryLimits:
    """The most one request may hold and cost."""
    return QueryLimits(
        settings.max_depth,
        settings.max_aliases,
        settings.max_tokens,
        settings.max_cost,
        settings.max_batch,
    )


def build_documents(settings: Settings, schema: GraphQLSchema, limits: QueryLimits) -> Documents:
    """The document cache, validating as the environment wants (no introspection in production)."""
    return Documents(
        schema,
        max_tokens=limits.max_tokens,
        max_depth=limits.max_depth,
        introspection=not settings.is_production,
    )


def callback_tokens(settings: Settings) -> tuple[str, ...]:
    """The tokens a status callback may be signed with: the account's and the listed
    subaccounts' (PLIVO_CALLBACK_SUBACCOUNTS), never a token a caller brought."""
    return (settings.plivo_auth_token, *(token for _, token in settings.callback_subaccounts))


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    tracer: trace.Tracer | None = None,
) -> ASGIApp:
    """The gateway as an ASGI app; `transport` replaces the network (tests)."""
    metrics = Metrics()
    access = AccessLog(settings.log_format)
    ids = RequestIds()
    fleet = build_fleet(settings)

    watcher = SessionWatcher(
        settings.watch_interval, settings.watch_max_interval, key_share=settings.key_budget_share
    )
    metrics.watching(lambda: watcher.pollers)

    def default_sessions() -> SessionService | None:
        services: SessionServices | None = getattr(starlette_app.state, "services", None)
        return None if services is None else services.default

    metrics.freshness(
        lambda: getattr(default_sessions(), "live", 0),
        lambda: getattr(default_sessions(), "refresh_interval", settings.ttl_in_progress),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await fleet.start()  # ConfigError when Redis refuses us
        http = build_upstream(settings, transport)
        app.state.fleet = fleet

        async def apply(session_uuid: str) -> None:
            fleet.entries.forget_here(session_uuid)
            responses.forget(session_uuid)
            watcher.wake(session_uuid)

        def resync() -> None:
            responses.clear()
            watcher.wake_all()

        changes = Changes(fleet.feed, apply, resync)
        app.state.changes = changes
        app.state.services = SessionServices(
            http,
            fleet,
            base_url=settings.plivo_api_url,
            default=Credential(settings.plivo_auth_id, settings.plivo_auth_token),
            cache_policy=cache_policy(settings),
            retry_policy=RetryPolicy(settings.retry_attempts, settings.upstream_deadline),
            breaker_policy=BreakerPolicy(settings.breaker_threshold, settings.breaker_cooldown),
            max_concurrency=settings.max_upstream_concurrency,
            credential_share=settings.credential_share,
            metrics=metrics,
            flow_policy=flow_policy(settings),
            changed=changes.changed,
        )
        changes.start()
        try:
            async with asyncio.timeout(LISTEN_WAIT):
                await changes.subscribed()
        except TimeoutError:
            logger.warning(
                "not yet subscribed to %s:changes: other instances' changes are not heard "
                "until it is (see /readyz)",
                settings.cache_prefix,
            )
        # Each process: its open files near the limit, its gauges for the other workers.
        chores = asyncio.create_task(periodically((DescriptorWatch().check, metrics.sample)))
        try:
            yield
        finally:
            chores.cancel()
            await asyncio.wait({chores}, timeout=5)
            await changes.stop()
            await http.close()
            await fleet.close()
            access.flush()
            metrics.close()

    def context(caller: Caller) -> Context:
        services: SessionServices = starlette_app.state.services
        sessions = services.for_credential(caller.credential)
        return Context(
            sessions,
            refresh=caller.refresh,
            scopes=caller.principal.scopes,
            caller=caller.principal.id,
            flow=services.flow_for(caller.credential),
            watch=lambda uuid: watcher.watch(sessions, uuid, caller.principal.id),
            idempotency_key=caller.idempotency_key,
        )

    async def callback_changed(session_uuid: str) -> None:
        # Its callbacks arrive: no polling it until one says it changed (or the safety TTL).
        await starlette_app.state.services.default.cover(session_uuid)
        await starlette_app.state.changes.changed(session_uuid)

    async def readiness() -> dict[str, str]:
        if not fleet.shared:
            return {"status": "ready", "fleet": "this process"}
        reachable = await fleet.is_ready()
        listening = starlette_app.state.changes.listening
        return {
            "status": "ready" if reachable else "not ready",
            "fleet": "ok" if reachable else "unreachable",
            "changes": "listening" if listening else "not listening",
        }

    production = settings.is_production
    schema = build_schema(
        SchemaOptions(introspection=not production, federation=settings.federation)
    )
    routes = probe_routes(readiness, metrics.exposition)
    graphiql_html = None
    if not production:
        assets = graphiql.local_assets(settings.graphiql_assets)
        graphiql_html = graphiql.render_page(local=assets is not None)
        if assets is not None:
            routes.append(Route(f"{graphiql.ASSET_PATH}/{{name}}", graphiql.asset_endpoint(assets)))
        else:
            logger.warning(
                "GraphiQL assets are not installed (run `make assets`); "
                "GraphiQL will load its scripts and styles from unpkg.com"
            )
    authenticator = Authenticator(settings.api_keys, required=settings.auth != "none")
    responses = ResponseCache(
        0 if settings.cache_url == "none" else settings.response_cache_entries
    )
    limits = query_limits(settings)
    documents = build_documents(settings, schema._schema, limits)
    admission = Admission(schema._schema, limits)
    pipeline = Pipeline(
        documents=documents,
        admission=admission,
        persisted=persisted_documents(settings, documents, admission),  # ConfigError if bad
        executor=Executor(schema, context),
        responses=responses,
        refetches=KeyedRate(
            fleet.counters, f"{settings.cache_prefix}:refetch", (settings.refresh_per_minute, 60.0)
        ),
        observer=metrics,
        suggestions=not production,
    )
    graphql_http = GraphQLHTTP(
        pipeline,
        authenticator=authenticator,
        max_body_bytes=settings.max_body_bytes,
        observer=metrics,
        graphiql_html=graphiql_html,
        changing_max_age=settings.ttl_in_progress,  # HTTP caches hear of no change
    )
    routes.append(Route("/graphql", graphql_http, methods=["GET", "POST"]))
    sockets = Subscriptions(
        pipeline,
        authenticator=authenticator,
        origins=settings.cors_origins,
        init_timeout=settings.auth_timeout,
    )
    routes.append(WebSocketRoute("/graphql", MessageLimit(sockets, settings.max_body_bytes)))
    routes.append(
        Route(
            CALLBACK_PATH,
            callback_endpoint(
                settings.public_url,
                callback_tokens(settings),
                callback_changed,
                remember=lambda nonces: fleet.nonces.remember(
                    nonces, settings.callback_replay_window
                ),
                observe=metrics.callback,
            ),
            methods=["GET", "POST"],
        )
    )
    if tracer is None and sdk_configured():
        tracer = trace.get_tracer("gateway")
    middleware = [Middleware(RequestContextMiddleware, tracer=tracer, access=access, ids=ids)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "cache-control",
                    "idempotency-key",
                    "if-none-match",  # a fetch() that revalidates by hand
                    "x-request-id",
                    *PASS_THROUGH_HEADERS,
                ],
                expose_headers=["etag", "x-request-id"],  # ETag is not CORS-safelisted
            )
        )
    starlette_app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    return FrontDoor(
        starlette_app,
        graphql_http if tracer is None else None,
        access_log=access,
        request_ids=ids,
        body_timeout=settings.body_timeout,
        connections=ClientConnections(settings.max_connections_per_client),
    )
