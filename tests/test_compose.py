"""compose.yaml: the gateway, the simulator and Redis, read without a Docker engine."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import Settings
from gateway.simulator.verify import is_loopback

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)")
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.given = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.given[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.given)

    def __len__(self) -> int:
        return len(self.given)


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def service(name: str) -> dict[str, Any]:
    found = compose()["services"][name]
    assert isinstance(found, dict)
    return found


def environment(name: str) -> dict[str, str]:
    """A service's environment as the container sees it (a mapping or a KEY=VALUE list)."""
    raw = service(name).get("environment", {})
    pairs = (item.split("=", 1) for item in raw) if isinstance(raw, list) else raw.items()
    return {str(key): str(value) for key, value in pairs}


def gateway_settings() -> Settings:
    return Settings.from_env(environment("gateway"))


def seconds(duration: str) -> float:
    """A compose duration (15s, 1m30s, 500ms) in seconds."""
    parts = DURATION.findall(duration)
    assert "".join(f"{n}{unit}" for n, unit in parts) == duration, duration
    return sum(float(n) * UNITS[unit] for n, unit in parts)


def health_test(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_services_are_the_gateway_the_simulator_and_redis() -> None:
    assert set(compose()["services"]) == {"gateway", "simulator", "redis"}


def test_gateway_is_built_here_and_published_on_8000() -> None:
    gateway = service("gateway")
    assert gateway["build"] in (".", {"context": "."})
    assert "8000:8000" in gateway["ports"]


def test_gateway_runs_in_production_with_its_state_in_redis() -> None:
    settings = gateway_settings()
    assert settings.is_production
    assert settings.cache_url == "redis://redis:6379/0"
    assert "redis" in service("gateway")["depends_on"]


def test_every_gateway_variable_is_one_the_gateway_reads() -> None:
    given = environment("gateway")
    recorder = RecordingEnviron(given)
    Settings.from_env(recorder)  # no ConfigError: every value is valid
    assert sorted(set(given) - recorder.read) == []


def test_gateway_needs_no_plivo_account() -> None:
    assert urlsplit(gateway_settings().plivo_api_url).hostname in ("127.0.0.1", "simulator")


def test_simulator_runs_the_same_image_with_the_gateways_credential() -> None:
    simulator, gateway = service("simulator"), service("gateway")
    assert simulator["image"] == gateway["image"]
    assert simulator["command"][:2] == ["plivo-gateway", "simulate"]
    settings = gateway_settings()
    sim_env = environment("simulator")
    assert (sim_env["PLIVO_AUTH_ID"], sim_env["PLIVO_AUTH_TOKEN"]) == (
        settings.plivo_auth_id,
        settings.plivo_auth_token,
    )


def test_gateway_calls_the_simulator_where_it_listens() -> None:
    command = service("simulator")["command"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    upstream = urlsplit(gateway_settings().plivo_api_url)
    assert upstream.port == port
    if upstream.hostname == "127.0.0.1":  # then the simulator shares the gateway's network
        assert service("simulator")["network_mode"] == "service:gateway"


def test_simulator_calls_back_where_the_gateway_listens() -> None:
    """The simulator posts callbacks to loopback addresses only: the gateway is there."""
    public_url = gateway_settings().public_url
    assert public_url is not None
    assert is_loopback(public_url)
    assert service("simulator")["network_mode"] == "service:gateway"
    assert urlsplit(public_url).port == 8000


def test_demo_api_key_matches_the_digest_the_gateway_holds() -> None:
    key = compose()["x-demo-api-key"]
    (api_key,) = gateway_settings().api_keys
    assert hashlib.sha256(key.encode()).hexdigest() == api_key.sha256
    assert api_key.scopes == {"read", "write"}
    assert key in (ROOT / "compose.yaml").read_text().split("x-demo-api-key")[0]  # documented


def test_stop_grace_period_outlasts_the_shutdown_grace() -> None:
    grace = gateway_settings().shutdown_grace
    assert seconds(service("gateway")["stop_grace_period"]) > grace


@pytest.mark.parametrize(("duration", "expected"), [("15s", 15.0), ("1m30s", 90.0)])
def test_compose_durations_are_read(duration: str, expected: float) -> None:
    assert seconds(duration) == expected


def test_gateway_healthcheck_calls_healthz() -> None:
    test = health_test("gateway")
    assert "CMD" in test
    assert "/healthz" in test


def test_simulator_has_a_healthcheck_of_its_own() -> None:
    """The image's check asks GATEWAY_PORT's /healthz, which the simulator does not serve."""
    assert ":8001/__simulator/" in health_test("simulator")


def test_redis_is_the_official_image_without_persistence() -> None:
    redis = service("redis")
    assert re.fullmatch(r"redis:[\w.-]+", redis["image"])
    command = redis["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
