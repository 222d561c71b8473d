"""The simulator answers like Plivo: paths, auth, errors, knobs and counters."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.applications import Starlette

from gateway import fixtures
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.seed import STATUSES, seed_sessions
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator
from tests.servers import serve_in_thread

UUID = fixtures.DOCS_EXAMPLE_UUID


def session_url(simulator: Simulator, uuid: str = UUID, auth_id: str = AUTH_ID) -> str:
    return f"{simulator.url}/v1/Account/{auth_id}/Verify/Session/{uuid}/"


def get(
    url: str, *, auth: tuple[str, str] | None = (AUTH_ID, AUTH_TOKEN), **kw: object
) -> httpx.Response:
    return httpx.get(url, auth=auth, timeout=5.0, **kw)  # type: ignore[arg-type]


def test_seeded_fixture_is_served_as_plivo_sent_it(simulator: Simulator) -> None:
    response = get(session_url(simulator))
    assert response.status_code == 200
    assert response.json() == fixtures.load("get-docs-example")


def test_seed_has_every_fixture_and_generated_sessions_in_every_status() -> None:
    sessions = seed_sessions()
    for body in fixtures.session_fixtures().values():
        assert str(body["session_uuid"]) in sessions
    statuses = {str(s["status"]).lower() for s in sessions.values()}
    assert set(STATUSES) <= statuses
    assert seed_sessions() == sessions  # deterministic


def test_generated_charges_add_up() -> None:
    from decimal import Decimal

    for body in seed_sessions().values():
        charges = body["charges"]
        assert isinstance(charges, dict)
        items = charges["attempt_charges"] or []
        total = Decimal(charges["validation_charge"]) + sum(Decimal(c["charge"]) for c in items)
        if body["session_uuid"] != UUID:  # the docs example rounds its total
            assert Decimal(charges["total_charge"]) == total


@pytest.mark.parametrize("auth", [None, (AUTH_ID, "wrong"), ("MAWRONGWRONGWRONGWRO", AUTH_TOKEN)])
def test_missing_or_wrong_credential_is_401_with_plivo_error_shape(
    simulator: Simulator, auth: tuple[str, str] | None
) -> None:
    response = get(session_url(simulator), auth=auth)
    assert response.status_code == 401
    assert set(response.json()) == {"api_id", "error"}


def test_credential_for_another_account_in_the_path_is_401(simulator: Simulator) -> None:
    response = get(session_url(simulator, auth_id="MAWRONGWRONGWRONGWRO"))
    assert response.status_code == 401


def test_unknown_session_is_404_with_plivo_error_shape(simulator: Simulator) -> None:
    response = get(session_url(simulator, "00000000-0000-4000-8000-000000000000"))
    assert response.status_code == 404
    assert set(response.json()) == {"api_id", "error"}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(simulator: Simulator, method: str) -> None:
    # GET reads a session and POST validates its code; Plivo has no update or delete.
    for url in (session_url(simulator), f"{simulator.url}/v1/Account/{AUTH_ID}/Verify/Session/"):
        response = httpx.request(method, url, auth=(AUTH_ID, AUTH_TOKEN))
        assert response.status_code == 405
        assert set(response.json()) == {"api_id", "error"}


def test_it_counts_what_it_served(simulator: Simulator) -> None:
    get(session_url(simulator))
    get(session_url(simulator))
    get(session_url(simulator), auth=None)
    stats = simulator.stats()
    assert stats["served"] == 3
    assert stats["by_status"] == {"200": 2, "401": 1}
    assert stats["by_session"] == {UUID: 3}
    assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 1)


def test_it_records_the_most_session_requests_served_at_once(simulator: Simulator) -> None:
    slow = {"X-Simulator-Latency-Ms": "1000"}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: get(session_url(simulator), headers=slow), range(3)))
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    stats = simulator.stats()
    assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 3)
    simulator.reset()
    assert simulator.stats()["peak_in_flight"] == 0


def test_queued_faults_play_once_each_and_only_for_their_session(simulator: Simulator) -> None:
    other = "5c533d15-1975-4f20-80be-40174142ea37"
    simulator.queue_fault("503", times=2, session_uuid=UUID)
    assert get(session_url(simulator, other)).status_code == 200
    assert get(session_url(simulator)).status_code == 503
    assert get(session_url(simulator)).status_code == 503
    assert get(session_url(simulator)).status_code == 200


def test_429_fault_sends_retry_after(simulator: Simulator) -> None:
    simulator.queue_fault("429", retry_after="12")
    response = get(session_url(simulator))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "12"


def test_garbage_fault_is_not_json(simulator: Simulator) -> None:
    simulator.queue_fault("garbage")
    response = get(session_url(simulator))
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_reset_fault_drops_the_connection(simulator: Simulator) -> None:
    simulator.queue_fault("reset")
    with pytest.raises(httpx.RemoteProtocolError):
        get(session_url(simulator))


def test_slow_fault_and_latency_delay_the_answer(simulator: Simulator) -> None:
    simulator.queue_fault("slow", delay_ms=2000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(session_url(simulator), auth=(AUTH_ID, AUTH_TOKEN), timeout=0.3)
    simulator.configure(latency_ms=2000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(session_url(simulator), auth=(AUTH_ID, AUTH_TOKEN), timeout=0.3)


def test_standing_fault_by_setting_applies_to_every_request(simulator: Simulator) -> None:
    simulator.configure(fault="500")
    assert get(session_url(simulator)).status_code == 500
    assert get(session_url(simulator)).status_code == 500
    simulator.configure(fault=None)
    assert get(session_url(simulator)).status_code == 200


def test_per_request_headers_pick_a_fault(simulator: Simulator) -> None:
    response = get(session_url(simulator), headers={"X-Simulator-Fault": "403"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"fault": "teapot"},
        {"fault": "200"},
        {"fault": "slow", "delay_ms": -1},
        {"fault": "503", "times": "many"},
    ],
)
def test_bad_fault_requests_are_400(simulator: Simulator, body: dict[str, object]) -> None:
    with simulator.admin() as client:
        assert client.post("/__simulator/faults", json=body).status_code == 400


def test_bad_admin_bodies_are_400(simulator: Simulator) -> None:
    with simulator.admin() as client:
        assert client.put("/__simulator/config", content=b"{nope").status_code == 400
        assert client.put("/__simulator/config", json=[1]).status_code == 400
        assert client.put("/__simulator/config", json={"latency_ms": -5}).status_code == 400


def test_standing_fault_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="fault must be"):
        create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, fault="sometimes"))


def test_settings_repr_hides_the_token() -> None:
    assert AUTH_TOKEN not in repr(SimulatorSettings(AUTH_ID, AUTH_TOKEN))


SUB_ID, SUB_TOKEN = "SAODZKMDFJMJU3MTEYNG", "sub-token"


@pytest.fixture(scope="module")
def bench_simulator() -> Iterator[Simulator]:
    settings = SimulatorSettings(
        AUTH_ID, AUTH_TOKEN, bench=True, extra_credentials=((SUB_ID, SUB_TOKEN),)
    )
    app: Starlette = create_simulator(settings)
    with serve_in_thread(app) as url:
        yield Simulator(url)


def test_bench_mode_answers_any_canonical_uuid(bench_simulator: Simulator) -> None:
    uuid = f"{random.getrandbits(32):08x}-1234-4abc-8def-{random.getrandbits(48):012x}"
    response = get(session_url(bench_simulator, uuid))
    assert response.status_code == 200
    body = response.json()
    assert body["session_uuid"] == uuid
    assert body["alias"] == AUTH_ID
    assert body["attempt_details"] == fixtures.load("get-docs-example")["attempt_details"]  # type: ignore[index]
    assert get(session_url(bench_simulator, "not-a-uuid")).status_code == 404


def test_extra_credentials_are_accepted_for_their_own_account(bench_simulator: Simulator) -> None:
    uuid = "11111111-2222-4333-8444-555555555555"
    own = get(session_url(bench_simulator, uuid, auth_id=SUB_ID), auth=(SUB_ID, SUB_TOKEN))
    assert own.status_code == 200
    assert own.json()["alias"] == SUB_ID
    crossed = get(session_url(bench_simulator, uuid, auth_id=AUTH_ID), auth=(SUB_ID, SUB_TOKEN))
    assert crossed.status_code == 401
