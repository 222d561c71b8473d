"""The tolerant reader: what it accepts, and what makes a body unreadable."""

from __future__ import annotations

import copy
import logging
from decimal import Decimal

import pytest

from gateway import fixtures
from gateway.errors import InvalidSessionUuid
from gateway.plivo.models import (
    Channel,
    MalformedSession,
    SessionStatus,
    canonical_session_uuid,
    parse_session,
)


def docs_example() -> dict[str, object]:
    body = fixtures.load("get-docs-example")
    assert isinstance(body, dict)
    return copy.deepcopy(body)


def test_canonical_uuid_is_lowercased() -> None:
    assert (
        canonical_session_uuid("60EA68DB-B123-46D9-9EB2-1201D516DBBD") == fixtures.DOCS_EXAMPLE_UUID
    )


@pytest.mark.parametrize("text", ["nope", "60ea68db-b123-46d9-9eb2-1201d516dbbd ", "g" * 36])
def test_non_canonical_uuid_is_refused(text: str) -> None:
    with pytest.raises(InvalidSessionUuid) as caught:
        canonical_session_uuid(text)
    assert text not in str(caught.value)


def test_attempt_charges_are_joined_and_kept_exact() -> None:
    session = parse_session(docs_example())
    assert [a.charge for a in session.attempts] == [
        Decimal("0.03300"),
        Decimal("0.08000"),
        Decimal("0.00000"),
    ]
    assert str(session.attempts[0].charge) == "0.03300"
    assert session.status is SessionStatus.EXPIRED
    assert session.status.is_terminal


def test_unknown_enum_values_become_unknown_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = docs_example()
    body["status"] = "paused-for-lunch"
    body["channel"] = "whatsapp"
    with caplog.at_level(logging.WARNING):
        first = parse_session(body)
        parse_session(body)
    assert first.status is SessionStatus.UNKNOWN
    assert not first.status.is_terminal
    assert first.channel is Channel.UNKNOWN
    assert caplog.text.count("paused-for-lunch") == 1


def test_count_defaults_to_the_number_of_attempts_and_reads_digits() -> None:
    body = docs_example()
    del body["count"]
    assert parse_session(body).count == 3
    body["count"] = "7"
    assert parse_session(body).count == 7


def test_money_sent_as_numbers_is_read_without_floats() -> None:
    body = docs_example()
    body["charges"] = {
        "total_charge": 0,
        "validation_charge": Decimal("0.05"),
        "attempt_charges": None,
    }
    charges = parse_session(body).charges
    assert charges.total_charge == Decimal(0)
    assert charges.validation_charge == Decimal("0.05")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("session_uuid", None),
        ("recipient", ""),
        ("recipient", ["x"]),
        ("created_at", "yesterday"),
        ("created_at", "2023-13-01T00:00:00Z"),
        ("updated_at", "2023-06-01T08:52:39"),
        ("charges", None),
        ("charges", {"total_charge": "abc", "validation_charge": "0"}),
        ("charges", {"total_charge": "NaN", "validation_charge": "0"}),
        ("charges", {"total_charge": True, "validation_charge": "0"}),
        ("attempt_details", {"not": "a list"}),
        ("attempt_details", ["not an object"]),
        ("count", -1.5),
    ],
)
def test_unreadable_sessions_raise_malformed(key: str, value: object) -> None:
    body = docs_example()
    body[key] = value
    with pytest.raises(MalformedSession):
        parse_session(body)


def test_a_non_object_is_malformed() -> None:
    with pytest.raises(MalformedSession):
        parse_session(["not", "a", "session"])


def test_every_fixture_and_seeded_session_survives_dump_and_parse() -> None:
    from gateway.plivo.models import dump_session
    from gateway.simulator.seed import seed_sessions

    for body in seed_sessions().values():
        session = parse_session(body)
        assert parse_session(dump_session(session)) == session


def test_money_sent_as_json_numbers_keeps_its_shortest_text() -> None:
    body = docs_example()
    body["charges"] = {"total_charge": 0.113, "validation_charge": 0, "attempt_charges": None}
    charges = parse_session(body).charges
    assert str(charges.total_charge) == "0.113"
    assert charges.validation_charge == Decimal(0)
