"""The rest of the Verify Session resource: list filters and pages, starts, validations.

Plain data in and out of PlivoClient's list, create and validate calls. Plivo's failure bodies
for a validation are not documented (the reference marks them UNCONFIRMED): a 4xx is read by
the words of its `error` text, and one that names none of the known outcomes stays an error.

Recipients are international numbers: `plivo_recipient` reads one (with a +, an international
00, both, or neither) and gives it in the form Plivo's session objects carry and its list filter
matches: the E.164 number's digits without the +.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import re
from dataclasses import asdict, dataclass, field

import phonenumbers

from gateway.errors import InvalidInput
from gateway.plivo.models import MalformedSession, Session, parse_session

MAX_PAGE = 20
# A leading +, then digits and the separators people write; the digits are checked after.
_DIALLED = re.compile(r"\+?[0-9][0-9 ().\-]{0,39}")
_SEPARATORS = re.compile(r"[ ().\-]")
MAX_DIGITS = 15  # E.164's longest number


@dataclass(frozen=True)
class ListFilter:
    """Plivo's list filters, in wire form (times as `YYYY-MM-DD HH:MM:SS`, UTC)."""

    app_uuid: str | None = None
    status: str | None = None
    recipient: str | None = None
    subaccount: str | None = None
    session_time: str | None = None
    session_time__gt: str | None = None
    session_time__gte: str | None = None
    session_time__lt: str | None = None
    session_time__lte: str | None = None

    def params(self) -> dict[str, str]:
        """The query parameters the filter sets."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @property
    def digest(self) -> str:
        """Names the filter in cache keys and cursors."""
        text = "&".join(f"{k}={v}" for k, v in sorted(self.params().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class SessionPage:
    """One page of a list: its sessions, where it starts, and whether more follow."""

    sessions: tuple[Session, ...]
    offset: int
    has_next: bool


@dataclass(frozen=True)
class StartParams:
    """What a start sends: the create parameters of the reference (§1.1)."""

    recipient: str
    channel: str = "sms"
    app_uuid: str | None = None
    locale: str | None = None
    brand_name: str | None = None
    app_hash: str | None = None
    code_length: int | None = None
    dtmf: int | None = None
    fraud_check: str | None = None
    otp: str | None = field(default=None, repr=False)
    url: str | None = None
    method: str | None = None

    def body(self) -> dict[str, object]:
        """The JSON body; unset parameters are left out."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Started:
    """Plivo's answer to a start."""

    session_uuid: str
    message: str | None
    api_id: str | None


@dataclass(frozen=True)
class StartOutcome:
    """A start's result; `replayed` when an Idempotency-Key returned an earlier one."""

    started: Started
    replayed: bool


class ValidationResult(enum.Enum):
    """How a validation ended."""

    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    NOT_FOUND = "not_found"
    ALREADY_VERIFIED = "already_verified"  # the gateway's answer: no code was checked


@dataclass(frozen=True)
class Validation:
    """The outcome of one validation."""

    session_uuid: str
    result: ValidationResult
    message: str


MESSAGES = {
    ValidationResult.VERIFIED: "the code is correct; the session is verified",
    ValidationResult.WRONG_CODE: "the code is wrong",
    ValidationResult.EXPIRED: "the session has expired",
    ValidationResult.TOO_MANY_ATTEMPTS: "too many validation attempts for this session",
    ValidationResult.NOT_FOUND: "Plivo has no such session",
    ValidationResult.ALREADY_VERIFIED: (
        "the session was verified earlier; this code was not checked"
    ),
}


def plivo_recipient(text: str) -> str:
    """An international number as Plivo takes it: E.164's digits without the +.

    `+14155550199`, `14155550199`, `0014155550199` and `+1 (415) 555-0199` are one number. One
    that phonenumbers cannot read, or does not hold valid, is InvalidInput (not echoed back).
    """
    written = text.strip()
    if not _DIALLED.fullmatch(written):
        raise InvalidInput(
            "recipient must be an international phone number: its country code and number, "
            "in digits, with a leading + or 00 or neither"
        )
    digits = _SEPARATORS.sub("", written.removeprefix("+")).removeprefix("00")
    number = None
    if 0 < len(digits) <= MAX_DIGITS:
        with contextlib.suppress(phonenumbers.NumberParseException):
            number = phonenumbers.parse("+" + digits, None)
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidInput(
            "recipient is not a valid phone number: give its country code and the whole number"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def failed_validation(error_text: str) -> ValidationResult | None:
    """The outcome a 4xx body's `error` names, or None when it names none of them."""
    text = error_text.lower()
    if "already verified" in text:  # the simulator's answer; Plivo's is undocumented
        return ValidationResult.ALREADY_VERIFIED
    if "expire" in text:
        return ValidationResult.EXPIRED
    if any(word in text for word in ("attempts", "exceed", "too many", "maximum")):
        return ValidationResult.TOO_MANY_ATTEMPTS
    if any(word in text for word in ("invalid", "incorrect", "wrong", "otp", "code")):
        return ValidationResult.WRONG_CODE
    return None


def parse_page(payload: object, offset: int) -> SessionPage:
    """A list response: `{"meta": {...}, "sessions": [...]}`."""
    if not isinstance(payload, dict):
        raise MalformedSession("the list is not a JSON object")
    items = payload.get("sessions")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise MalformedSession("sessions is not a list")
    meta = payload.get("meta")
    has_next = isinstance(meta, dict) and bool(meta.get("next"))
    return SessionPage(tuple(parse_session(item) for item in items), offset, has_next)


def parse_started(payload: object) -> Started:
    """A create response: `{"api_id", "message", "session_uuid"}`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("session_uuid"), str):
        raise MalformedSession("the answer to a start has no session_uuid")
    message, api_id = payload.get("message"), payload.get("api_id")
    return Started(
        str(payload["session_uuid"]),
        message if isinstance(message, str) else None,
        api_id if isinstance(api_id, str) else None,
    )
