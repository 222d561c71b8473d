"""Plivo's own Python SDK, pointed at the simulator, reads it as it reads Plivo."""

from __future__ import annotations

import plivo
import pytest
from plivo import exceptions
from plivo.rest import client as plivo_rest_client

from gateway import fixtures
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator


@pytest.fixture
def sdk(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> plivo.RestClient:
    # The SDK reads its base URL from this module constant on every call.
    monkeypatch.setattr(plivo_rest_client, "PLIVO_API_BASE_URI", f"{simulator.url}/v1/Account")
    return plivo.RestClient(AUTH_ID, AUTH_TOKEN)


def plain(value: object) -> object:
    """SDK ResponseObjects as plain dicts and lists, for comparison with the fixture."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: plain(v) for k, v in vars(value).items() if k not in ("client", "_name")}
    return value


@pytest.mark.parametrize("name", sorted(fixtures.session_fixtures()))
def test_sdk_reads_each_seeded_session_with_the_fixture_fields(
    sdk: plivo.RestClient, name: str
) -> None:
    raw = fixtures.session_fixtures()[name]
    session = sdk.verify_session.get(raw["session_uuid"])
    assert session.id == raw["session_uuid"]
    read = plain(session)
    assert isinstance(read, dict)
    for key, value in raw.items():
        assert read[key] == value, key


def test_sdk_raises_not_found_for_an_unknown_session(sdk: plivo.RestClient) -> None:
    with pytest.raises(exceptions.ResourceNotFoundError):
        sdk.verify_session.get("00000000-0000-4000-8000-000000000000")


def test_sdk_raises_authentication_error_for_a_wrong_token(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plivo_rest_client, "PLIVO_API_BASE_URI", f"{simulator.url}/v1/Account")
    wrong = plivo.RestClient(AUTH_ID, "not-the-token")
    with pytest.raises(exceptions.AuthenticationError):
        wrong.verify_session.get(fixtures.DOCS_EXAMPLE_UUID)
