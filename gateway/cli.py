"""The `plivo-gateway` command: serve | simulate | demo | export-schema.

Every input is checked before anything starts, the way the settings are: options and
environment alike, one line names every problem and the exit status is 2, never a traceback.
A port already taken is found by binding it before any banner is printed or server started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import json
import logging
import math
import os
import secrets
import signal
import socket
import string
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

from gateway import __version__
from gateway.app import build_fleet, check_trusted_documents, create_app
from gateway.config import LOG_LEVELS, Settings, port_number, positive_int
from gateway.errors import ConfigError
from gateway.fixtures import DOCS_EXAMPLE_UUID
from gateway.fleet import is_redis_url
from gateway.metrics import workers_metrics_directory
from gateway.observability import configure_logging, raise_descriptor_limit, writing_as
from gateway.schema import exported_sdl
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.faults import Fault
from gateway.web.protocol import HTTP_SERVING

logger = logging.getLogger("gateway")
PROG = "plivo-gateway"
T = TypeVar("T")
DEMO_QUERY = (
    '{ session(uuid: "%s") { sessionUuid status channel'
    " attempts { channel status charge } charges { totalCharge } } }"
)
REQUIRED_BY_SERVE = (
    "PLIVO_AUTH_ID",
    "PLIVO_AUTH_TOKEN",
    "GATEWAY_API_KEYS",
    "GATEWAY_API_KEYS_FILE",
)
# What `demo` decides itself, whatever the environment says (host and port are its options).
DEMO_DECIDES = (
    *("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN", "PLIVO_API_URL", "GATEWAY_PUBLIC_URL"),
    *("GATEWAY_ENV", "GATEWAY_AUTH", "GATEWAY_HOST", "GATEWAY_PORT"),
)
SERVE_ENVIRONMENT = """\
environment, required:
  PLIVO_AUTH_ID          the Plivo account's auth id (MA or SA and 18 capitals or digits)
  PLIVO_AUTH_TOKEN       its auth token
  GATEWAY_API_KEYS       the callers' keys, name:sha256-hex:scopes, comma-separated; or
  GATEWAY_API_KEYS_FILE  a file of them, one a line (neither with GATEWAY_AUTH=none)
"""
SIMULATE_ENVIRONMENT = """\
environment, required:
  PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN  the account the simulator accepts (HTTP Basic auth)
environment, optional:
  GATEWAY_LOG_LEVEL (default INFO), GATEWAY_LOG_FORMAT (default text)
"""
DEMO_ENVIRONMENT = """\
environment: none is required. The demo generates a Plivo credential for its simulator and
sets PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN, PLIVO_API_URL, GATEWAY_PUBLIC_URL, GATEWAY_ENV=development
and GATEWAY_AUTH=none itself. It reads the gateway's other settings as serve does (with
GATEWAY_LOG_FORMAT text by default):
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A GraphQL gateway for Plivo Verify, and a simulator of Plivo to try it on.",
        epilog=f"`{PROG} COMMAND --help` describes a command, its options and its environment.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _serve_parser(commands)
    _simulate_parser(commands)
    _demo_parser(commands)
    export = _command(
        commands,
        "export-schema",
        "print the schema's SDL",
        "Print the GraphQL schema (SDL) built with default settings: schema.graphql is this."
        " With --federation, the Apollo Federation 2 subgraph's SDL, as _service { sdl } gives it"
        " with GATEWAY_FEDERATION=true: schema.federation.graphql is this.",
        export_schema_command,
    )
    export.add_argument(
        "--output", metavar="FILE", help="write to FILE instead of stdout (default: stdout)"
    )
    export.add_argument(
        "--federation",
        action="store_true",
        help="the subgraph's SDL, with @link and @key, for a supergraph's composition"
        " (default: the plain schema)",
    )
    return parser


def _command(
    commands: Any,
    name: str,
    summary: str,
    description: str,
    run: Callable[[argparse.Namespace], int],
    epilog: str = "",
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=88),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.set_defaults(run=run)
    return command


def _serve_parser(commands: Any) -> None:
    optional = [name for name in settings_variables() if name not in REQUIRED_BY_SERVE]
    serve = _command(
        commands,
        "serve",
        "run the gateway (settings from the environment)",
        "Run the gateway: GraphQL at /graphql in front of Plivo's Verify API, configured from"
        " the environment. Every option and setting is checked before it starts: one line"
        " names every problem, exit status 2.",
        serve_command,
        SERVE_ENVIRONMENT
        + "environment, optional (docs/configuration.md describes each):\n"
        + _wrap(optional),
    )
    serve.add_argument(
        "--host", help="the address to listen on (default: GATEWAY_HOST, else 127.0.0.1)"
    )
    serve.add_argument(
        "--port", help="the port to listen on, 1 to 65535 (default: GATEWAY_PORT, else 8000)"
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        default="1",
        help="processes serving the port; more than 1 needs GATEWAY_CACHE_URL=redis://..."
        " (default: %(default)s)",
    )


def _simulate_parser(commands: Any) -> None:
    simulate = _command(
        commands,
        "simulate",
        "run the built-in Plivo simulator",
        "Run a faithful fake of Plivo's Verify Session API (sessions, codes, callbacks, faults):"
        " for tests, benchmarks, and trying the gateway without a Plivo account.",
        simulate_command,
        SIMULATE_ENVIRONMENT,
    )
    simulate.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    simulate.add_argument(
        "--port", default="8001", help="the port to listen on (default: %(default)s)"
    )
    simulate.add_argument(
        "--latency-ms",
        metavar="MS",
        default="0",
        help="delay on every answer, 0 to 60000 (default: %(default)s)",
    )
    simulate.add_argument(
        "--fault",
        help="standing fault on every answer: an HTTP status from 400 to 599, garbage, reset"
        " or slow (default: none)",
    )
    simulate.add_argument(
        "--bench", action="store_true", help="any canonical uuid answers (default: off)"
    )
    simulate.add_argument(
        "--bench-live",
        action="store_true",
        help="like --bench, but every uuid is an in-progress session that changes through"
        " POST /__simulator/bench/changes (with signed callbacks); GET /__simulator/traffic"
        " tells when session GETs arrived (default: off)",
    )
    simulate.add_argument(
        "--expose-codes",
        action="store_true",
        help="GET /__simulator/codes/{uuid} tells a session's code (demos and tests only;"
        " default: off)",
    )
    simulate.add_argument(
        "--code-expiry",
        metavar="SECONDS",
        default="600",
        help="how long a code stays valid, above 0 and at most 86400 (default: %(default)s)",
    )
    simulate.add_argument(
        "--extra-credential",
        action="append",
        default=[],
        metavar="AUTH_ID:TOKEN",
        help="one more account the simulator accepts besides PLIVO_AUTH_ID and"
        " PLIVO_AUTH_TOKEN, as another tenant or a subaccount calls it; repeat it for more"
        " (default: none)",
    )


def _demo_parser(commands: Any) -> None:
    read = [name for name in settings_variables() if name not in DEMO_DECIDES]
    demo = _command(
        commands,
        "demo",
        "the gateway in front of the simulator, one command",
        "Run the gateway in front of the simulator, in one process: GraphiQL on, no API keys"
        " (GATEWAY_AUTH=none), a Plivo credential generated for this run. To try it out only:"
        " never expose it. Each log line says which part wrote it.",
        demo_command,
        DEMO_ENVIRONMENT + _wrap(read),
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="the address both listen on (default: %(default)s)"
    )
    demo.add_argument("--port", default="8000", help="the gateway's port (default: %(default)s)")
    demo.add_argument(
        "--simulator-port",
        metavar="PORT",
        default="8001",
        help="the simulator's port (default: %(default)s)",
    )


def _wrap(names: Sequence[str]) -> str:
    listed = ", ".join(sorted(names))
    return textwrap.fill(listed, width=88, initial_indent="  ", subsequent_indent="  ") + "\n"


class _AskedFor(Mapping[str, str]):
    """An empty environment that remembers the names read from it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.names.append(key)
        return default

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_variables() -> list[str]:
    """Every variable the settings read, derived from them (a retired name is only tested)."""
    environ = _AskedFor()
    with contextlib.suppress(ConfigError):
        Settings.from_env(environ)
    return list(dict.fromkeys(environ.names))


class _Options:
    """Reads a command's options one by one, remembering every problem instead of stopping."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.problems: list[str] = []

    def read(self, option: str, parse: Callable[[str], T]) -> T | None:
        raw = getattr(self.args, option.lstrip("-").replace("-", "_"))
        return None if raw is None else self.check(option, raw, parse)

    def check(self, option: str, raw: str, parse: Callable[[str], T]) -> T | None:
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{option} {exc}")
            return None

    def settings(self, environ: Mapping[str, str]) -> Settings | None:
        """The settings, or None with their problems added after the options' ones."""
        try:
            return Settings.from_env(environ)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def raise_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _host(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan  # no comparison holds: refused by every range


def _latency(raw: str) -> float:
    if not 0 <= (value := _float(raw)) <= 60_000:
        raise ValueError("must be a number of milliseconds from 0 to 60000")
    return value


def _expiry(raw: str) -> float:
    if not 0 < (value := _float(raw)) <= 86_400:
        raise ValueError("must be a number of seconds above 0 and at most 86400")
    return value


def _fault(raw: str) -> str:
    try:
        Fault.parse(raw)
    except ValueError:
        raise ValueError("must be an HTTP status from 400 to 599, garbage, reset or slow") from None
    return raw


def _credential(raw: str) -> tuple[str, str]:
    auth_id, _, token = raw.partition(":")
    if not auth_id or not token:
        raise ValueError("must be AUTH_ID:TOKEN")
    return auth_id, token


def listen(wanted: Sequence[tuple[str, int, str]]) -> list[socket.socket]:
    """A socket bound to each (host, port), or ConfigError naming each that cannot be bound.

    The third item says how to choose another port. Bound like uvicorn binds; none is kept
    when one fails.
    """
    sockets: list[socket.socket] = []
    problems: list[str] = []
    for host, port, choose in wanted:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            problems.append(_listen_problem(host, port, choose, exc))
        else:
            sockets.append(sock)
    if problems:
        for sock in sockets:
            sock.close()
        raise ConfigError(problems)
    return sockets


def _listen_problem(host: str, port: int, choose: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: stop what listens there,"
            f" or choose another with {choose}"
        )
    return f"cannot listen on {host} port {port} ({exc.strerror or exc}): check --host and {choose}"


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


# How long uvicorn's supervisor waits for a worker to start, and to answer each liveness ping,
# before it kills it (uvicorn's default is 5 s). A worker imports and builds the whole app in a
# new interpreter: on a busy host that took longer than 5 s, and the workers were killed and
# started again in a loop before any served.
WORKER_HEALTHCHECK_TIMEOUT = 30


def serve_command(args: argparse.Namespace) -> int:
    """`serve`: options and settings checked, the port tried, then uvicorn."""
    options = _Options(args)
    given_host = options.read("--host", _host)
    given_port = options.read("--port", port_number)
    workers = options.read("--workers", positive_int)
    settings = options.settings(os.environ)
    options.raise_any()
    assert settings is not None
    assert workers is not None
    host, port = given_host or settings.host, given_port or settings.port
    for sock in listen([(host, port, "--port (or GATEWAY_PORT)")]):
        sock.close()  # only a test: uvicorn binds it again, in each of its ways
    configure_logging(settings.log_level, settings.log_format)
    check_fleet(settings, workers)
    # Built before anything is logged: a bad manifest (GATEWAY_TRUSTED_DOCUMENTS) is one line.
    app = serving_app(settings) if workers == 1 else None
    if app is None:  # each worker builds its own: the manifest is checked here, not in each
        check_trusted_documents(settings)
    raise_descriptor_limit()
    if settings.auth == "none":
        logger.warning("GATEWAY_AUTH=none: every caller is served without an API key")
    where = f"http://{host}:{port}/graphql ({settings.env}), Plivo at {settings.plivo_api_url}"
    logger.info("serving on %s", where)
    run = _uvicorn_options(settings, host, port)
    if app is None:
        with workers_metrics_directory():
            uvicorn.run(
                "gateway.cli:worker_app",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
                **run,
            )
    else:
        uvicorn.run(app, **run)
    return 0


def _uvicorn_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        **HTTP_SERVING,  # each response one write, no Server header (gateway/web/protocol.py)
        "access_log": False,
        "log_config": None,
        "log_level": settings.log_level.lower(),  # uvicorn sets its loggers' levels too
        "proxy_headers": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace),
        "ws_max_size": settings.max_body_bytes,  # larger websocket messages: closed, 1009
    }


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
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return serving_app(settings)


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
    options = _Options(args)
    host = options.read("--host", _host)
    port = options.read("--port", port_number)
    settings = _simulator_settings(args, options)
    level, log_format = _log_options(os.environ, options)
    options.raise_any()
    assert host is not None
    assert port is not None
    assert settings is not None
    for sock in listen([(host, port, "--port")]):
        sock.close()  # only a test: uvicorn binds it again
    configure_logging(level, log_format)
    logger.info("Plivo simulator on http://%s:%d (account %s)", host, port, settings.auth_id)
    app = create_simulator(settings)
    uvicorn.run(
        app, host=host, port=port, access_log=False, log_config=None, log_level=level.lower()
    )
    return 0


def _simulator_settings(args: argparse.Namespace, options: _Options) -> SimulatorSettings | None:
    latency_ms = options.read("--latency-ms", _latency)
    code_expiry = options.read("--code-expiry", _expiry)
    fault = options.read("--fault", _fault)
    extra = [options.check("--extra-credential", raw, _credential) for raw in args.extra_credential]
    auth_id = os.environ.get("PLIVO_AUTH_ID", "").strip()
    token = os.environ.get("PLIVO_AUTH_TOKEN", "").strip()
    for name, value in (("PLIVO_AUTH_ID", auth_id), ("PLIVO_AUTH_TOKEN", token)):
        if not value:
            options.problems.append(f"{name} is not set")
    if options.problems or latency_ms is None or code_expiry is None:
        return None
    return SimulatorSettings(
        auth_id,
        token,
        latency_ms,
        fault,
        args.bench or args.bench_live,
        bench_live=args.bench_live,
        extra_credentials=tuple(pair for pair in extra if pair is not None),
        code_expiry=code_expiry,
        expose_codes=args.expose_codes,
    )


def _log_options(environ: Mapping[str, str], options: _Options) -> tuple[str, str]:
    """GATEWAY_LOG_LEVEL and GATEWAY_LOG_FORMAT where no settings are read (`simulate`)."""
    level = environ.get("GATEWAY_LOG_LEVEL", "").strip().upper() or "INFO"
    log_format = environ.get("GATEWAY_LOG_FORMAT", "").strip() or "text"
    if level not in LOG_LEVELS:
        options.problems.append(f"GATEWAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    if log_format not in ("json", "text"):
        options.problems.append("GATEWAY_LOG_FORMAT must be json or text")
    return level, log_format


def demo_command(args: argparse.Namespace) -> int:
    """`demo`: a generated credential, the simulator and the gateway in one process."""
    options = _Options(args)
    host = options.read("--host", _host)
    port = options.read("--port", port_number)
    sim_port = options.read("--simulator-port", port_number)
    if port is not None and port == sim_port:
        options.problems.append("--port and --simulator-port must differ")
    auth_id = "MA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18)
    )
    token = secrets.token_urlsafe(24)
    # An option refused above gives way to its default here: nothing starts anyway.
    origin = f"http://{host or '127.0.0.1'}"
    gateway_url, simulator_url = f"{origin}:{port or 8000}", f"{origin}:{sim_port or 8001}"
    settings = options.settings(_demo_environment(gateway_url, simulator_url, auth_id, token))
    options.raise_any()
    assert settings is not None
    assert host is not None
    assert port is not None
    assert sim_port is not None
    sockets = listen([(host, port, "--port"), (host, sim_port, "--simulator-port")])
    configure_logging(settings.log_level, settings.log_format)
    check_fleet(settings, 1)
    with writing_as("gateway"):
        raise_descriptor_limit()
    simulator = create_simulator(SimulatorSettings(auth_id, token, expose_codes=True))
    print(demo_banner(host, port, simulator_url, auth_id, token), flush=True)
    parts = [
        ("gateway", _demo_server(create_app(settings), settings), sockets[0]),
        ("simulator", _demo_server(simulator, settings), sockets[1]),
    ]
    return 0 if asyncio.run(_serve_all(parts)) else 3  # 3: uvicorn's "could not start"


def _demo_environment(
    gateway_url: str, simulator_url: str, auth_id: str, token: str
) -> dict[str, str]:
    """What the demo's gateway reads: the environment, and what the demo sets itself."""
    return {
        "GATEWAY_LOG_FORMAT": "text",
        **{name: value for name, value in os.environ.items() if name not in DEMO_DECIDES},
        "PLIVO_AUTH_ID": auth_id,
        "PLIVO_AUTH_TOKEN": token,
        "PLIVO_API_URL": simulator_url,
        "GATEWAY_ENV": "development",
        "GATEWAY_AUTH": "none",
        "GATEWAY_PUBLIC_URL": gateway_url,  # the simulator calls back here
    }


def _demo_server(app: ASGIApp, settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        **HTTP_SERVING,
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        ws_max_size=settings.max_body_bytes,
    )
    return _QuietSignalsServer(config)


class _QuietSignalsServer(uvicorn.Server):
    """A server that leaves signals to the demo, which stops every server at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_all(parts: Sequence[tuple[str, uvicorn.Server, socket.socket]]) -> bool:
    """Serve each part on its socket until SIGINT or SIGTERM; False when one could not start."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for _, server, _ in parts:
            server.force_exit = server.should_exit  # a second Ctrl+C does not wait
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        served = [_serve_part(part, server, sock, stop) for part, server, sock in parts]
        return all(await asyncio.gather(*served))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _serve_part(
    part: str, server: uvicorn.Server, sock: socket.socket, stop: Callable[[], None]
) -> bool:
    with writing_as(part):  # every line it logs, its requests' included, says which part
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way out when the app did not start; it logged why
            stop()
            return False
    return True


def demo_banner(host: str, port: int, simulator_url: str, auth_id: str, token: str) -> str:
    """What `demo` prints: GraphiQL, a curl for the docs example, and the simulator's access."""
    body = json.dumps({"query": DEMO_QUERY % DOCS_EXAMPLE_UUID})
    url = f"http://{host}:{port}/graphql"
    session = f"{simulator_url}/v1/Account/{auth_id}/Verify/Session/{DOCS_EXAMPLE_UUID}/"
    return "\n".join(
        [
            f"plivo-verify-gateway {__version__} demo (Ctrl+C stops it)",
            f"  GraphiQL:   {url}",
            "  try:",
            f"  curl -s {url} -H 'content-type: application/json' -d '{body}'",
            f"  simulator:  {simulator_url} (a fake of Plivo's Verify API)",
            f"  auth id:    {auth_id}",
            f"  auth token: {token}",
            "  (both generated for this run) the same session, from the simulator itself:",
            f"  curl -s -u {auth_id}:{token} {session}",
            f"  codes sent by startVerification: {simulator_url}/__simulator/codes/<sessionUuid>",
        ]
    )


def export_schema_command(args: argparse.Namespace) -> int:
    """`export-schema`: the SDL of the schema built with default settings, or the subgraph's."""
    sdl = exported_sdl(federation=args.federation)
    if args.output is None:
        sys.stdout.write(sdl)
        return 0
    try:
        Path(args.output).write_text(sdl, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"--output {args.output} cannot be written ({reason})"]) from exc
    return 0
