"""Settings, read once from the environment at start-up.

Every problem is collected before anything fails, so one line can name them all.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from gateway.errors import ConfigError

AUTH_ID_PATTERN = re.compile(r"^(MA|SA)[A-Z0-9]{18}$")
Environment = Literal["development", "production"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
T = TypeVar("T")


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
    cache_url: str | None = field(default=None, repr=False)
    cache_prefix: str = "pvg"
    cache_max_entries: int = 10_000
    cache_timeout: float = 0.25
    ttl_terminal: float = 3600.0
    ttl_in_progress: float = 2.0
    ttl_not_found: float = 5.0
    stale_while_revalidate: float = 10.0
    stale_if_error: float = 300.0

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
            "port": reader.optional("GATEWAY_PORT", _port),
            "env": reader.optional("GATEWAY_ENV", _environment),
            "connect_timeout": reader.optional("PLIVO_CONNECT_TIMEOUT", _seconds),
            "read_timeout": reader.optional("PLIVO_READ_TIMEOUT", _seconds),
            "log_level": reader.optional("GATEWAY_LOG_LEVEL", _log_level),
            "graphiql_assets": reader.optional("GATEWAY_GRAPHIQL_ASSETS", _non_empty),
            "cache_url": reader.optional("GATEWAY_CACHE_URL", _cache_url),
            "cache_prefix": reader.optional("GATEWAY_CACHE_PREFIX", _key_prefix),
            "cache_max_entries": reader.optional("GATEWAY_CACHE_MAX_ENTRIES", _positive_int),
            "cache_timeout": reader.optional("GATEWAY_CACHE_TIMEOUT", _seconds),
            "ttl_terminal": reader.optional("GATEWAY_CACHE_TTL_TERMINAL", _duration),
            "ttl_in_progress": reader.optional("GATEWAY_CACHE_TTL_IN_PROGRESS", _duration),
            "ttl_not_found": reader.optional("GATEWAY_CACHE_TTL_NOT_FOUND", _duration),
            "stale_while_revalidate": reader.optional(
                "GATEWAY_CACHE_STALE_WHILE_REVALIDATE", _duration
            ),
            "stale_if_error": reader.optional("GATEWAY_CACHE_STALE_IF_ERROR", _duration),
        }
        if reader.problems:
            raise ConfigError(reader.problems)
        assert auth_id is not None
        assert token is not None
        given = {name: value for name, value in settings.items() if value is not None}
        return dataclasses.replace(cls(plivo_auth_id=auth_id, plivo_auth_token=token), **given)


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


def _port(raw: str) -> int:
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


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("must be a whole number of at least 1")
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
