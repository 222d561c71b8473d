"""The schema executed directly, with fake services in the context."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from gateway import fixtures
from gateway.errors import UpstreamFailed, UpstreamRejected, UpstreamTimeout
from gateway.plivo.models import Session, parse_session
from gateway.schema import SchemaOptions, build_schema
from gateway.schema.context import Context

READ = frozenset({"read"})
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


@dataclass(frozen=True)
class FakeLookup:
    session: Session | None
    source: str = "miss"
    age: float = 0.0
    fresh_for: float = 60.0


class FakeSessions:
    """A SessionReader that answers from a dict, or raises what it was given."""

    def __init__(self, sessions: dict[str, Session] | None = None, error: Exception | None = None):
        self.sessions = sessions or {}
        self.error = error
        self.asked: list[tuple[str, bool]] = []

    async def get(
        self, session_uuid: str, *, refresh: bool = False, caller: str = "anonymous"
    ) -> FakeLookup:
        self.asked.append((session_uuid, refresh))
        if self.error is not None:
            raise self.error
        return FakeLookup(self.sessions.get(session_uuid))


def docs_session() -> Session:
    return parse_session(fixtures.load("get-docs-example"))


async def test_session_resolves_through_the_context_service() -> None:
    fake = FakeSessions({fixtures.DOCS_EXAMPLE_UUID: docs_session()})
    result = await build_schema().execute(
        QUERY,
        variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
        context_value=Context(fake, scopes=READ),
    )
    assert result.errors is None
    assert result.data == {
        "session": {"sessionUuid": fixtures.DOCS_EXAMPLE_UUID, "status": "EXPIRED"}
    }


async def test_unknown_session_is_null() -> None:
    result = await build_schema().execute(
        QUERY,
        variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
        context_value=Context(FakeSessions(), scopes=READ),
    )
    assert result.errors is None
    assert result.data == {"session": None}


async def test_an_unexpected_exception_is_masked_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeSessions(error=RuntimeError("database password is hunter2"))
    with caplog.at_level(logging.ERROR):
        result = await build_schema().execute(
            QUERY,
            variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
            context_value=Context(fake, scopes=READ),
        )
    assert result.errors is not None
    error = result.errors[0].formatted
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "hunter2" not in str(error)
    assert "Traceback" in caplog.text
    assert "RuntimeError: database password is hunter2" in caplog.text


@pytest.mark.parametrize(
    ("error", "extensions"),
    [
        (UpstreamTimeout("t", method="GET", path="/p"), {"code": "UPSTREAM_TIMEOUT"}),
        (UpstreamFailed("f", method="GET", path="/p"), {"code": "UPSTREAM_ERROR"}),
        (
            UpstreamRejected("r", method="GET", path="/p", status_code=422),
            {"code": "UPSTREAM_REJECTED", "upstreamStatus": 422},
        ),
    ],
)
async def test_gateway_errors_keep_their_message_and_code(
    error: Exception, extensions: dict[str, object]
) -> None:
    result = await build_schema().execute(
        QUERY,
        variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
        context_value=Context(FakeSessions(error=error), scopes=READ),
    )
    assert result.errors is not None
    assert result.errors[0].formatted["extensions"] == extensions
    assert result.errors[0].message == str(error)


async def test_validation_and_parse_errors_have_codes() -> None:
    schema = build_schema()
    invalid = await schema.execute(
        "{ session(uuid: 1) { nope } }", context_value=Context(FakeSessions(), scopes=READ)
    )
    assert invalid.errors is not None
    assert {e.formatted["extensions"]["code"] for e in invalid.errors} == {
        "GRAPHQL_VALIDATION_FAILED"
    }
    broken = await schema.execute("{ session(", context_value=Context(FakeSessions(), scopes=READ))
    assert broken.errors is not None
    assert broken.errors[0].formatted["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}


async def test_missing_variable_is_bad_user_input() -> None:
    result = await build_schema().execute(QUERY, context_value=Context(FakeSessions(), scopes=READ))
    assert result.errors is not None
    assert result.errors[0].formatted["extensions"] == {"code": "BAD_USER_INPUT"}


async def test_production_schema_refuses_introspection_and_suggestions() -> None:
    schema = build_schema(SchemaOptions(introspection=False))
    result = await schema.execute(
        "{ __schema { types { name } } }", context_value=Context(FakeSessions(), scopes=READ)
    )
    assert result.errors is not None
    assert result.errors[0].formatted["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    typo = await schema.execute(
        '{ session(uuid: "x") { sesionUuid } }', context_value=Context(FakeSessions(), scopes=READ)
    )
    assert typo.errors is not None
    assert "Did you mean" not in typo.errors[0].message


async def test_development_schema_allows_introspection() -> None:
    result = await build_schema().execute(
        "{ __schema { queryType { name } } }", context_value=Context(FakeSessions(), scopes=READ)
    )
    assert result.errors is None
    assert result.data == {"__schema": {"queryType": {"name": "Query"}}}


async def test_aliases_of_one_uuid_are_loaded_once_per_request() -> None:
    fake = FakeSessions({fixtures.DOCS_EXAMPLE_UUID: docs_session()})
    upper = fixtures.DOCS_EXAMPLE_UUID.upper()
    query = f"""{{
      a: session(uuid: "{fixtures.DOCS_EXAMPLE_UUID}") {{ status }}
      b: session(uuid: "{fixtures.DOCS_EXAMPLE_UUID}") {{ channel }}
      c: session(uuid: "{upper}") {{ sessionUuid }}
      d: session(uuid: "5c533d15-1975-4f20-80be-40174142ea37") {{ status }}
    }}"""
    result = await build_schema().execute(query, context_value=Context(fake, scopes=READ))
    assert result.errors is None
    assert sorted(fake.asked) == [
        ("5c533d15-1975-4f20-80be-40174142ea37", False),
        (fixtures.DOCS_EXAMPLE_UUID, False),
    ]
    assert result.extensions == {
        "cache": {
            fixtures.DOCS_EXAMPLE_UUID: {"status": "miss", "age": 0.0},
            "5c533d15-1975-4f20-80be-40174142ea37": {"status": "miss", "age": 0.0},
        }
    }


async def test_a_new_context_loads_again() -> None:
    fake = FakeSessions({fixtures.DOCS_EXAMPLE_UUID: docs_session()})
    for _ in range(2):
        await build_schema().execute(
            QUERY,
            variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
            context_value=Context(fake, scopes=READ),
        )
    assert len(fake.asked) == 2


async def test_refresh_is_passed_to_the_reader() -> None:
    fake = FakeSessions({fixtures.DOCS_EXAMPLE_UUID: docs_session()})
    await build_schema().execute(
        QUERY,
        variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
        context_value=Context(fake, refresh=True, scopes=READ),
    )
    assert fake.asked == [(fixtures.DOCS_EXAMPLE_UUID, True)]


async def test_a_context_without_a_principal_may_do_nothing() -> None:
    result = await build_schema().execute(
        QUERY,
        variable_values={"uuid": fixtures.DOCS_EXAMPLE_UUID},
        context_value=Context(FakeSessions()),
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}
