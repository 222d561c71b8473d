"""The simulator's create, list and validate, read through Plivo's own Python SDK, and its
signed callbacks (loopback only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl

import httpx
import plivo
import pytest
from plivo import exceptions
from plivo.rest import client as plivo_rest_client
from plivo.utils.signature_v3 import validate_v3_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.plivo.signature import is_signed
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.seed import RECENT_VERIFIED
from tests.conftest import AUTH_ID, AUTH_TOKEN
from tests.servers import serve_in_thread


@pytest.fixture
def flow_sim() -> Iterator[str]:
    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True))
    with serve_in_thread(app) as url:
        yield url


def sdk_for(url: str, monkeypatch: pytest.MonkeyPatch) -> plivo.RestClient:
    monkeypatch.setattr(plivo_rest_client, "PLIVO_API_BASE_URI", f"{url}/v1/Account")
    return plivo.RestClient(AUTH_ID, AUTH_TOKEN)


def code_of(url: str, session_uuid: str) -> str:
    answer = httpx.get(f"{url}/__simulator/codes/{session_uuid}")
    assert answer.status_code == 200
    code: str = answer.json()["code"]
    return code


def test_the_sdk_starts_reads_and_validates_a_session(
    flow_sim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = sdk_for(flow_sim, monkeypatch)
    created = sdk.verify_session.create(recipient="+919999000001", channel="sms", code_length=4)
    assert created.message == "Session initiated"
    session = sdk.verify_session.get(created.session_uuid)
    assert (session.status, session.count, session.recipient) == ("in-progress", 1, "919999000001")
    code = code_of(flow_sim, created.session_uuid)
    assert len(code) == 4
    validated = sdk.verify_session.validate(created.session_uuid, code)
    assert validated.message == "session validated successfully."
    after = sdk.verify_session.get(created.session_uuid)
    assert after.status == "verified"
    assert after.charges["validation_charge"] == "0.0500"


def test_a_second_start_for_the_recipient_adds_an_attempt_to_the_open_session(
    flow_sim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = sdk_for(flow_sim, monkeypatch)
    first = sdk.verify_session.create(recipient="919999000002")
    second = sdk.verify_session.create(recipient="919999000002", channel="voice")
    assert second.session_uuid == first.session_uuid
    session = sdk.verify_session.get(first.session_uuid)
    assert [a["channel"] for a in session.attempt_details] == ["sms", "voice"]
    assert session.count == 2


def test_wrong_codes_then_too_many_tries(flow_sim: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = sdk_for(flow_sim, monkeypatch)
    created = sdk.verify_session.create(recipient="919999000003")
    right = code_of(flow_sim, created.session_uuid)
    wrong = "0000000" if right != "0000000" else "1111111"
    for _ in range(10):
        with pytest.raises(exceptions.ValidationError, match="Invalid OTP"):
            sdk.verify_session.validate(created.session_uuid, wrong)
    with pytest.raises(exceptions.ValidationError, match="maximum validation attempts"):
        sdk.verify_session.validate(created.session_uuid, right)


def test_a_code_past_its_expiry_is_refused_and_the_session_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_simulator(
        SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True, code_expiry=0.2)
    )
    with serve_in_thread(app) as url:
        sdk = sdk_for(url, monkeypatch)
        created = sdk.verify_session.create(recipient="919999000004")
        code = code_of(url, created.session_uuid)
        time.sleep(0.3)
        with pytest.raises(exceptions.ValidationError, match="expired"):
            sdk.verify_session.validate(created.session_uuid, code)
        assert sdk.verify_session.get(created.session_uuid).status == "expired"


def test_the_sdk_lists_with_filters_and_pages(
    flow_sim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = sdk_for(flow_sim, monkeypatch)
    uuids = [sdk.verify_session.create(recipient=f"91999900010{n}").session_uuid for n in range(3)]
    page = sdk.verify_session.list(limit=2, offset=0, status="in-progress")
    assert len(page["sessions"]) == 2
    assert page["meta"]["next"] is not None
    rest = sdk.verify_session.list(limit=2, offset=2, status="in-progress")
    assert {s.session_uuid for s in [*page["sessions"], *rest["sessions"]]} >= set(uuids)
    one = sdk.verify_session.list(recipient="919999000101")
    assert [s.session_uuid for s in one["sessions"]] == [uuids[1]]
    verified = sdk.verify_session.list(status="verified")["sessions"]
    assert [s.session_uuid for s in verified] == [RECENT_VERIFIED]  # the one of the last hours
    older = sdk.verify_session.list(status="expired", session_time__lt="2030-01-01 00:00")
    assert older["sessions"]  # the seeded sessions, outside the default 24 hours


def test_the_list_allows_twenty_requests_a_minute(flow_sim: str) -> None:
    auth = (AUTH_ID, AUTH_TOKEN)
    with httpx.Client(base_url=flow_sim, auth=auth) as client:
        statuses = [
            client.get(f"/v1/Account/{AUTH_ID}/Verify/Session/").status_code for _ in range(21)
        ]
    assert statuses == [200] * 20 + [429]


def test_bad_creates_and_lists_are_400(flow_sim: str) -> None:
    auth = (AUTH_ID, AUTH_TOKEN)
    path = f"/v1/Account/{AUTH_ID}/Verify/Session/"
    with httpx.Client(base_url=flow_sim, auth=auth) as client:
        for body in (
            {},
            {"recipient": "abc"},
            {"recipient": "1234567", "channel": "fax"},
            {"recipient": "1234567", "code_length": 12},
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 400
            assert set(answer.json()) == {"api_id", "error"}
        assert client.get(path, params={"limit": 21}).status_code == 400
        assert (
            client.post(path, json={"recipient": "1234567"}, auth=(AUTH_ID, "no")).status_code
            == 401
        )


def test_codes_are_told_only_when_exposed() -> None:
    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN))
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, auth=(AUTH_ID, AUTH_TOKEN)) as client,
    ):
        created = client.post(
            f"/v1/Account/{AUTH_ID}/Verify/Session/", json={"recipient": "1234567"}
        )
        uuid = created.json()["session_uuid"]
        assert client.get(f"/__simulator/codes/{uuid}").status_code == 404


class Receiver:
    """Collects callbacks: the URL they were sent to, headers and form."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.arrived = threading.Event()

    async def endpoint(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.calls.append((str(request.url), dict(request.headers), form))
        self.arrived.set()
        return Response("ok")


def test_callbacks_are_signed_v2_and_v3_and_sent_to_loopback_only(flow_sim: str) -> None:
    receiver = Receiver()
    app = Starlette(routes=[Route("/cb", receiver.endpoint, methods=["POST"])])
    with (
        serve_in_thread(app) as receiver_url,
        httpx.Client(base_url=flow_sim, auth=(AUTH_ID, AUTH_TOKEN)) as client,
    ):
        path = f"/v1/Account/{AUTH_ID}/Verify/Session/"
        far = client.post(path, json={"recipient": "919999000201", "url": "https://example.com/cb"})
        assert far.status_code == 202
        created = client.post(path, json={"recipient": "919999000202", "url": f"{receiver_url}/cb"})
        assert receiver.arrived.wait(5)
        time.sleep(0.2)  # the far one would have arrived by now: it never does
    assert len(receiver.calls) == 1
    url, headers, form = receiver.calls[0]
    assert form["SessionUUID"] == created.json()["session_uuid"]
    assert form["SessionStatus"] == "in-progress"
    nonce = headers["x-plivo-signature-v3-nonce"]
    assert validate_v3_signature(
        "POST", url, nonce, AUTH_TOKEN, headers["x-plivo-signature-v3"], form
    )
    params = {k: [v] for k, v in form.items()}
    assert is_signed(
        "POST",
        url,
        {
            "x-plivo-signature-v2": headers["x-plivo-signature-v2"],
            "x-plivo-signature-v2-nonce": headers["x-plivo-signature-v2-nonce"],
        },
        params,
        [AUTH_TOKEN],
    )
