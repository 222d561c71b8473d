"""Every session fixture comes back through the gateway with every field right."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from gateway import fixtures
from tests.conftest import graphql

FULL_SESSION = """
query Full($uuid: ID!) {
  session(uuid: $uuid) {
    sessionUuid apiId appUuid alias recipient channel status count locale requestorIp
    destinationCountryIso2 destinationNetwork createdAt updatedAt
    attempts { attemptUuid channel status time charge dtmf fraudCheck }
    charges { totalCharge validationCharge attemptCharges { attemptUuid channel charge } }
  }
}
"""
SESSIONS = fixtures.session_fixtures()


def expected_enum(value: object) -> str:
    """Plivo's wire value as the contract's enum name, read independently of the gateway."""
    text = str(value).lower()
    known = {"sms": "SMS", "voice": "VOICE", "in-progress": "IN_PROGRESS"}
    known |= {"verified": "VERIFIED", "expired": "EXPIRED"}
    return known.get(text, "UNKNOWN")


@pytest.mark.parametrize("name", sorted(SESSIONS))
async def test_every_fixture_session_comes_back_field_for_field(
    gateway: httpx.AsyncClient, name: str
) -> None:
    raw = SESSIONS[name]
    body = await graphql(gateway, FULL_SESSION, {"uuid": raw["session_uuid"]})
    assert "errors" not in body
    data = body["data"]
    assert isinstance(data, dict)
    got = data["session"]
    assert isinstance(got, dict)

    assert got["sessionUuid"] == raw["session_uuid"]
    if "api_id" in raw:
        assert got["apiId"] == raw["api_id"]
    else:  # list items carry none; the simulator gives the GET one, as Plivo does
        assert isinstance(got["apiId"], str)
        assert got["apiId"]
    for wire, field in [
        ("app_uuid", "appUuid"),
        ("alias", "alias"),
        ("recipient", "recipient"),
        ("count", "count"),
        ("locale", "locale"),
        ("requestor_ip", "requestorIp"),
        ("destination_country_iso2", "destinationCountryIso2"),
        ("destination_network", "destinationNetwork"),
        ("created_at", "createdAt"),
        ("updated_at", "updatedAt"),
    ]:
        assert got[field] == raw.get(wire), field
    assert got["channel"] == expected_enum(raw["channel"])
    assert got["status"] == expected_enum(raw["status"])
    check_charges(got["charges"], raw["charges"])
    check_attempts(got["attempts"], raw)


def check_charges(got: object, raw: object) -> None:
    assert isinstance(got, dict)
    assert isinstance(raw, dict)
    assert got["totalCharge"] == raw["total_charge"]
    assert got["validationCharge"] == raw["validation_charge"]
    wire_items = raw["attempt_charges"] or []
    assert got["attemptCharges"] == [
        {
            "attemptUuid": c["attempt_uuid"],
            "channel": expected_enum(c["channel"]),
            "charge": c["charge"],
        }
        for c in wire_items
    ]


def check_attempts(got: object, raw: dict[str, object]) -> None:
    assert isinstance(got, list)
    wire_attempts = raw["attempt_details"] or []
    assert isinstance(wire_attempts, list)
    charges = raw["charges"]
    assert isinstance(charges, dict)
    by_uuid = {c["attempt_uuid"]: c["charge"] for c in charges["attempt_charges"] or []}
    assert len(got) == len(wire_attempts)
    for attempt, wire in zip(got, wire_attempts, strict=True):
        uuid = wire.get("attempt_uuid")
        assert attempt == {
            "attemptUuid": uuid,
            "channel": expected_enum(wire["channel"]),
            "status": wire["status"],
            "time": wire["time"],
            "charge": by_uuid.get(uuid) if uuid else None,
            "dtmf": wire.get("dtmf"),
            "fraudCheck": wire.get("fraud_check"),
        }


async def test_null_lists_become_empty_lists(gateway: httpx.AsyncClient) -> None:
    raw = SESSIONS["get-go-sdk-null-attempts"]
    assert raw["attempt_details"] is None
    body = await graphql(gateway, FULL_SESSION, {"uuid": raw["session_uuid"]})
    session = body["data"]["session"]  # type: ignore[index]
    assert session["attempts"] == []
    assert session["charges"]["attemptCharges"] == []
    assert session["updatedAt"] == "0001-01-01T05:53:28+05:53"


async def test_capitalised_status_and_decimal_precision_survive(gateway: httpx.AsyncClient) -> None:
    body = await graphql(gateway, FULL_SESSION, {"uuid": fixtures.DOCS_EXAMPLE_UUID})
    session = body["data"]["session"]  # type: ignore[index]
    assert session["status"] == "EXPIRED"  # Plivo sent "Expired"
    assert [a["charge"] for a in session["attempts"]] == ["0.03300", "0.08000", "0.00000"]
    assert session["attempts"][2]["status"] == "early media"
    assert session["charges"]["totalCharge"] == "0.113"
    assert sum(Decimal(a["charge"]) for a in session["attempts"]) == Decimal("0.113")


async def test_attemp_uuid_typo_gives_null_uuid_and_charge(gateway: httpx.AsyncClient) -> None:
    raw = SESSIONS["list-go-sdk#1"]
    body = await graphql(gateway, FULL_SESSION, {"uuid": raw["session_uuid"]})
    assert "errors" not in body
    attempts = body["data"]["session"]["attempts"]  # type: ignore[index]
    assert attempts[0]["attemptUuid"] == "237bb45f-6238-40fc-a27e-355dbaa8ec02"
    assert attempts[1]["attemptUuid"] is None
    assert attempts[1]["charge"] is None
    assert attempts[1]["fraudCheck"] == "disabled"


async def test_mixed_utc_offsets_are_kept_as_sent(gateway: httpx.AsyncClient) -> None:
    raw = SESSIONS["list-python-sdk-verified-item"]
    body = await graphql(gateway, FULL_SESSION, {"uuid": raw["session_uuid"]})
    session = body["data"]["session"]  # type: ignore[index]
    assert session["createdAt"] == "2023-07-18T13:54:51.239489+05:30"
    assert session["status"] == "VERIFIED"
    docs = await graphql(gateway, FULL_SESSION, {"uuid": fixtures.DOCS_EXAMPLE_UUID})
    assert docs["data"]["session"]["createdAt"].endswith("Z")  # type: ignore[index]


async def test_uppercase_uuid_is_read_as_lowercase(gateway: httpx.AsyncClient) -> None:
    body = await graphql(gateway, FULL_SESSION, {"uuid": fixtures.DOCS_EXAMPLE_UUID.upper()})
    assert body["data"]["session"]["sessionUuid"] == fixtures.DOCS_EXAMPLE_UUID  # type: ignore[index]
