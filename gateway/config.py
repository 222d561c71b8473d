"""Settings, read once from the environment at start-up.

Every problem is collected before anything fails, so one line can name them all.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from gateway.errors import ConfigError

AUTH_ID_PATTERN = re.compile(r"^(MA|SA)[A-Z0-9]{18}$")
SCOPES = ("read", "write", "passthrough")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
Environment = Literal["development", "production"]
UpstreamClient = Literal["aiohttp", "httpx", "lean"]
UPSTREAM_CLIENTS: tuple[UpstreamClient, ...] = ("aiohttp", "httpx", "lean")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
T = TypeVar("T")


@dataclass(frozen=True)
class ApiKey:
    """A caller's key as configured: its name, the SHA-256 of the key, and its scopes."""

    name: str
    sha256: str = field(repr=False)
    scopes: frozenset[str]


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is configured with; built once, then passed down."""

    plivo_auth_id: str
    plivo_auth_token: str = field(repr=False)
    plivo_api_url: str = "https://api.plivo.com"
    host: str = "127.0.0.1"
    port: int = 8000
    env: Environment = "development"
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    log_level: str = "INFO"
    graphiql_assets: str | None = None
    federation: bool = False  # an Apollo Federation 2 subgraph (docs/federation.md)
    cache_url: str | None = field(default=None, repr=False)
    cache_prefix: str = "pvg"
    cache_max_entries: int = 10_000
    cache_timeout: float = 0.25
    ttl_terminal: float = 3600.0
    ttl_in_progress: float = 2.0
    ttl_not_found: float = 5.0
    stale_while_revalidate: float = 10.0
    max_stale: float = 600.0
    callback_ttl: float = 60.0
    key_budget_share: float = 0.5
    auth: Literal["keys", "none"] = "keys"
    api_keys: tuple[ApiKey, ...] = ()
    max_depth: int = 8
    max_aliases: int = 20
    max_tokens: int = 2000
    max_body_bytes: int = 65_536
    max_batch: int = 10
    max_cost: int = 20
    cors_origins: tuple[str, ...] = ()
    upstream_deadline: float = 5.0
    retry_attempts: int = 3
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0
    max_upstream_concurrency: int = 128
    credential_share: float = 0.5
    max_response_bytes: int = 1_048_576
    budget_requests: int = 300
    budget_window: float = 5.0
    refresh_per_minute: int = 30
    shutdown_grace: float = 10.0
    log_format: Literal["json", "text"] = "json"
    upstream_client: UpstreamClient = "lean"
    response_cache_entries: int = 10_000
    public_url: str | None = None
    idempotency_window: float = 600.0
    starts_per_key: tuple[int, float] = (30, 60.0)
    starts_per_recipient: tuple[int, float] = (5, 600.0)
    ttl_list: float = 5.0
    watch_interval: float = 1.0
    watch_max_interval: float = 10.0
    callback_subaccounts: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    callback_replay_window: float = 3600.0
    validations_per_session: tuple[int, float] = (10, 600.0)
    validations_per_key: tuple[int, float] = (120, 60.0)
    recipient_secret: str | None = field(default=None, repr=False)
    body_timeout: float = 10.0
    auth_timeout: float = 5.0
    max_connections_per_client: int = 256
    trusted_documents: Path | None = None
    only_trusted_documents: bool = False
    apq_registration: bool = True  # from_env: off in production unless set

    @property
    def is_production(self) -> bool:
        """Production turns GraphiQL and introspection off."""
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (the process environment by default)."""
        reader = _Reader(os.environ if environ is None else environ)
        auth_id = reader.required("PLIVO_AUTH_ID", _auth_id)
        token = reader.required("PLIVO_AUTH_TOKEN", _non_empty)
        settings: dict[str, Any] = {
            "plivo_api_url": reader.optional("PLIVO_API_URL", _http_url),
            "host": reader.optional("GATEWAY_HOST", _non_empty),
            "port": reader.optional("GATEWAY_PORT", port_number),
            "env": reader.optional("GATEWAY_ENV", _environment),
            "connect_timeout": reader.optional("PLIVO_CONNECT_TIMEOUT", _seconds),
            "read_timeout": reader.optional("PLIVO_READ_TIMEOUT", _seconds),
            "log_level": reader.optional("GATEWAY_LOG_LEVEL", _log_level),
            "graphiql_assets": reader.optional("GATEWAY_GRAPHIQL_ASSETS", _non_empty),
            "federation": reader.optional("GATEWAY_FEDERATION", _flag),
            "cache_url": reader.optional("GATEWAY_CACHE_URL", _cache_url),
            "cache_prefix": reader.optional("GATEWAY_CACHE_PREFIX", _key_prefix),
            "cache_max_entries": reader.optional("GATEWAY_CACHE_MAX_ENTRIES", positive_int),
            "cache_timeout": reader.optional("GATEWAY_CACHE_TIMEOUT", _seconds),
            "ttl_terminal": reader.optional("GATEWAY_CACHE_TTL_TERMINAL", _duration),
            "ttl_in_progress": reader.optional("GATEWAY_CACHE_TTL_IN_PROGRESS", _duration),
            "ttl_not_found": reader.optional("GATEWAY_CACHE_TTL_NOT_FOUND", _duration),
            "stale_while_revalidate": reader.optional(
                "GATEWAY_CACHE_STALE_WHILE_REVALIDATE", _duration
            ),
            "max_stale": reader.optional("GATEWAY_CACHE_MAX_STALE", _duration),
            "callback_ttl": reader.optional("GATEWAY_CACHE_TTL_CALLBACKS", _duration),
            "key_budget_share": reader.optional("GATEWAY_KEY_BUDGET_SHARE", _fraction),
        }
        if "GATEWAY_CACHE_STALE_IF_ERROR" in reader.environ:
            reader.problems.append(
                "GATEWAY_CACHE_STALE_IF_ERROR is now GATEWAY_CACHE_MAX_STALE (the oldest copy"
                " served, in seconds since it was fetched): rename it"
            )
        settings.update(_read_hardening(reader))
        if reader.problems:
            raise ConfigError(reader.problems)
        assert auth_id is not None
        assert token is not None
        given = {name: value for name, value in settings.items() if value is not None}
        return dataclasses.replace(cls(plivo_auth_id=auth_id, plivo_auth_token=token), **given)


def _read_hardening(reader: _Reader) -> dict[str, Any]:
    named_before = len(reader.problems)
    keys = reader.optional("GATEWAY_API_KEYS", _api_keys) or ()
    keys_file = reader.optional("GATEWAY_API_KEYS_FILE", _api_keys_file) or ()
    keys_named = len(reader.problems) > named_before  # a malformed source is named once
    auth = reader.optional("GATEWAY_AUTH", _auth_mode)
    all_keys = (*keys, *keys_file)
    both = sorted({key.name for key in keys} & {key.name for key in keys_file})
    if both:  # one name, two secrets: everything per key (its cache, its shares) would merge
        reader.problems.append(
            f"GATEWAY_API_KEYS and GATEWAY_API_KEYS_FILE both name {', '.join(both)}:"
            " a key name must be unique"
        )
    # Keys are wanted unless GATEWAY_AUTH says none; a malformed GATEWAY_AUTH is named alone.
    wants_keys = auth == "keys" or not reader.environ.get("GATEWAY_AUTH", "").strip()
    if wants_keys and not all_keys and not keys_named:
        reader.problems.append(
            f"{_no_keys(reader.environ)}: configure API keys,"
            " or set GATEWAY_AUTH=none to run without them"
        )
    return {
        "auth": auth,
        "api_keys": tuple(all_keys),
        "max_depth": reader.optional("GATEWAY_MAX_DEPTH", positive_int),
        "max_aliases": reader.optional("GATEWAY_MAX_ALIASES", positive_int),
        "max_tokens": reader.optional("GATEWAY_MAX_TOKENS", positive_int),
        "max_body_bytes": reader.optional("GATEWAY_MAX_BODY_BYTES", positive_int),
        "max_batch": reader.optional("GATEWAY_MAX_BATCH", positive_int),
        "max_cost": reader.optional("GATEWAY_MAX_COST", positive_int),
        "cors_origins": reader.optional("GATEWAY_CORS_ORIGINS", _origins),
        "upstream_deadline": reader.optional("PLIVO_DEADLINE", _seconds),
        "retry_attempts": reader.optional("PLIVO_RETRY_ATTEMPTS", positive_int),
        "breaker_threshold": reader.optional("PLIVO_BREAKER_THRESHOLD", positive_int),
        "breaker_cooldown": reader.optional("PLIVO_BREAKER_COOLDOWN", _seconds),
        "max_upstream_concurrency": reader.optional("PLIVO_MAX_CONCURRENCY", positive_int),
        "credential_share": reader.optional("PLIVO_CREDENTIAL_SHARE", _fraction),
        "max_response_bytes": reader.optional("PLIVO_MAX_RESPONSE_BYTES", positive_int),
        "body_timeout": reader.optional("GATEWAY_BODY_TIMEOUT", _seconds),
        "auth_timeout": reader.optional("GATEWAY_AUTH_TIMEOUT", _seconds),
        "max_connections_per_client": reader.optional("GATEWAY_MAX_CONNECTIONS_PER_CLIENT", _count),
        "budget_requests": reader.optional("PLIVO_BUDGET_REQUESTS", positive_int),
        "budget_window": reader.optional("PLIVO_BUDGET_WINDOW", _seconds),
        "refresh_per_minute": reader.optional("GATEWAY_REFRESH_PER_MINUTE", positive_int),
        "shutdown_grace": reader.optional("GATEWAY_SHUTDOWN_GRACE", _seconds),
        "log_format": reader.optional("GATEWAY_LOG_FORMAT", _log_format),
        "upstream_client": reader.optional("PLIVO_HTTP_CLIENT", _upstream_client),
        "response_cache_entries": reader.optional("GATEWAY_RESPONSE_CACHE_ENTRIES", _count),
        **_read_flow(reader),
        **_read_documents(reader),
    }


def _no_keys(environ: Mapping[str, str]) -> str:
    given = [n for n in ("GATEWAY_API_KEYS", "GATEWAY_API_KEYS_FILE") if environ.get(n, "").strip()]
    if not given:
        return "GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE) is not set"
    return f"{' and '.join(given)} {'name' if len(given) > 1 else 'names'} no key"


def _read_documents(reader: _Reader) -> dict[str, Any]:
    """The trusted documents' manifest (read when the app is built, against its schema), and APQ:
    registration defaults to off in production."""
    manifest = reader.optional("GATEWAY_TRUSTED_DOCUMENTS", _manifest)
    only_trusted = reader.optional("GATEWAY_ONLY_TRUSTED_DOCUMENTS", _flag)
    registration = reader.optional("GATEWAY_APQ_REGISTRATION", _flag)
    if only_trusted and not reader.environ.get("GATEWAY_TRUSTED_DOCUMENTS", "").strip():
        reader.problems.append(
            "GATEWAY_ONLY_TRUSTED_DOCUMENTS=true needs GATEWAY_TRUSTED_DOCUMENTS (the manifest"
            " of the documents served)"
        )
    if registration is None:
        registration = reader.environ.get("GATEWAY_ENV", "").strip() != "production"
    return {
        "trusted_documents": manifest,
        "only_trusted_documents": only_trusted,
        "apq_registration": registration,
    }


def _manifest(raw: str) -> Path:
    if not Path(raw).is_file():
        raise ValueError(f"{raw} is not a file (a JSON manifest of trusted documents)")
    return Path(raw)


def _flag(raw: str) -> bool:
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _read_flow(reader: _Reader) -> dict[str, Any]:
    return {
        "public_url": reader.optional("GATEWAY_PUBLIC_URL", _http_url),
        "idempotency_window": reader.optional("GATEWAY_IDEMPOTENCY_WINDOW", _duration),
        "starts_per_key": reader.optional("GATEWAY_STARTS_PER_KEY", _rate),
        "starts_per_recipient": reader.optional("GATEWAY_STARTS_PER_RECIPIENT", _rate),
        "ttl_list": reader.optional("GATEWAY_CACHE_TTL_LIST", _duration),
        "watch_interval": reader.optional("GATEWAY_WATCH_INTERVAL", _seconds),
        "watch_max_interval": reader.optional("GATEWAY_WATCH_MAX_INTERVAL", _seconds),
        "callback_subaccounts": reader.optional("PLIVO_CALLBACK_SUBACCOUNTS", _subaccounts),
        "callback_replay_window": reader.optional("GATEWAY_CALLBACK_REPLAY_WINDOW", _duration),
        "validations_per_session": reader.optional("GATEWAY_VALIDATIONS_PER_SESSION", _rate),
        "validations_per_key": reader.optional("GATEWAY_VALIDATIONS_PER_KEY", _rate),
        "recipient_secret": reader.optional("GATEWAY_RECIPIENT_SECRET", _secret),
    }


def _subaccounts(raw: str) -> tuple[tuple[str, str], ...]:
    """`SA...:token` pairs, comma-separated: subaccounts whose callbacks are accepted."""
    pairs = []
    for entry in (e.strip() for e in raw.split(",")):
        auth_id, _, token = entry.partition(":")
        if not AUTH_ID_PATTERN.fullmatch(auth_id) or not token:
            raise ValueError(
                "entries must be AUTH_ID:AUTH_TOKEN (MA or SA and 18 capitals or digits)"
            )
        pairs.append((auth_id, token))
    return tuple(pairs)


def _secret(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters (a random secret, shared by the fleet)")
    return raw


def _rate(raw: str) -> tuple[int, float]:
    count, _, seconds = raw.partition("/")
    try:
        window = float(seconds)
    except ValueError:
        window = -1.0
    if not count.isdigit() or int(count) < 1 or not 0 < window <= 86_400:
        raise ValueError("must be COUNT/SECONDS, like 30/60 (at least 1, a window up to a day)")
    return int(count), window


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """`name:sha256hex:scope+scope` entries, separated by commas or new lines; # comments."""
    keys = []
    for raw in re.split(r"[,\n]", text):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        digest, _, scopes = rest.partition(":")
        wanted = frozenset(s for s in scopes.split("+") if s)
        if not _KEY_NAME.fullmatch(name) or not _SHA256.fullmatch(digest.lower()):
            raise ValueError("entries must be name:sha256-hex:scopes (a 64-digit hex digest)")
        if not wanted or not wanted <= set(SCOPES):
            raise ValueError(f"scopes must be joined with + from {', '.join(SCOPES)}")
        keys.append(ApiKey(name, digest.lower(), wanted))
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise ValueError("names a key twice")
    return tuple(keys)


def _api_keys(raw: str) -> tuple[ApiKey, ...]:
    return parse_api_keys(raw)


def _api_keys_file(raw: str) -> tuple[ApiKey, ...]:
    try:
        text = Path(raw).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__})") from exc
    return parse_api_keys(text)


def _auth_mode(raw: str) -> Literal["keys", "none"]:
    if raw == "none":
        return "none"
    if raw == "keys":
        return "keys"
    raise ValueError("must be keys or none")


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError("must be origins like https://app.example.com, comma-separated")
    return origins


def _upstream_client(raw: str) -> UpstreamClient:
    for name in UPSTREAM_CLIENTS:
        if raw == name:
            return name
    raise ValueError("must be aiohttp, httpx or lean")


def _log_format(raw: str) -> Literal["json", "text"]:
    if raw == "json":
        return "json"
    if raw == "text":
        return "text"
    raise ValueError("must be json or text")


class _Reader:
    """Reads variables one by one, remembering every problem instead of stopping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def required(self, name: str, parse: Callable[[str], T]) -> T | None:
        if not self.environ.get(name, "").strip():
            self.problems.append(f"{name} is not set")
            return None
        return self.optional(name, parse)

    def optional(self, name: str, parse: Callable[[str], T]) -> T | None:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return None
        try:
            return parse(raw.strip())
        except ValueError as exc:
            self.problems.append(f"{name} {exc}")
            return None


def _auth_id(raw: str) -> str:
    if not AUTH_ID_PATTERN.fullmatch(raw):
        raise ValueError("must be a Plivo auth id: MA or SA followed by 18 capitals or digits")
    return raw


def _non_empty(raw: str) -> str:
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, a fragment or credentials")
    return raw.rstrip("/")


def port_number(raw: str) -> int:
    """A TCP port, 1 to 65535 (the environment's and the command line's)."""
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return int(raw)


def _environment(raw: str) -> Environment:
    if raw == "development":
        return "development"
    if raw == "production":
        return "production"
    raise ValueError("must be development or production")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise ValueError("must be a number of seconds above 0 and at most 600")
    return value


def _cache_url(raw: str) -> str:
    parts = urlsplit(raw)
    if raw in ("memory", "none"):
        return raw
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("must be memory, none, or a redis:// or rediss:// URL with a host")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError("must name the Redis database by number (redis://host:6379/0)")
    try:
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError as exc:
        raise ValueError("has a malformed port") from exc
    return raw


def _key_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", raw):
        raise ValueError("must be 1 to 64 letters, digits, '_', '.' or '-'")
    return raw


def positive_int(raw: str) -> int:
    """A whole number of at least 1."""
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("must be a whole number of at least 1")
    return int(raw)


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ValueError("must be a fraction above 0 and at most 1, like 0.5")
    return value


def _count(raw: str) -> int:
    if not raw.isdigit():
        raise ValueError("must be a whole number (0 turns it off)")
    return int(raw)


def _duration(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400 * 7:
        raise ValueError("must be a number of seconds from 0 to 604800")
    return value


def _log_level(raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return raw.upper()
