"""Recipients: read as international numbers, and named at rest by an HMAC under a secret."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import InvalidInput
from gateway.plivo.credentials import Credential
from gateway.plivo.flow import plivo_recipient
from gateway.verify.guards import recipient_id, recipient_key

NUMBER = "14155550199"


@pytest.mark.parametrize(
    "given",
    [
        "+14155550199",
        "14155550199",
        "0014155550199",
        "+0014155550199",
        "+1 (415) 555-0199",
        "  +1.415.555.0199 ",
    ],
)
def test_one_number_however_written_is_e164_digits(given: str) -> None:
    assert plivo_recipient(given) == NUMBER


def test_numbers_of_other_countries_keep_their_country_code() -> None:
    assert plivo_recipient("+44 7911 123456") == "447911123456"
    assert plivo_recipient("00919999000301") == "919999000301"


@pytest.mark.parametrize(
    "given",
    ["1234567", "04155550199", "+999 1234 5678", "+1 415 555 019", "tel:+14155550199", "++1415"],
)
def test_what_is_not_a_valid_international_number_is_refused_without_echo(given: str) -> None:
    with pytest.raises(InvalidInput, match="recipient") as refused:
        plivo_recipient(given)
    assert given not in str(refused.value)


def test_a_recipient_is_named_by_an_hmac_of_the_credential_never_a_bare_hash() -> None:
    account = Credential("MAODZKMDFJMJU3MTEYNG", "token-a")
    key = recipient_key("a-secret-of-the-fleet", "token-a")
    named = recipient_id(key, account, NUMBER)
    assert named != hashlib.sha256(NUMBER.encode()).hexdigest()[:32]
    assert named != recipient_id(recipient_key("another-secret-0000", "token-a"), account, NUMBER)
    other = Credential("SAODZKMDFJMJU3MTEYNG", "token-b")
    assert named != recipient_id(key, other, NUMBER)  # each account its own counters
    # Without a secret: derived from the token, the same on every instance that shares it.
    derived = recipient_key(None, "token-a")
    assert derived == recipient_key(None, "token-a") != recipient_key(None, "token-b")
    assert b"token-a" not in derived
