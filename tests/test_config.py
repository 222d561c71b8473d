"""Settings from the environment: defaults, validation, every problem named at once."""

from __future__ import annotations

import pytest

from gateway.config import Settings
from gateway.errors import ConfigError

VALID = {"PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG", "PLIVO_AUTH_TOKEN": "tok", "GATEWAY_AUTH": "none"}


def test_defaults() -> None:
    settings = Settings.from_env(VALID)
    assert settings.plivo_api_url == "https://api.plivo.com"
    assert (settings.host, settings.port, settings.env) == ("127.0.0.1", 8000, "development")
    assert not settings.is_production
    assert settings.connect_timeout > 0
    assert settings.read_timeout > 0
    assert settings.upstream_client == "lean"


def test_every_setting_is_read() -> None:
    settings = Settings.from_env(
        VALID
        | {
            "PLIVO_API_URL": "http://127.0.0.1:8001/",
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": "9000",
            "GATEWAY_ENV": "production",
            "PLIVO_CONNECT_TIMEOUT": "0.5",
            "PLIVO_READ_TIMEOUT": "4",
            "GATEWAY_LOG_LEVEL": "debug",
            "GATEWAY_GRAPHIQL_ASSETS": "/srv/assets",
        }
    )
    assert settings.plivo_api_url == "http://127.0.0.1:8001"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.is_production
    assert (settings.connect_timeout, settings.read_timeout) == (0.5, 4.0)
    assert settings.log_level == "DEBUG"
    assert settings.graphiql_assets == "/srv/assets"


@pytest.mark.parametrize("client", ["aiohttp", "httpx", "lean"])
def test_every_upstream_client_can_be_chosen(client: str) -> None:
    assert Settings.from_env(VALID | {"PLIVO_HTTP_CLIENT": client}).upstream_client == client


def test_subaccount_ids_are_accepted() -> None:
    assert Settings.from_env(
        VALID | {"PLIVO_AUTH_ID": "SAODZKMDFJMJU3MTEYNG"}
    ).plivo_auth_id.startswith("SA")


def test_the_token_never_shows_in_repr() -> None:
    assert "zzz-secret" not in repr(Settings.from_env(VALID | {"PLIVO_AUTH_TOKEN": "zzz-secret"}))


def test_missing_required_settings_are_all_named() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GATEWAY_AUTH": "none"})
    assert caught.value.problems == ["PLIVO_AUTH_ID is not set", "PLIVO_AUTH_TOKEN is not set"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLIVO_AUTH_ID", "MA123"),
        ("PLIVO_AUTH_ID", "maodzkmdfjmju3mteyng"),
        ("PLIVO_AUTH_ID", "XAODZKMDFJMJU3MTEYNG"),
        ("PLIVO_API_URL", "ftp://example.com"),
        ("PLIVO_API_URL", "https://user:pw@example.com"),
        ("PLIVO_API_URL", "https://example.com/?q=1"),
        ("PLIVO_API_URL", "not a url"),
        ("GATEWAY_PORT", "0"),
        ("GATEWAY_PORT", "70000"),
        ("GATEWAY_PORT", "http"),
        ("GATEWAY_ENV", "staging"),
        ("PLIVO_READ_TIMEOUT", "0"),
        ("PLIVO_READ_TIMEOUT", "nan"),
        ("PLIVO_CONNECT_TIMEOUT", "-1"),
        ("GATEWAY_LOG_LEVEL", "chatty"),
        ("PLIVO_HTTP_CLIENT", "curl"),
        ("PLIVO_HTTP_CLIENT", "Lean"),
    ],
)
def test_malformed_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(VALID | {name: value})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{name} ")


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "PLIVO_AUTH_ID": "bad",
                "GATEWAY_PORT": "x",
                "GATEWAY_ENV": "qa",
                "GATEWAY_AUTH": "none",
            }
        )
    names = [problem.split()[0] for problem in caught.value.problems]
    assert names == ["PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN", "GATEWAY_PORT", "GATEWAY_ENV"]


def test_cache_settings() -> None:
    settings = Settings.from_env(
        VALID
        | {
            "GATEWAY_CACHE_URL": "rediss://:p%40ss@redis.internal:6380/2",
            "GATEWAY_CACHE_PREFIX": "prod-eu",
            "GATEWAY_CACHE_MAX_ENTRIES": "500",
            "GATEWAY_CACHE_TIMEOUT": "0.1",
            "GATEWAY_CACHE_TTL_TERMINAL": "60",
            "GATEWAY_CACHE_TTL_IN_PROGRESS": "1",
            "GATEWAY_CACHE_TTL_NOT_FOUND": "0",
            "GATEWAY_CACHE_STALE_WHILE_REVALIDATE": "3",
            "GATEWAY_CACHE_MAX_STALE": "30",
            "GATEWAY_CACHE_TTL_CALLBACKS": "90",
            "GATEWAY_KEY_BUDGET_SHARE": "0.25",
        }
    )
    assert settings.cache_url == "rediss://:p%40ss@redis.internal:6380/2"
    assert "p%40ss" not in repr(settings)
    assert (settings.cache_prefix, settings.cache_max_entries, settings.cache_timeout) == (
        "prod-eu",
        500,
        0.1,
    )
    assert (settings.ttl_terminal, settings.ttl_in_progress, settings.ttl_not_found) == (60, 1, 0)
    assert (settings.stale_while_revalidate, settings.max_stale) == (3, 30)
    assert (settings.callback_ttl, settings.key_budget_share) == (90, 0.25)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_CACHE_URL", "memcached://x"),
        ("GATEWAY_CACHE_URL", "redis://"),
        ("GATEWAY_CACHE_URL", "redis://host:6379/zero"),
        ("GATEWAY_CACHE_URL", "redis://:secretpw@host:port/0"),
        ("GATEWAY_CACHE_PREFIX", "has space"),
        ("GATEWAY_CACHE_MAX_ENTRIES", "0"),
        ("GATEWAY_CACHE_TTL_TERMINAL", "-1"),
        ("GATEWAY_CACHE_MAX_STALE", "forever"),
        ("GATEWAY_CACHE_STALE_IF_ERROR", "300"),
        ("GATEWAY_KEY_BUDGET_SHARE", "0"),
        ("GATEWAY_KEY_BUDGET_SHARE", "1.5"),
        ("GATEWAY_CACHE_TTL_CALLBACKS", "-5"),
    ],
)
def test_malformed_cache_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(VALID | {name: value})
    assert caught.value.problems[0].startswith(f"{name} ")
    assert "secretpw" not in caught.value.problems[0]


def test_flow_settings() -> None:
    settings = Settings.from_env(
        VALID
        | {
            "GATEWAY_PUBLIC_URL": "https://gw.example.com/",
            "GATEWAY_IDEMPOTENCY_WINDOW": "120",
            "GATEWAY_STARTS_PER_KEY": "100/60",
            "GATEWAY_STARTS_PER_RECIPIENT": "3/3600",
            "GATEWAY_CACHE_TTL_LIST": "0",
            "GATEWAY_WATCH_INTERVAL": "0.5",
            "GATEWAY_WATCH_MAX_INTERVAL": "30",
        }
    )
    assert settings.public_url == "https://gw.example.com"
    assert settings.idempotency_window == 120.0
    assert settings.starts_per_key == (100, 60.0)
    assert settings.starts_per_recipient == (3, 3600.0)
    assert (settings.ttl_list, settings.watch_interval, settings.watch_max_interval) == (
        0.0,
        0.5,
        30.0,
    )
    defaults = Settings.from_env(VALID)
    assert defaults.public_url is None
    assert (defaults.starts_per_key, defaults.starts_per_recipient) == ((30, 60.0), (5, 600.0))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_PUBLIC_URL", "gw.example.com"),
        ("GATEWAY_PUBLIC_URL", "https://gw.example.com/?x=1"),
        ("GATEWAY_STARTS_PER_KEY", "10"),
        ("GATEWAY_STARTS_PER_KEY", "0/60"),
        ("GATEWAY_STARTS_PER_RECIPIENT", "5/0"),
        ("GATEWAY_STARTS_PER_RECIPIENT", "five/60"),
        ("GATEWAY_IDEMPOTENCY_WINDOW", "-1"),
        ("GATEWAY_WATCH_INTERVAL", "0"),
    ],
)
def test_malformed_flow_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(VALID | {name: value})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{name} ")


CREDENTIAL = {"PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG", "PLIVO_AUTH_TOKEN": "tok"}
DIGEST = "0" * 64


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"GATEWAY_API_KEYS": "frontend:abc:read"}, "GATEWAY_API_KEYS entries must be"),
        ({"GATEWAY_API_KEYS": f"frontend:{DIGEST}:admin"}, "GATEWAY_API_KEYS scopes must be"),
        ({"GATEWAY_API_KEYS": f"a:{DIGEST}:read,a:{DIGEST}:read"}, "GATEWAY_API_KEYS names a"),
        ({"GATEWAY_API_KEYS_FILE": "/nonexistent/keys"}, "GATEWAY_API_KEYS_FILE cannot be read"),
        ({"GATEWAY_AUTH": "nope"}, "GATEWAY_AUTH must be keys or none"),
        ({"GATEWAY_AUTH": "keys", "GATEWAY_API_KEYS": "x:y:z"}, "GATEWAY_API_KEYS entries"),
        ({"GATEWAY_API_KEYS": "# only a comment"}, "GATEWAY_API_KEYS names no key: configure"),
    ],
)
def test_a_key_problem_is_named_alone(given: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(CREDENTIAL | given)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(problem)
    assert "is not set" not in str(caught.value)


def test_no_key_source_at_all_is_not_set() -> None:
    for auth in ({}, {"GATEWAY_AUTH": "keys"}):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(CREDENTIAL | auth)
        assert caught.value.problems == [
            "GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE) is not set: configure API keys,"
            " or set GATEWAY_AUTH=none to run without them"
        ]


def test_a_malformed_key_source_beside_a_good_one_is_still_named() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            CREDENTIAL
            | {"GATEWAY_API_KEYS": f"a:{DIGEST}:read", "GATEWAY_API_KEYS_FILE": "/nonexistent"}
        )
    assert caught.value.problems == ["GATEWAY_API_KEYS_FILE cannot be read (FileNotFoundError)"]
