"""schemathesis in GraphQL mode against the live app: generated queries never get a 5xx."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.graphql import from_url

from gateway.app import create_app
from tests.conftest import Simulator, make_settings
from tests.servers import serve_in_thread

MAX_EXAMPLES = 60


def check(case: schemathesis.Case[Any], seen: list[int]) -> None:
    response = case.call(timeout=10)
    seen.append(response.status_code)
    assert response.status_code < 500, response.text
    body = response.json()
    assert "errors" in body or "data" in body
    for error in body.get("errors", []):
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error


def test_generated_queries_never_get_a_5xx(simulator: Simulator) -> None:
    # schemathesis' pytest plugin does not yet run under pytest 9, so its strategies are
    # driven with hypothesis directly, one operation of the schema after another.
    app = create_app(make_settings(simulator.url, GATEWAY_REFRESH_PER_MINUTE=100_000))
    with serve_in_thread(app, lifespan=True) as url:
        schema = from_url(f"{url}/graphql")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert operations, "the schema has no operations"
        seen: list[int] = []
        for operation in operations:
            run = settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )(given(case=operation.as_strategy())(lambda case: check(case, seen)))
            run()
    assert len(seen) >= MAX_EXAMPLES // 2
    assert all(status < 500 for status in seen)
