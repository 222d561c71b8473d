"""The VerifySession, Attempt and Charges types, and the `session` query."""

from __future__ import annotations

from typing import cast

import strawberry

from gateway.plivo import models
from gateway.schema.context import PLIVO_REQUEST, Info, require
from gateway.schema.scalars import DateTime, Decimal

Channel = models.Channel
SessionStatus = models.SessionStatus
strawberry.enum(Channel, name="Channel", description="How a code was sent.")
strawberry.enum(
    SessionStatus,
    name="SessionStatus",
    description="Where a verification stands; VERIFIED and EXPIRED are terminal.",
)


@strawberry.type(description="What one attempt cost.")
class AttemptCharge:
    attempt_uuid: strawberry.ID
    channel: Channel
    charge: Decimal

    @staticmethod
    def from_model(item: models.AttemptCharge) -> AttemptCharge:
        return AttemptCharge(
            attempt_uuid=strawberry.ID(item.attempt_uuid),
            channel=item.channel,
            charge=cast(Decimal, item.charge),
        )


@strawberry.type(description="The money a session cost.")
class Charges:
    total_charge: Decimal
    validation_charge: Decimal
    attempt_charges: list[AttemptCharge]

    @staticmethod
    def from_model(item: models.Charges) -> Charges:
        return Charges(
            total_charge=cast(Decimal, item.total_charge),
            validation_charge=cast(Decimal, item.validation_charge),
            attempt_charges=[AttemptCharge.from_model(c) for c in item.attempt_charges],
        )


@strawberry.type(description="One delivery of the code, joined with its charge.")
class Attempt:
    attempt_uuid: strawberry.ID | None = strawberry.field(
        description=(
            "Null when Plivo's item lacks the key (a known fixture spells it `attemp_uuid`)."
        )
    )
    channel: Channel
    status: str = strawberry.field(description="The delivery status as Plivo sent it.")
    time: DateTime
    charge: Decimal | None = strawberry.field(
        description="Joined from charges.attemptCharges by attempt uuid."
    )
    dtmf: int | None
    fraud_check: str | None

    @staticmethod
    def from_model(item: models.Attempt) -> Attempt:
        return Attempt(
            attempt_uuid=strawberry.ID(item.attempt_uuid) if item.attempt_uuid else None,
            channel=item.channel,
            status=item.status,
            time=cast(DateTime, item.time),
            charge=cast(Decimal, item.charge) if item.charge is not None else None,
            dtmf=item.dtmf,
            fraud_check=item.fraud_check,
        )


@strawberry.type(description="A Plivo Verify session with its attempts and charges.")
class VerifySession:
    session_uuid: strawberry.ID
    api_id: str | None = strawberry.field(description="Plivo's id for the GET that returned it.")
    app_uuid: strawberry.ID | None
    alias: str | None
    recipient: str
    channel: Channel = strawberry.field(description="The last channel used for the session.")
    status: SessionStatus
    count: int = strawberry.field(description="How many attempts were made.")
    locale: str | None
    requestor_ip: str | None
    destination_country_iso2: str | None
    destination_network: str | None
    attempts: list[Attempt] = strawberry.field(description="Plivo's attempt_details; [] when null.")
    charges: Charges
    created_at: DateTime
    updated_at: DateTime

    @staticmethod
    def from_model(item: models.Session) -> VerifySession:
        return VerifySession(
            session_uuid=strawberry.ID(item.session_uuid),
            api_id=item.api_id,
            app_uuid=strawberry.ID(item.app_uuid) if item.app_uuid else None,
            alias=item.alias,
            recipient=item.recipient,
            channel=item.channel,
            status=item.status,
            count=item.count,
            locale=item.locale,
            requestor_ip=item.requestor_ip,
            destination_country_iso2=item.destination_country_iso2,
            destination_network=item.destination_network,
            attempts=[Attempt.from_model(a) for a in item.attempts],
            charges=Charges.from_model(item.charges),
            created_at=cast(DateTime, item.created_at),
            updated_at=cast(DateTime, item.updated_at),
        )


@strawberry.type
class Query:
    @strawberry.field(
        description="A Verify session by its uuid; null when Plivo has no such session.",
        metadata=PLIVO_REQUEST,
    )
    async def session(self, info: Info, uuid: strawberry.ID) -> VerifySession | None:
        require(info.context, "read")
        found = await info.context.loader.load(models.canonical_session_uuid(str(uuid)))
        return VerifySession.from_model(found) if found is not None else None
