"""The `plivo-gateway` command: serve | simulate | demo | export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import secrets
import string
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from gateway import __version__
from gateway.app import build_fleet, create_app
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.fixtures import DOCS_EXAMPLE_UUID
from gateway.fleet import is_redis_url
from gateway.metrics import workers_metrics_directory
from gateway.observability import configure_logging, raise_descriptor_limit
from gateway.schema import build_schema
from gateway.simulator import SimulatorSettings, create_simulator

logger = logging.getLogger("gateway")
PROG = "plivo-gateway"
DEMO_QUERY = (
    '{ session(uuid: "%s") { sessionUuid status channel'
    " attempts { channel status charge } charges { totalCharge } } }"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    configure_logging_from_env("json" if args.run is serve_command else "text")
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


def configure_logging_from_env(default_format: str) -> None:
    """GATEWAY_LOG_LEVEL and GATEWAY_LOG_FORMAT, read before (and whatever) the settings say."""
    level = os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper()
    log_format = os.environ.get("GATEWAY_LOG_FORMAT", default_format)
    configure_logging(
        level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
        log_format if log_format in ("json", "text") else default_format,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="A GraphQL gateway for Plivo Verify.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (settings from the environment)")
    serve.add_argument("--host", help="overrides GATEWAY_HOST")
    serve.add_argument("--port", type=int, help="overrides GATEWAY_PORT")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=serve_command)

    simulate = commands.add_parser("simulate", help="run the built-in Plivo simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8001)
    simulate.add_argument("--latency-ms", type=float, default=0.0, help="delay on every answer")
    simulate.add_argument("--fault", help="standing fault: an HTTP status, garbage, reset or slow")
    simulate.add_argument("--bench", action="store_true", help="any canonical uuid answers")
    simulate.add_argument(
        "--bench-live",
        action="store_true",
        help="like --bench, but every uuid is an in-progress session that changes through"
        " POST /__simulator/bench/changes (with signed callbacks); GET /__simulator/traffic"
        " tells when session GETs arrived",
    )
    simulate.add_argument(
        "--expose-codes",
        action="store_true",
        help="GET /__simulator/codes/{uuid} tells a session's code (demos and tests only)",
    )
    simulate.add_argument(
        "--code-expiry", type=float, default=600.0, help="seconds a code stays valid (600)"
    )
    simulate.add_argument(
        "--extra-credential",
        action="append",
        default=[],
        metavar="AUTH_ID:TOKEN",
        help="another account it accepts (repeatable)",
    )
    simulate.set_defaults(run=simulate_command)

    demo = commands.add_parser("demo", help="the gateway in front of the simulator, one command")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--simulator-port", type=int, default=8001)
    demo.set_defaults(run=demo_command)

    export = commands.add_parser("export-schema", help="print the schema's SDL")
    export.add_argument("--output", type=Path, help="write to this file instead of stdout")
    export.set_defaults(run=export_schema_command)
    return parser


def check_fleet(settings: Settings, workers: int) -> None:
    """Refuse what would share nothing or could not share: ConfigError, one line, exit 2.

    Several workers with state in memory would each keep their own idempotency records,
    throttles and budget; a Redis that refuses our credentials or our TLS never will accept.
    """
    if workers > 1 and not is_redis_url(settings.cache_url):
        raise ConfigError(
            [
                f"--workers {workers} keeps idempotency records, throttles and the Plivo budget "
                "in each process: set GATEWAY_CACHE_URL=redis://... to share them"
            ]
        )

    async def verify() -> None:
        fleet = build_fleet(settings)
        try:
            await fleet.start()
        finally:
            await fleet.close()

    if is_redis_url(settings.cache_url):
        asyncio.run(verify())


def serve_command(args: argparse.Namespace) -> int:
    """`serve`: settings from the environment, then uvicorn."""
    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port or settings.port
    check_fleet(settings, args.workers)
    raise_descriptor_limit()
    if settings.auth == "none":
        logger.warning("GATEWAY_AUTH=none: every caller is served without an API key")
    logger.info(
        "serving on http://%s:%d/graphql (%s), Plivo at %s",
        host,
        port,
        settings.env,
        settings.plivo_api_url,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace),
        "ws_max_size": settings.max_body_bytes,  # larger websocket messages: closed, 1009
    }
    if args.workers > 1:
        with workers_metrics_directory():
            uvicorn.run("gateway.cli:worker_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(serving_app(settings), **options)
    return 0


def serving_app(settings: Settings) -> ASGIApp:
    """The app `serve` runs, in its one process or in each worker."""
    app = create_app(settings)
    tune_garbage_collector()
    return app


def worker_app() -> ASGIApp:
    """uvicorn's factory in each worker of `serve --workers N`: logs as `serve` does, the app.

    The worker is a new interpreter: the parent's settings reach it through the environment
    it inherits, PROMETHEUS_MULTIPROC_DIR included.
    """
    configure_logging_from_env("json")
    return serving_app(Settings.from_env())


def tune_garbage_collector() -> None:
    """Fewer, larger collections, and none over what start-up built.

    The caches keep thousands of long-lived sessions; with CPython's default thresholds the
    collector walks them many times a second under load, which cost the cold path about
    40 % of its throughput and most of its p99 (BENCHMARKS.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def simulate_command(args: argparse.Namespace) -> int:
    """`simulate`: the Plivo simulator, accepting PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN."""
    auth_id = os.environ.get("PLIVO_AUTH_ID", "")
    token = os.environ.get("PLIVO_AUTH_TOKEN", "")
    missing = [
        name
        for name, value in (("PLIVO_AUTH_ID", auth_id), ("PLIVO_AUTH_TOKEN", token))
        if not value
    ]
    if missing:
        raise ConfigError([f"{name} is not set" for name in missing])
    extra = tuple(tuple(item.split(":", 1)) for item in args.extra_credential)
    if any(len(pair) != 2 or not all(pair) for pair in extra):
        raise ConfigError(["--extra-credential must be AUTH_ID:TOKEN"])
    try:
        settings = SimulatorSettings(
            auth_id,
            token,
            args.latency_ms,
            args.fault,
            args.bench or args.bench_live,
            bench_live=args.bench_live,
            extra_credentials=extra,
            code_expiry=args.code_expiry,
            expose_codes=args.expose_codes,
        )
        app = create_simulator(settings)
    except ValueError as exc:
        raise ConfigError([f"--fault {exc}"]) from exc
    logger.info("Plivo simulator on http://%s:%d (account %s)", args.host, args.port, auth_id)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """`demo`: a generated credential, the simulator and the gateway in one process."""
    auth_id = "MA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18)
    )
    token = secrets.token_urlsafe(24)
    raise_descriptor_limit()
    simulator_url = f"http://{args.host}:{args.simulator_port}"
    overlay = {
        "PLIVO_AUTH_ID": auth_id,
        "PLIVO_AUTH_TOKEN": token,
        "PLIVO_API_URL": simulator_url,
        "GATEWAY_ENV": "development",
        "GATEWAY_AUTH": "none",
        "GATEWAY_PUBLIC_URL": f"http://{args.host}:{args.port}",  # the simulator calls back here
    }
    settings = Settings.from_env({**os.environ, **overlay})
    simulator = create_simulator(SimulatorSettings(auth_id, token, expose_codes=True))
    print(demo_banner(args.host, args.port, simulator_url, auth_id), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_both(create_app(settings), simulator, args, settings.max_body_bytes))
    return 0


async def _serve_both(
    gateway: ASGIApp, simulator: ASGIApp, args: argparse.Namespace, max_message: int
) -> None:
    sim_server = _QuietSignalsServer(
        uvicorn.Config(
            simulator, host=args.host, port=args.simulator_port, access_log=False, log_config=None
        )
    )
    gateway_server = uvicorn.Server(
        uvicorn.Config(
            gateway,
            host=args.host,
            port=args.port,
            access_log=False,
            log_config=None,
            ws_max_size=max_message,
        )
    )
    sim_task = asyncio.create_task(sim_server.serve())
    try:
        await gateway_server.serve()
    finally:
        sim_server.should_exit = True
        await sim_task


class _QuietSignalsServer(uvicorn.Server):
    """A server that leaves signal handling to the other server in the same process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def demo_banner(host: str, port: int, simulator_url: str, auth_id: str) -> str:
    """What `demo` prints: where GraphiQL is, and a curl for the docs example session."""
    body = json.dumps({"query": DEMO_QUERY % DOCS_EXAMPLE_UUID})
    url = f"http://{host}:{port}/graphql"
    return "\n".join(
        [
            f"plivo-verify-gateway {__version__} demo",
            f"  GraphiQL:  {url}",
            f"  simulator: {simulator_url} (account {auth_id}, generated for this run)",
            "  try:",
            f"  curl -s {url} -H 'content-type: application/json' -d '{body}'",
            f"  codes sent by startVerification: {simulator_url}/__simulator/codes/<sessionUuid>",
        ]
    )


def export_schema_command(args: argparse.Namespace) -> int:
    """`export-schema`: the SDL of the schema built with default settings."""
    sdl = str(build_schema()) + "\n"
    if args.output is None:
        sys.stdout.write(sdl)
    else:
        args.output.write_text(sdl, encoding="utf-8")
    return 0
