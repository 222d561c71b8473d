"""Frozen data parsed from Plivo's Verify Session JSON: no `Any` gets past this module.

A tolerant reader: casing varies, lists may be null, fixtures carry typos. What cannot be
read at all raises `MalformedSession`, which the client reports as an unreadable body.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from gateway.errors import InvalidSessionUuid

logger = logging.getLogger(__name__)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
TERMINAL_STATUSES = frozenset({"verified", "expired"})


class Channel(enum.Enum):
    """How a code was sent."""

    SMS = "sms"
    VOICE = "voice"
    UNKNOWN = "unknown"


class SessionStatus(enum.Enum):
    """Where a verification stands; verified and expired are terminal."""

    IN_PROGRESS = "in-progress"
    VERIFIED = "verified"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """A terminal session does not change any more."""
        return self.value in TERMINAL_STATUSES


class MalformedSession(ValueError):
    """The JSON is not a Verify session we can read; the message names the field, not values."""


@dataclass(frozen=True, slots=True)
class AttemptCharge:
    """What one attempt cost."""

    attempt_uuid: str
    channel: Channel
    charge: Decimal


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery of the code, joined with its charge."""

    attempt_uuid: str | None
    channel: Channel
    status: str
    time: str
    charge: Decimal | None
    dtmf: int | None
    fraud_check: str | None


@dataclass(frozen=True, slots=True)
class Charges:
    """The money a session cost, as Plivo's decimal strings."""

    total_charge: Decimal
    validation_charge: Decimal
    attempt_charges: tuple[AttemptCharge, ...]


@dataclass(frozen=True, slots=True)
class Session:
    """A Verify session with its attempts and charges."""

    api_id: str | None
    session_uuid: str
    app_uuid: str | None
    alias: str | None
    recipient: str
    channel: Channel
    status: SessionStatus
    count: int
    locale: str | None
    requestor_ip: str | None
    destination_country_iso2: str | None
    destination_network: str | None
    attempts: tuple[Attempt, ...]
    charges: Charges
    created_at: str
    updated_at: str


def canonical_session_uuid(text: str) -> str:
    """The lowercased uuid, or `InvalidSessionUuid` (which does not echo the text)."""
    if not isinstance(text, str) or not _UUID.fullmatch(text):
        raise InvalidSessionUuid()
    return text.lower()


def parse_session(payload: object) -> Session:
    """Read one session object (a get response or a list item)."""
    body = _object(payload, "session")
    charges = _parse_charges(body.get("charges"))
    by_attempt = {item.attempt_uuid: item.charge for item in charges.attempt_charges}
    attempts = tuple(_parse_attempt(item, by_attempt) for item in _list(body, "attempt_details"))
    return Session(
        api_id=_optional_str(body, "api_id"),
        session_uuid=_required_str(body, "session_uuid"),
        app_uuid=_optional_str(body, "app_uuid"),
        alias=_optional_str(body, "alias"),
        recipient=_required_str(body, "recipient"),
        channel=_channel(body.get("channel")),
        status=_status(body.get("status")),
        count=_count(body.get("count"), len(attempts)),
        locale=_optional_str(body, "locale"),
        requestor_ip=_optional_str(body, "requestor_ip"),
        destination_country_iso2=_optional_str(body, "destination_country_iso2"),
        destination_network=_optional_str(body, "destination_network"),
        attempts=attempts,
        charges=charges,
        created_at=_timestamp(body, "created_at"),
        updated_at=_timestamp(body, "updated_at"),
    )


def _parse_charges(payload: object) -> Charges:
    body = _object(payload, "charges")
    return Charges(
        total_charge=_money(body.get("total_charge"), "charges.total_charge"),
        validation_charge=_money(body.get("validation_charge"), "charges.validation_charge"),
        attempt_charges=tuple(
            _parse_attempt_charge(item) for item in _list(body, "attempt_charges")
        ),
    )


def _parse_attempt_charge(payload: object) -> AttemptCharge:
    body = _object(payload, "attempt_charges[]")
    return AttemptCharge(
        attempt_uuid=_required_str(body, "attempt_uuid"),
        channel=_channel(body.get("channel")),
        charge=_money(body.get("charge"), "attempt_charges[].charge"),
    )


def _parse_attempt(payload: object, charges: dict[str, Decimal]) -> Attempt:
    body = _object(payload, "attempt_details[]")
    attempt_uuid = _optional_str(body, "attempt_uuid")
    dtmf = body.get("dtmf")
    return Attempt(
        attempt_uuid=attempt_uuid,
        channel=_channel(body.get("channel")),
        status=_optional_str(body, "status") or "",
        time=_timestamp(body, "time"),
        charge=charges.get(attempt_uuid) if attempt_uuid else None,
        dtmf=_count(dtmf, None) if dtmf is not None else None,
        fraud_check=_optional_str(body, "fraud_check"),
    )


def _object(payload: object, name: str) -> dict[str, object]:
    if not isinstance(payload, dict):
        raise MalformedSession(f"{name} is not a JSON object")
    return payload


def _list(body: dict[str, object], key: str) -> list[object]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedSession(f"{key} is not a list")
    return value


def _optional_str(body: dict[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise MalformedSession(f"{key} is not a string")


def _required_str(body: dict[str, object], key: str) -> str:
    value = _optional_str(body, key)
    if not value:
        raise MalformedSession(f"{key} is missing")
    return value


def _timestamp(body: dict[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise MalformedSession(f"{key} is not an ISO 8601 time with an offset")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedSession(f"{key} is not a valid time") from exc
    return value


def _money(value: object, name: str) -> Decimal:
    if isinstance(value, float):  # a JSON number: its shortest repr is the text Plivo sent
        value = repr(value)
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise MalformedSession(f"{name} is not a decimal")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise MalformedSession(f"{name} is not a decimal") from exc
    if not amount.is_finite():
        raise MalformedSession(f"{name} is not a finite decimal")
    return amount


def _count(value: object, default: int | None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value is None and default is not None:
        return default
    raise MalformedSession("count or dtmf is not an integer")


_CHANNELS = {"sms": Channel.SMS, "voice": Channel.VOICE}
_STATUSES = {
    status.value: status
    for status in (SessionStatus.IN_PROGRESS, SessionStatus.VERIFIED, SessionStatus.EXPIRED)
}


def _channel(value: object) -> Channel:
    channel = _CHANNELS.get(value.lower()) if isinstance(value, str) else None
    if channel is None:
        _log_unknown("channel", value)
        return Channel.UNKNOWN
    return channel


def _status(value: object) -> SessionStatus:
    status = _STATUSES.get(value.lower()) if isinstance(value, str) else None
    if status is None:
        _log_unknown("status", value)
        return SessionStatus.UNKNOWN
    return status


@functools.lru_cache(maxsize=128)
def _log_unknown_once(kind: str, value: str) -> None:
    logger.warning("unknown %s %r from Plivo, served as UNKNOWN", kind, value)


def _log_unknown(kind: str, value: object) -> None:
    _log_unknown_once(kind, str(value)[:40])


def dump_session(session: Session) -> dict[str, object]:
    """The session in Plivo's wire format; `parse_session(dump_session(s)) == s`."""
    body: dict[str, object] = {
        "api_id": session.api_id,
        "session_uuid": session.session_uuid,
        "app_uuid": session.app_uuid,
        "alias": session.alias,
        "recipient": session.recipient,
        "channel": session.channel.value,
        "status": session.status.value,
        "count": session.count,
        "locale": session.locale,
        "requestor_ip": session.requestor_ip,
        "destination_country_iso2": session.destination_country_iso2,
        "destination_network": session.destination_network,
        "attempt_details": [_dump_attempt(attempt) for attempt in session.attempts],
        "charges": {
            "total_charge": str(session.charges.total_charge),
            "validation_charge": str(session.charges.validation_charge),
            "attempt_charges": [
                {
                    "attempt_uuid": c.attempt_uuid,
                    "channel": c.channel.value,
                    "charge": str(c.charge),
                }
                for c in session.charges.attempt_charges
            ],
        },
        "created_at": session.created_at,
        "updated_at": session.updated_at,
    }
    return body


def _dump_attempt(attempt: Attempt) -> dict[str, object]:
    body: dict[str, object] = {
        "channel": attempt.channel.value,
        "status": attempt.status,
        "time": attempt.time,
    }
    if attempt.attempt_uuid is not None:
        body["attempt_uuid"] = attempt.attempt_uuid
    if attempt.dtmf is not None:
        body["dtmf"] = attempt.dtmf
    if attempt.fraud_check is not None:
        body["fraud_check"] = attempt.fraud_check
    return body
