"""The simulator's side of the flow: create, list, validate, and signed status callbacks.

A start makes an in-progress session with one delivered attempt and a code (or adds an
attempt to the recipient's open session, as Plivo does within the code's expiry); a validation
checks the code, at most 10 times, before the expiry; the list filters, pages by offset (at
most 20) and allows 20 requests a minute per account (429 beyond). Callbacks go to the `url`
given at the start, signed V2 and V3 with the account's token, and only to loopback addresses.
A code can be read back only when the simulator exposes codes (demo).

Plivo's failure bodies for a validation are not documented (UNCONFIRMED in the reference); the
simulator answers 400, Plivo's documented status for a request it refuses, with the `error`
texts below, checked in this order: an expired session is EXPIRED whatever its origin (seeded
or started, with a code known here or not); a verified one validated again is
VERIFIED_ALREADY, a choice of ours that names none of the other outcomes' words (`expire`,
`attempts`, `otp`, `code`...), so a reader of those words does not take it for one of them;
neither spends a try. Then a session whose code was never sent here (a seeded in-progress
one) is NOT_OPEN, ten tries spent are TOO_MANY, and a code that does not match is WRONG_CODE.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

logger = logging.getLogger(__name__)
CALLBACK_TIMEOUT = aiohttp.ClientTimeout(total=5)
MAX_TRIES = 10
WRONG_CODE, EXPIRED, TOO_MANY = (
    "Invalid OTP",
    "session expired",
    "maximum validation attempts exceeded",
)
VERIFIED_ALREADY = "session already verified"
NOT_OPEN = "session not open for validation"


@dataclass
class Flow:
    """A session started through the simulator: its code, tries, expiry and callback."""

    account: str
    code: str = field(repr=False)
    expires_at: float
    url: str | None
    method: str
    tries: int = 0


def now_text() -> str:
    """Plivo's time format: RFC 3339 with microseconds, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_code(length: int = 6) -> str:
    """A random code of `length` digits."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


def new_attempt(body: dict[str, Any], channel: str) -> dict[str, object]:
    """A delivered attempt and its charge, added to the session body."""
    attempt_uuid = str(uuid.uuid4())
    attempt: dict[str, object] = {
        "channel": channel,
        "attempt_uuid": attempt_uuid,
        "status": "delivered",
        "time": now_text(),
    }
    body["attempt_details"].append(attempt)
    charge = "0.00500" if channel == "sms" else "0.01000"
    body["charges"]["attempt_charges"].append(
        {"attempt_uuid": attempt_uuid, "channel": channel, "charge": charge}
    )
    total = sum(float(c["charge"]) for c in body["charges"]["attempt_charges"])
    body["charges"]["total_charge"] = f"{total + float(body['charges']['validation_charge']):.5f}"
    body["count"] = len(body["attempt_details"])
    body["channel"] = channel
    body["updated_at"] = now_text()
    return attempt


def new_session(account: str, params: dict[str, Any], channel: str) -> dict[str, Any]:
    """An in-progress session body, as a GET returns it."""
    stamp = now_text()
    return {
        "api_id": str(uuid.uuid4()),
        "session_uuid": str(uuid.uuid4()),
        "app_uuid": str(params.get("app_uuid") or uuid.uuid5(uuid.NAMESPACE_URL, account)),
        "alias": "default_verify_app",
        "recipient": str(params["recipient"]).lstrip("+"),
        "channel": channel,
        "status": "in-progress",
        "count": 0,
        "locale": str(params.get("locale") or "en"),
        "requestor_ip": "127.0.0.1",
        "destination_country_iso2": "",
        "destination_network": None,
        "attempt_details": [],
        "charges": {"total_charge": "0", "validation_charge": "0.0000", "attempt_charges": []},
        "created_at": stamp,
        "updated_at": stamp,
    }


def create_problem(params: dict[str, Any]) -> str | None:
    """Why Plivo would refuse these create parameters (400), or None."""
    recipient = params.get("recipient")
    if not isinstance(recipient, str | int) or not str(recipient).lstrip("+").isdigit():
        return "recipient is required and must be a phone number"
    if params.get("channel", "sms") not in ("sms", "voice"):
        return "channel must be sms or voice"
    length = params.get("code_length")
    if length is not None and (not isinstance(length, int) or not 4 <= length <= 8):
        return "code_length must be from 4 to 8"
    url = params.get("url")
    if url is not None and (
        not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")
    ):
        return "url must be an http or https URL"
    if params.get("method", "POST") not in ("GET", "POST"):
        return "method must be GET or POST"
    otp = params.get("otp")
    if otp is not None and (not isinstance(otp, str) or not otp.isdigit()):
        return "otp must be digits"
    return None


class ListLimiter:
    """Plivo's 20 list requests a minute, per account."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: dict[str, deque[float]] = {}

    def allow(self, account: str) -> bool:
        times = self._times.setdefault(account, deque())
        now = time.monotonic()
        while times and now - times[0] >= 60.0:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True


def _in_window(created: str, query: dict[str, str]) -> bool:
    moment = datetime.fromisoformat(created).astimezone(UTC).replace(tzinfo=None)
    given = {k: v for k, v in query.items() if k.startswith("session_time")}
    if not given:
        return (datetime.now(UTC).replace(tzinfo=None) - moment).total_seconds() <= 86_400
    for key, text in given.items():
        bound = datetime.fromisoformat(text)
        op = key.partition("__")[2] or "eq"
        checks = {
            "eq": moment.replace(microsecond=0) == bound,
            "gt": moment > bound,
            "gte": moment >= bound,
            "lt": moment < bound,
            "lte": moment <= bound,
        }
        if not checks.get(op, False):
            return False
    return True


def list_page(
    sessions: list[dict[str, Any]], query: dict[str, str], account: str, limit: int, offset: int
) -> dict[str, object]:
    """Plivo's list body for these sessions (newest first), filters and page."""
    chosen = [
        body
        for body in sessions
        if all(
            str(body.get(key)) == query[key]
            for key in ("app_uuid", "status", "recipient")
            if key in query
        )
        and _in_window(str(body["created_at"]), query)
    ]
    chosen.sort(key=lambda body: str(body["created_at"]), reverse=True)
    page = chosen[offset : offset + limit]
    base = f"/v1/Account/{account}/Verify/Session/?limit={limit}&offset="
    return {
        "api_id": str(uuid.uuid4()),
        "meta": {
            "limit": limit,
            "offset": offset,
            "next": base + str(offset + limit) if offset + limit < len(chosen) else None,
            "previous": base + str(max(0, offset - limit)) if offset > 0 else None,
        },
        "sessions": [{k: v for k, v in body.items() if k != "api_id"} for body in page],
    }


def is_loopback(url: str) -> bool:
    """Callbacks go to this machine only."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign_v2(url: str, nonce: str, token: str) -> str:
    parts = urlsplit(url)
    message = f"{parts.scheme}://{parts.netloc}{parts.path}{nonce}"
    return base64.b64encode(
        hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    ).decode()


def sign_v3_post(url: str, nonce: str, token: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(
        sorted(f"{k}={v}" for k, v in (p.split("=", 1) for p in parts.query.split("&") if "=" in p))
    )
    base = f"{parts.scheme}://{parts.netloc}{parts.path}?{query}{'.' if query else ''}"
    base += "".join(f"{k}{params[k]}" for k in sorted(params))
    message = f"{base}.{nonce}"
    return base64.b64encode(
        hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    ).decode()


def callback_params(body: dict[str, Any], session_status: str) -> dict[str, str]:
    """The form of a status callback about the session's last attempt."""
    attempts = body["attempt_details"]
    last = attempts[-1] if attempts else {}
    return {
        "AttemptSequence": str(len(attempts)),
        "AttemptUUID": str(last.get("attempt_uuid", "")),
        "Channel": str(last.get("channel", body["channel"])),
        "ChannelErrorCode": "",
        "ChannelStatus": str(last.get("status", "")),
        "Recipient": str(body["recipient"]),
        "RequestTime": str(last.get("time", body["updated_at"])),
        "SessionStatus": session_status,
        "SessionUUID": str(body["session_uuid"]),
    }


def signed_headers(url: str, token: str, params: dict[str, str]) -> dict[str, str]:
    """V2 and V3 signatures of a POST of `params` to `url`, with a new nonce."""
    nonce = str(secrets.randbelow(10**20))
    return {
        "X-Plivo-Signature-V2": sign_v2(url, nonce, token),
        "X-Plivo-Signature-V2-Nonce": nonce,
        "X-Plivo-Signature-V3": sign_v3_post(url, nonce, token, params),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


async def post_callback(
    client: aiohttp.ClientSession, url: str, params: dict[str, str], token: str
) -> int | None:
    """POST one signed callback; its HTTP status, or None when it got no answer."""
    try:
        async with client.post(url, data=params, headers=signed_headers(url, token, params)) as r:
            await r.read()
            logger.info("callback for %s answered %d", params["SessionUUID"], r.status)
            return r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("callback for %s failed (%s)", params["SessionUUID"], type(exc).__name__)
        return None


async def send_callback(
    flow: Flow, body: dict[str, Any], token: str, session_status: str
) -> int | None:
    """One status callback for the session's last attempt; loopback URLs only.

    Returns the receiver's HTTP status, or None when nothing was sent or nothing answered.
    """
    if flow.url is None:
        return None
    if not is_loopback(flow.url):
        logger.warning("callback to %s not sent: not a loopback address", flow.url)
        return None
    params = callback_params(body, session_status)
    async with aiohttp.ClientSession(timeout=CALLBACK_TIMEOUT) as client:
        return await post_callback(client, flow.url, params, token)


def spawn(tasks: set[asyncio.Task[None]], coroutine: Any) -> None:
    """Run a callback in the background, keeping a reference until it ends."""
    task = asyncio.ensure_future(coroutine)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
