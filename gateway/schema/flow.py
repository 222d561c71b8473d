"""The rest of the flow: `sessions` (a Relay connection), the two mutations, the subscription."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import strawberry
from strawberry.types.enum import has_enum_definition

from gateway.errors import InvalidInput
from gateway.plivo import flow, models
from gateway.schema import sessions
from gateway.schema.context import PLIVO_REQUEST, Info, flow_of, require
from gateway.schema.scalars import DateTime
from gateway.schema.sessions import Channel, SessionStatus, VerifySession

ValidationResult = strawberry.enum(
    flow.ValidationResult,
    name="ValidationResult",
    description="How a validation ended: only VERIFIED verifies the session (with this code).",
)
_SUBACCOUNT = "SA"
_RECIPIENT = (
    "An international number: country code and number, with a leading + or 00 or neither "
    "(+14155550199, 0014155550199 and 14155550199 are one number)."
)


def _describe_results() -> None:
    """Each value's description is the message a validation with that result carries."""
    assert has_enum_definition(ValidationResult)
    for value in ValidationResult.__strawberry_definition__.values:
        described = flow.MESSAGES[flow.ValidationResult(value.value)]
        value.description = described[0].upper() + described[1:] + "."


_describe_results()


@strawberry.input(description="Plivo's list filters; times are ISO 8601 with an offset.")
class SessionFilter:
    app_uuid: strawberry.ID | None = None
    status: SessionStatus | None = None
    recipient: str | None = strawberry.field(default=None, description=_RECIPIENT)
    subaccount: str | None = strawberry.field(
        default=None, description="A subaccount's auth id (SA...), to list its sessions."
    )
    session_time: DateTime | None = None
    session_time_gt: DateTime | None = None
    session_time_gte: DateTime | None = None
    session_time_lt: DateTime | None = None
    session_time_lte: DateTime | None = None

    def to_wire(self) -> flow.ListFilter:
        if self.status is SessionStatus.UNKNOWN:
            raise InvalidInput("status must be IN_PROGRESS, VERIFIED or EXPIRED")
        sub = self.subaccount
        if sub is not None and not (
            len(sub) == 20 and sub.startswith(_SUBACCOUNT) and sub.isalnum()
        ):
            raise InvalidInput("subaccount must be a subaccount auth id (SA and 18 characters)")
        return flow.ListFilter(
            app_uuid=str(self.app_uuid) if self.app_uuid is not None else None,
            status=self.status.value if self.status is not None else None,
            recipient=flow.plivo_recipient(self.recipient) if self.recipient is not None else None,
            subaccount=sub,
            session_time=_plivo_time(self.session_time, "sessionTime"),
            session_time__gt=_plivo_time(self.session_time_gt, "sessionTimeGt"),
            session_time__gte=_plivo_time(self.session_time_gte, "sessionTimeGte"),
            session_time__lt=_plivo_time(self.session_time_lt, "sessionTimeLt"),
            session_time__lte=_plivo_time(self.session_time_lte, "sessionTimeLte"),
        )


def _plivo_time(value: str | None, name: str) -> str | None:
    """ISO 8601 with an offset -> Plivo's `YYYY-MM-DD HH:MM:SS` in UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an ISO 8601 time with an offset") from exc
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} must be an ISO 8601 time with an offset")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class SessionEdge:
    cursor: str
    node: VerifySession


@strawberry.type(description="A page of sessions, newest first as Plivo lists them.")
class SessionConnection:
    edges: list[SessionEdge]
    nodes: list[VerifySession]
    page_info: PageInfo


def cursor(where: flow.ListFilter, position: int) -> str:
    """Opaque: the filter's digest and the position after this item."""
    return base64.urlsafe_b64encode(f"v1:{where.digest}:{position}".encode()).decode()


def offset_after(where: flow.ListFilter, after: str | None) -> int:
    """The offset a cursor points past; a cursor of another filter is refused."""
    if after is None:
        return 0
    try:
        version, digest, position = base64.urlsafe_b64decode(after.encode()).decode().split(":")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a cursor of this connection") from exc
    if version != "v1" or digest != where.digest or not position.isdigit():
        raise InvalidInput("after is not a cursor of this connection (or of another filter)")
    return int(position)


async def list_sessions(
    info: Info,
    filter: SessionFilter | None = None,
    first: int = flow.MAX_PAGE,
    after: str | None = None,
) -> SessionConnection:
    require(info.context, "read")
    where = (filter or SessionFilter()).to_wire()
    offset = offset_after(where, after)
    page = await flow_of(info.context).list(
        where, first=first, offset=offset, caller=info.context.caller
    )
    edges = [
        SessionEdge(cursor=cursor(where, offset + index + 1), node=VerifySession.from_model(item))
        for index, item in enumerate(page.sessions)
    ]
    return SessionConnection(
        edges=edges,
        nodes=[edge.node for edge in edges],
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=offset > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


@strawberry.input(description="What Plivo's create call takes; the callback URL is the gateway's.")
class StartVerificationInput:
    recipient: str = strawberry.field(description=_RECIPIENT)
    channel: Channel = Channel.SMS
    app_uuid: strawberry.ID | None = None
    locale: str | None = None
    brand_name: str | None = None
    app_hash: str | None = strawberry.field(default=None, description="Android SMS Retriever hash.")
    code_length: int | None = strawberry.field(default=None, description="4 to 8 digits.")
    dtmf: int | None = None
    fraud_check: str | None = None
    otp: str | None = strawberry.field(
        default=None, description="A code of your own (4 to 8 digits) instead of Plivo's."
    )

    def to_wire(self) -> flow.StartParams:
        if self.channel is Channel.UNKNOWN:
            raise InvalidInput("channel must be SMS or VOICE")
        return flow.StartParams(
            recipient=self.recipient,
            channel=self.channel.value,
            app_uuid=str(self.app_uuid) if self.app_uuid is not None else None,
            locale=self.locale,
            brand_name=self.brand_name,
            app_hash=self.app_hash,
            code_length=self.code_length,
            dtmf=self.dtmf,
            fraud_check=self.fraud_check,
            otp=self.otp,
        )


async def _session(info: Info, uuid: str) -> VerifySession | None:
    # Reading the session (its recipient, attempts, charges) is reading: a write-only key
    # gets the mutation's result, not the session.
    require(info.context, "read")
    found = await info.context.loader.load(models.canonical_session_uuid(uuid))
    return VerifySession.from_model(found) if found is not None else None


@strawberry.type
class StartVerificationPayload:
    session_uuid: strawberry.ID
    message: str | None
    api_id: str | None
    replayed: bool = strawberry.field(
        description="True when an Idempotency-Key returned an earlier start: no code was sent."
    )

    @strawberry.field(
        description="The session as Plivo has it now (needs the read scope).",
        metadata=PLIVO_REQUEST,
    )
    async def session(self, info: Info) -> VerifySession | None:
        return await _session(info, str(self.session_uuid))


@strawberry.type
class ValidateSessionPayload:
    session_uuid: strawberry.ID
    result: ValidationResult  # type: ignore[valid-type]
    message: str

    @strawberry.field(
        description="The session as Plivo has it after the validation (needs the read scope).",
        metadata=PLIVO_REQUEST,
    )
    async def session(self, info: Info) -> VerifySession | None:
        if self.result is flow.ValidationResult.NOT_FOUND:
            return None
        return await _session(info, str(self.session_uuid))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Send a code (never retried). Needs the write scope; an Idempotency-Key "
        "header makes a repeat within the window return the first result.",
        metadata=PLIVO_REQUEST,
    )
    async def start_verification(
        self, info: Info, input: StartVerificationInput
    ) -> StartVerificationPayload:
        require(info.context, "write")
        info.context.mutated = True
        outcome = await flow_of(info.context).start(
            info.context.caller, input.to_wire(), info.context.idempotency_key
        )
        started = outcome.started
        return StartVerificationPayload(
            session_uuid=strawberry.ID(started.session_uuid),
            message=started.message,
            api_id=started.api_id,
            replayed=outcome.replayed,
        )

    @strawberry.mutation(
        description="Check a code (never retried). A wrong code, an expired session and too "
        "many tries are results, not errors; a session the gateway knows has ended is answered "
        "without Plivo (ALREADY_VERIFIED when it was verified). Limited per session (by default "
        "to Plivo's 10 tries) and per API key: beyond, RATE_LIMITED. Needs the write scope.",
        metadata=PLIVO_REQUEST,
    )
    async def validate_session(
        self, info: Info, uuid: strawberry.ID, otp: str
    ) -> ValidateSessionPayload:
        require(info.context, "write")
        info.context.mutated = True
        canonical = models.canonical_session_uuid(str(uuid))
        outcome = await flow_of(info.context).validate(info.context.caller, canonical, otp)
        return ValidateSessionPayload(
            session_uuid=strawberry.ID(outcome.session_uuid),
            result=outcome.result,
            message=outcome.message,
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The session now and at each change of its status or attempts; completes "
        "at a terminal status, or after null when Plivo has no such session.",
        metadata=PLIVO_REQUEST,  # the cost of its first read
    )
    async def session_updated(
        self, info: Info, uuid: strawberry.ID
    ) -> AsyncGenerator[VerifySession | None, None]:
        require(info.context, "read")
        canonical = models.canonical_session_uuid(str(uuid))
        watch = info.context.watch
        if watch is None:
            raise RuntimeError("this context cannot watch sessions")
        async for session in watch(canonical):
            yield VerifySession.from_model(session) if session is not None else None


@strawberry.type
class Query(sessions.Query):
    sessions: SessionConnection = strawberry.field(
        resolver=list_sessions,
        description="Sessions through Plivo's list (at most 20 a page; Plivo allows 20 list "
        "requests a minute), cached briefly per credential.",
        metadata=PLIVO_REQUEST,  # one page, one list request
    )
