"""End to end: the real `plivo-gateway serve` and `plivo-gateway simulate` processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway import fixtures
from gateway.operations.principals import key_digest
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator
from tests.servers import free_port, process, wait_for_http

pytestmark = pytest.mark.e2e
API_KEY = "e2e-key-0123456789"


def test_serve_in_front_of_simulate_over_http(tmp_path: Path) -> None:
    sim_port, gateway_port = free_port(), free_port()
    credential = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    with (
        process("simulate", "--port", str(sim_port), env=credential, log=tmp_path / "sim.log"),
        process(
            "serve",
            "--port",
            str(gateway_port),
            env=credential
            | {
                "PLIVO_API_URL": f"http://127.0.0.1:{sim_port}",
                "GATEWAY_API_KEYS": f"e2e:{key_digest(API_KEY)}:read",
            },
            log=tmp_path / "gateway.log",
        ),
    ):
        wait_for_http(f"http://127.0.0.1:{sim_port}/__simulator/stats")
        wait_for_http(f"http://127.0.0.1:{gateway_port}/healthz")
        query = "query S($uuid: ID!) { session(uuid: $uuid) "
        query += "{ sessionUuid status attempts { charge } } }"
        response = httpx.post(
            f"http://127.0.0.1:{gateway_port}/graphql",
            json={"query": query, "variables": {"uuid": fixtures.DOCS_EXAMPLE_UUID}},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        refused = httpx.post(f"http://127.0.0.1:{gateway_port}/graphql", json={"query": query})
        stats = httpx.get(f"http://127.0.0.1:{sim_port}/__simulator/stats").json()
    assert refused.status_code == 401
    assert response.status_code == 200
    assert response.json()["data"] == {
        "session": {
            "sessionUuid": fixtures.DOCS_EXAMPLE_UUID,
            "status": "EXPIRED",
            "attempts": [{"charge": "0.03300"}, {"charge": "0.08000"}, {"charge": "0.00000"}],
        }
    }
    assert stats["by_session"] == {fixtures.DOCS_EXAMPLE_UUID: 1}


def test_serve_with_two_workers_sharing_redis_answers(tmp_path: Path, simulator: Simulator) -> None:
    from tests.redis_server import require_shared_redis, unique_prefix

    port = free_port()
    env = {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": simulator.url,
        "GATEWAY_AUTH": "none",
        "GATEWAY_CACHE_URL": require_shared_redis(),
        "GATEWAY_CACHE_PREFIX": unique_prefix(),
    }
    args = ("serve", "--port", str(port), "--workers", "2")
    with process(*args, env=env, log=tmp_path / "gateway.log"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        response = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": f'{{ session(uuid: "{fixtures.DOCS_EXAMPLE_UUID}") {{ status }} }}'},
            timeout=10,
        )
    assert response.json()["data"] == {"session": {"status": "EXPIRED"}}
