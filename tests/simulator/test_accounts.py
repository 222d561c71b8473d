"""The simulator keeps accounts apart: a session is seen only by the account that started it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway import fixtures
from gateway.simulator import SimulatorSettings, create_simulator
from tests.conftest import AUTH_ID, AUTH_TOKEN
from tests.servers import serve_in_thread

SUB_ID, SUB_TOKEN = "SAODZKMDFJMJU3MTEYNG", "sub-account-token"
MAIN, SUB = (AUTH_ID, AUTH_TOKEN), (SUB_ID, SUB_TOKEN)
SEEDED = fixtures.DOCS_EXAMPLE_UUID
UNKNOWN = "00000000-0000-4000-8000-000000000000"
Account = tuple[str, str]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = SimulatorSettings(
        AUTH_ID, AUTH_TOKEN, expose_codes=True, extra_credentials=(SUB,), list_per_minute=1000
    )
    with serve_in_thread(create_simulator(settings)) as base:
        yield base


def call(url: str, account: Account, method: str, uuid: str = "", **kw: object) -> httpx.Response:
    path = f"/v1/Account/{account[0]}/Verify/Session/" + (f"{uuid}/" if uuid else "")
    return httpx.request(method, url + path, auth=account, timeout=5.0, **kw)  # type: ignore[arg-type]


def start(url: str, account: Account, recipient: str) -> str:
    answer = call(url, account, "POST", json={"recipient": recipient})
    assert answer.status_code == 202, answer.text
    session_uuid: str = answer.json()["session_uuid"]
    return session_uuid


def as_unknown(response: httpx.Response, unknown: httpx.Response) -> None:
    """The same status and body as for a uuid nobody has (but for Plivo's fresh api_id)."""
    assert (response.status_code, unknown.status_code) == (404, 404)
    body, expected = response.json(), unknown.json()
    assert set(body) == set(expected) == {"api_id", "error"}
    assert body["error"] == expected["error"]


def listed(url: str, account: Account) -> set[str]:
    """Every session the account lists, page after page."""
    found: set[str] = set()
    offset = 0
    while True:
        params = {"session_time__gte": "2000-01-01 00:00", "offset": offset}
        answer = call(url, account, "GET", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found |= {item["session_uuid"] for item in page["sessions"]}
        if page["meta"]["next"] is None:
            return found
        offset += page["meta"]["limit"]


def test_a_seeded_session_is_the_main_accounts_only(url: str) -> None:
    assert call(url, MAIN, "GET", SEEDED).status_code == 200
    as_unknown(call(url, SUB, "GET", SEEDED), call(url, SUB, "GET", UNKNOWN))
    assert SEEDED in listed(url, MAIN)
    assert SEEDED not in listed(url, SUB)


def test_a_started_session_is_read_and_listed_by_its_own_account_only(url: str) -> None:
    mine = start(url, SUB, "919999000101")
    assert call(url, SUB, "GET", mine).json()["session_uuid"] == mine
    as_unknown(call(url, MAIN, "GET", mine), call(url, MAIN, "GET", UNKNOWN))
    as_unknown(call(url, MAIN, "GET", mine.upper()), call(url, MAIN, "GET", UNKNOWN))
    assert mine in listed(url, SUB)
    assert mine not in listed(url, MAIN)
    assert listed(url, SUB).isdisjoint(listed(url, MAIN))


def test_another_account_can_neither_validate_a_session_nor_spend_its_tries(url: str) -> None:
    mine = start(url, SUB, "919999000102")
    code = httpx.get(f"{url}/__simulator/codes/{mine}").json()["code"]
    unknown = call(url, MAIN, "POST", UNKNOWN, json={"otp": code})
    for otp in [code] + ["000000"] * 10:  # the right code, then more than the 10 tries
        as_unknown(call(url, MAIN, "POST", mine, json={"otp": otp}), unknown)
    assert call(url, SUB, "GET", mine).json()["status"] == "in-progress"
    validated = call(url, SUB, "POST", mine, json={"otp": code})
    assert validated.status_code == 200, validated.text
    assert call(url, SUB, "GET", mine).json()["status"] == "verified"


def test_two_accounts_starting_for_one_recipient_get_two_sessions(url: str) -> None:
    recipient = "919999000103"
    theirs, ours = start(url, SUB, recipient), start(url, MAIN, recipient)
    assert theirs != ours
    assert start(url, SUB, recipient) == theirs  # a second start adds an attempt to its own
    assert call(url, SUB, "GET", theirs).json()["count"] == 2
    assert call(url, MAIN, "GET", ours).json()["count"] == 1
