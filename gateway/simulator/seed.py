"""The simulator's sessions: every fixture, generated sessions in every status, and recent ones.

The fixtures (the docs example among them, exactly as Plivo's reference prints it) and the
generated sessions date from 2023 and 2024, outside the 24 hours Plivo lists by default. So
three more are dated from the simulator's start, for a list to show out of the box: one
verified three hours before it, one expired two hours before it, and one in progress, its code
sent at the start (it expires as a started session does).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway import fixtures
from gateway.simulator.verify import now_text

STATUSES = ("in-progress", "verified", "expired")
GENERATED_PER_STATUS = 4


def seed_sessions(rng_seed: int = 2023) -> dict[str, dict[str, object]]:
    """Session bodies by lowercase uuid, as a GET returns them (`api_id` first)."""
    rng = random.Random(rng_seed)
    sessions: dict[str, dict[str, object]] = {}
    for body in fixtures.session_fixtures().values():
        sessions[str(body["session_uuid"]).lower()] = with_api_id(body, rng)
    for status in STATUSES:
        for index in range(GENERATED_PER_STATUS):
            body = generated_session(rng, status=status, channel=("sms", "voice")[index % 2])
            sessions[str(body["session_uuid"])] = body
    return sessions


RECENT_VERIFIED = "3f1d2c8e-5a47-4b6e-9c1a-0d2e4f6a8b01"
RECENT_EXPIRED = "7a9b1c3d-2e4f-4a6b-8c0d-1e2f3a4b5c02"
RECENT_IN_PROGRESS = "c4e6a8b0-9d1f-4e3a-b5c7-d9e1f3a5b703"
_APP_UUID = "ec66515e-86f6-4507-8620-31c039538d7a"  # the docs example's app


def recent_sessions(start: datetime) -> dict[str, dict[str, object]]:
    """The three sessions dated from `start` (an aware time), by uuid, as a GET returns them."""
    verified, expired = start - timedelta(hours=3), start - timedelta(hours=2)
    return {
        RECENT_VERIFIED: _recent(
            RECENT_VERIFIED,
            "verified",
            "919812300001",
            [("sms", "delivered", verified + timedelta(seconds=1), "0.00500")],
            validation="0.0500",
            updated=verified + timedelta(seconds=40),
        ),
        RECENT_EXPIRED: _recent(
            RECENT_EXPIRED,
            "expired",
            "919812300002",
            [
                ("sms", "failed", expired + timedelta(seconds=1), "0.00000"),
                ("voice", "answer", expired + timedelta(seconds=31), "0.01000"),
            ],
            validation="0.0000",
            updated=expired + timedelta(minutes=10),  # the code's expiry
        ),
        RECENT_IN_PROGRESS: _recent(
            RECENT_IN_PROGRESS,
            "in-progress",
            "919812300003",
            [("sms", "delivered", start, "0.00500")],
            validation="0.0000",
            updated=start,
        ),
    }


def _recent(
    session_uuid: str,
    status: str,
    recipient: str,
    attempts: list[tuple[str, str, datetime, str]],
    *,
    validation: str,
    updated: datetime,
) -> dict[str, object]:
    """A session as the simulator's own flow leaves it: its charges add up as a start's do."""
    details, charges = [], []
    for index, (channel, attempt_status, moment, charge) in enumerate(attempts):
        attempt_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session_uuid}/attempt/{index}"))
        details.append(
            {
                "channel": channel,
                "attempt_uuid": attempt_uuid,
                "status": attempt_status,
                "time": _stamp(moment),
            }
        )
        charges.append({"attempt_uuid": attempt_uuid, "channel": channel, "charge": charge})
    total = Decimal(validation) + sum((Decimal(c["charge"]) for c in charges), Decimal(0))
    created = attempts[0][2] - timedelta(milliseconds=12)
    return {
        "api_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session_uuid}/api_id")),
        "session_uuid": session_uuid,
        "app_uuid": _APP_UUID,
        "alias": "default_verify_app",
        "recipient": recipient,
        "channel": attempts[-1][0],  # the last channel used
        "status": status,
        "count": len(details),
        "locale": "en",
        "requestor_ip": "203.0.113.7",
        "destination_country_iso2": "IN",
        "destination_network": "Jio",
        "attempt_details": details,
        "charges": {
            "total_charge": f"{total:.5f}",
            "validation_charge": validation,
            "attempt_charges": charges,
        },
        "created_at": _stamp(created),
        "updated_at": _stamp(updated),
    }


def _stamp(moment: datetime) -> str:
    """Plivo's time format, as `now_text` gives it: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def with_api_id(body: dict[str, object], rng: random.Random) -> dict[str, object]:
    """The body with an `api_id` first, keeping the fixture's own when it has one."""
    api_id = body.get("api_id") or str(_uuid4(rng))
    return {"api_id": api_id, **{k: v for k, v in body.items() if k != "api_id"}}


def generated_session(rng: random.Random, *, status: str, channel: str) -> dict[str, object]:
    """A plausible session: attempts, charges that add up, `+05:30` or `Z` times."""
    session_uuid = str(_uuid4(rng))
    offset = rng.choice(("Z", "+05:30"))
    minute = rng.randrange(0, 50)
    attempts: list[dict[str, object]] = []
    charges: list[dict[str, object]] = []
    for index in range(rng.randrange(1, 4)):
        attempt_channel = channel if index == 0 else rng.choice(("sms", "voice"))
        attempt_uuid = str(_uuid4(rng))
        attempts.append(
            {
                "channel": attempt_channel,
                "attempt_uuid": attempt_uuid,
                "status": rng.choice(("delivered", "failed"))
                if attempt_channel == "sms"
                else "answer",
                "time": f"2024-03-0{index + 1}T10:{minute + index:02d}:05.123456{offset}",
            }
        )
        charge = Decimal(rng.choice(("0.00000", "0.03300", "0.08000")))
        charges.append(
            {"attempt_uuid": attempt_uuid, "channel": attempt_channel, "charge": str(charge)}
        )
    validation = Decimal("0.05") if status == "verified" else Decimal("0.0000")
    total = validation + sum((Decimal(str(c["charge"])) for c in charges), Decimal(0))
    return {
        "api_id": str(_uuid4(rng)),
        "session_uuid": session_uuid,
        "app_uuid": "ec66515e-86f6-4507-8620-31c039538d7a",
        "alias": "default_verify_app",
        "recipient": f"9198{rng.randrange(10**7, 10**8)}",
        "channel": channel,
        "status": status,
        "count": len(attempts),
        "requestor_ip": "203.0.113.7",
        "destination_country_iso2": "IN",
        "destination_network": rng.choice(("Jio", "AirTel", None)),
        "attempt_details": attempts,
        "charges": {
            "total_charge": str(total),
            "validation_charge": str(validation),
            "attempt_charges": charges,
        },
        "created_at": f"2024-03-01T10:{minute:02d}:00.000001{offset}",
        "updated_at": str(attempts[-1]["time"]),
    }


class BenchTemplate:
    """Bench mode: any canonical uuid answers the docs example with that uuid, cheaply.

    Its `alias` names the account that asked, so a load test can tell whose data it got.
    """

    def __init__(self) -> None:
        body = fixtures.load("get-docs-example")
        assert isinstance(body, dict)
        uuid_mark, alias_mark = "__SESSION_UUID__", "__ALIAS__"
        text = json.dumps({**body, "session_uuid": uuid_mark, "alias": alias_mark})
        head, rest = text.split(uuid_mark)
        middle, tail = rest.split(alias_mark)
        self._head, self._middle, self._tail = head.encode(), middle.encode(), tail.encode()

    def render(self, session_uuid: str, account: str) -> bytes:
        """The body for `session_uuid`, asked for by `account`."""
        return self._head + session_uuid.encode() + self._middle + account.encode() + self._tail


class LiveBenchTemplate:
    """Live bench mode: any canonical uuid answers an in-progress session that can change.

    Each uuid has a version, 0 until `change` is called for it. A change moves the last
    attempt's status from "sent" to "delivered", or adds an attempt ("sent") to a delivered
    one, up to `MAX_ATTEMPTS`, then toggles the last status; `updated_at` and the last
    attempt's `time` become the time of the change. The session stays in progress. A body is
    bytes joined from pieces made once per (attempts, last status); only changed uuids are kept.
    """

    MAX_ATTEMPTS = 5
    _UUID, _ALIAS, _TIME = "__SESSION_UUID__", "__ALIAS__", "__CHANGED_AT__"

    def __init__(self) -> None:
        self.started = now_text()
        self._started = self.started.encode()
        self._pieces = [self._split(version) for version in range(2 * self.MAX_ATTEMPTS)]
        self._changed: dict[str, tuple[int, bytes]] = {}

    @classmethod
    def shape(cls, version: int) -> tuple[int, str]:
        """The number of attempts and the last attempt's status at `version`."""
        return min(1 + version // 2, cls.MAX_ATTEMPTS), ("sent", "delivered")[version % 2]

    def version(self, session_uuid: str) -> int:
        """How many times `session_uuid` changed."""
        return self._changed.get(session_uuid, (0, b""))[0]

    def change(self, session_uuid: str) -> int:
        """Change the session (its next GET differs); returns its new version."""
        version = self.version(session_uuid) + 1
        self._changed[session_uuid] = (version, now_text().encode())
        return version

    def render(self, session_uuid: str, account: str) -> bytes:
        """The body for `session_uuid` at its version, asked for by `account`."""
        version, changed_at = self._changed.get(session_uuid, (0, b""))
        head, middle, before, between, tail = self._pieces[self._index(version)]
        at = changed_at or self._started
        return (
            head + session_uuid.encode() + middle + account.encode() + before + at + between + at
        ) + tail

    def _index(self, version: int) -> int:
        """Versions from `2 * MAX_ATTEMPTS - 2` on look alike but for the last status."""
        last = 2 * self.MAX_ATTEMPTS - 2
        return version if version < last else last + (version - last) % 2

    def _split(self, version: int) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        count, last_status = self.shape(version)
        attempts = [
            {
                "channel": "sms",
                "attempt_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-attempt-{index}")),
                "status": last_status if index == count - 1 else "delivered",
                "time": self._TIME if index == count - 1 else self.started,
            }
            for index in range(count)
        ]
        charges = [
            {"attempt_uuid": a["attempt_uuid"], "channel": "sms", "charge": "0.00500"}
            for a in attempts
        ]
        body = {
            "api_id": "5f1c0a4e-2c3b-4d6e-9f70-8a9b0c1d2e3f",
            "session_uuid": self._UUID,
            "app_uuid": "ec66515e-86f6-4507-8620-31c039538d7a",
            "alias": self._ALIAS,
            "recipient": "919999000001",
            "channel": "sms",
            "status": "in-progress",
            "count": count,
            "locale": "en",
            "requestor_ip": "203.0.113.7",
            "destination_country_iso2": "IN",
            "destination_network": "Jio",
            "attempt_details": attempts,
            "charges": {
                "total_charge": f"{Decimal('0.00500') * count:.5f}",
                "validation_charge": "0.0000",
                "attempt_charges": charges,
            },
            "created_at": self.started,
            "updated_at": self._TIME,
        }
        text = json.dumps(body)
        head, rest = text.split(self._UUID)
        middle, rest = rest.split(self._ALIAS)
        before, between, tail = rest.split(self._TIME)  # the last attempt's time, updated_at
        return head.encode(), middle.encode(), before.encode(), between.encode(), tail.encode()


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)
