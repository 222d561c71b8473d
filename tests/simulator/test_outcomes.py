"""A validation ends as one of Plivo's outcomes whatever the session's origin, and a fresh
simulator lists sessions of the last hours (Plivo lists the last 24 hours by default)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from plivo import exceptions

from gateway import fixtures
from gateway.plivo.flow import ValidationResult, failed_validation
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.seed import (
    RECENT_EXPIRED,
    RECENT_IN_PROGRESS,
    RECENT_VERIFIED,
    recent_sessions,
    seed_sessions,
)
from gateway.simulator.verify import EXPIRED, NOT_OPEN, VERIFIED_ALREADY
from tests.conftest import AUTH_ID, AUTH_TOKEN, gateway_client, make_settings
from tests.servers import serve_in_thread
from tests.simulator.test_flow_simulator import code_of, sdk_for

DOCS = fixtures.DOCS_EXAMPLE_UUID  # seeded "Expired", no code of it known here
PY_SDK_EXPIRED = "5c533d15-1975-4f20-80be-40174142ea37"
PY_SDK_VERIFIED = "8901ba19-a299-4532-9df7-4edb53bcca4e"
VALIDATE = """mutation Check($uuid: ID!, $otp: String!) {
  validateSession(uuid: $uuid, otp: $otp) { result session { status } }
}"""
LIST = """{ sessions(first: 20) {
  edges { node { sessionUuid status count attempts { channel charge } charges { totalCharge } } }
} }"""


def serve(code_expiry: float = 600.0) -> Iterator[str]:
    settings = SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True, code_expiry=code_expiry)
    with serve_in_thread(create_simulator(settings)) as url:
        yield url


@pytest.fixture
def sim() -> Iterator[str]:
    yield from serve()


@pytest.fixture
def quick_sim() -> Iterator[str]:
    """Codes expire at once: a started session is expired at its next request."""
    yield from serve(code_expiry=0.0)


def call(url: str, method: str, uuid: str = "", **kw: object) -> httpx.Response:
    path = f"/v1/Account/{AUTH_ID}/Verify/Session/" + (f"{uuid}/" if uuid else "")
    return httpx.request(method, url + path, auth=(AUTH_ID, AUTH_TOKEN), timeout=5.0, **kw)  # type: ignore[arg-type]


def validate(url: str, uuid: str, otp: str = "123456") -> httpx.Response:
    return call(url, "POST", uuid, json={"otp": otp})


# --- validating an ended session ------------------------------------------------------------


@pytest.mark.parametrize("uuid", [DOCS, PY_SDK_EXPIRED, RECENT_EXPIRED])
def test_validating_a_seeded_expired_session_answers_expired(sim: str, uuid: str) -> None:
    answer = validate(sim, uuid)
    assert answer.status_code == 400
    assert answer.json()["error"] == EXPIRED
    assert failed_validation(answer.json()["error"]) is ValidationResult.EXPIRED


def test_validating_a_started_session_past_its_expiry_answers_expired(quick_sim: str) -> None:
    started = call(quick_sim, "POST", json={"recipient": "919999000701"}).json()["session_uuid"]
    code = code_of(quick_sim, started)
    answer = validate(quick_sim, started, code)  # the right code, too late
    assert (answer.status_code, answer.json()["error"]) == (400, EXPIRED)
    assert call(quick_sim, "GET", started).json()["status"] == "expired"


def test_a_verified_session_validated_again_is_refused_as_already_verified(
    sim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = sdk_for(sim, monkeypatch)
    created = sdk.verify_session.create(recipient="919999000702")
    code = code_of(sim, created.session_uuid)
    assert sdk.verify_session.validate(created.session_uuid, code).message == (
        "session validated successfully."
    )
    for otp in (code, "000000"):  # the right code or another: the same answer
        with pytest.raises(exceptions.ValidationError, match=f"^{VERIFIED_ALREADY}$"):
            sdk.verify_session.validate(created.session_uuid, otp)
    after = sdk.verify_session.get(created.session_uuid)
    assert (after.status, after.charges["validation_charge"]) == ("verified", "0.0500")


@pytest.mark.parametrize("uuid", [PY_SDK_VERIFIED, RECENT_VERIFIED])
def test_validating_a_seeded_verified_session_answers_already_verified(sim: str, uuid: str) -> None:
    answer = validate(sim, uuid)
    assert answer.status_code == 400
    assert set(answer.json()) == {"api_id", "error"}
    assert answer.json()["error"] == VERIFIED_ALREADY
    # The gateway reads it as ALREADY_VERIFIED, and for none of the other outcomes.
    assert failed_validation(VERIFIED_ALREADY) is ValidationResult.ALREADY_VERIFIED


def test_a_seeded_in_progress_session_without_a_code_here_is_not_open(sim: str) -> None:
    old = sorted(u for u, body in seed_sessions().items() if body["status"] == "in-progress")
    answer = validate(sim, old[0])
    assert (answer.status_code, answer.json()["error"]) == (400, NOT_OPEN)
    assert failed_validation(NOT_OPEN) is None


async def test_the_gateway_answers_expired_for_the_readme_session(sim: str) -> None:
    async with gateway_client(make_settings(sim)) as gw:
        answer = await gw.post(
            "/graphql", json={"query": VALIDATE, "variables": {"uuid": DOCS, "otp": "123456"}}
        )
    body = answer.json()
    assert body.get("errors") is None, body
    assert body["data"]["validateSession"] == {
        "result": "EXPIRED",
        "session": {"status": "EXPIRED"},
    }


# --- recent sessions --------------------------------------------------------------------------


async def test_a_fresh_simulator_lists_a_recent_session_in_every_status(sim: str) -> None:
    async with gateway_client(make_settings(sim)) as gw:
        answer = await gw.post("/graphql", json={"query": LIST})
    body = answer.json()
    assert body.get("errors") is None, body
    nodes = [edge["node"] for edge in body["data"]["sessions"]["edges"]]
    assert [(n["sessionUuid"], n["status"]) for n in nodes] == [  # newest first
        (RECENT_IN_PROGRESS, "IN_PROGRESS"),
        (RECENT_EXPIRED, "EXPIRED"),
        (RECENT_VERIFIED, "VERIFIED"),
    ]
    assert [n["charges"]["totalCharge"] for n in nodes] == ["0.00500", "0.01000", "0.05500"]
    assert [[a["channel"] for a in n["attempts"]] for n in nodes] == [
        ["SMS"],
        ["SMS", "VOICE"],
        ["SMS"],
    ]


def test_recent_sessions_are_dated_from_the_start_and_their_charges_add_up() -> None:
    start = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    sessions = recent_sessions(start)
    assert sorted(str(s["status"]) for s in sessions.values()) == [
        "expired",
        "in-progress",
        "verified",
    ]
    for body in sessions.values():
        times = [str(body["created_at"]), str(body["updated_at"])]
        times += [str(a["time"]) for a in body["attempt_details"]]  # type: ignore[attr-defined]
        for text in times:
            assert start - timedelta(hours=24) < datetime.fromisoformat(text) <= start
        assert str(body["created_at"]) <= str(body["updated_at"])
        charges = body["charges"]
        assert isinstance(charges, dict)
        items = charges["attempt_charges"]
        assert body["count"] == len(items) == len(body["attempt_details"])  # type: ignore[arg-type]
        total = Decimal(charges["validation_charge"]) + sum(Decimal(c["charge"]) for c in items)
        assert Decimal(charges["total_charge"]) == total
        assert body["channel"] == body["attempt_details"][-1]["channel"]  # type: ignore[index]
    assert sessions == recent_sessions(start)  # deterministic but for the start


def test_the_docs_example_stays_as_plivo_printed_it(sim: str) -> None:
    answer = call(sim, "GET", DOCS)
    assert answer.json() == fixtures.load("get-docs-example")


def test_the_recent_in_progress_session_verifies_with_its_code(sim: str) -> None:
    code = code_of(sim, RECENT_IN_PROGRESS)
    assert validate(sim, RECENT_IN_PROGRESS, code).status_code == 200
    body = call(sim, "GET", RECENT_IN_PROGRESS).json()
    assert body["status"] == "verified"
    assert body["charges"]["total_charge"] == "0.05500"


def test_the_recent_in_progress_session_expires_as_a_started_one_does(quick_sim: str) -> None:
    assert call(quick_sim, "GET", RECENT_IN_PROGRESS).json()["status"] == "expired"
    assert validate(quick_sim, RECENT_IN_PROGRESS).json()["error"] == EXPIRED
