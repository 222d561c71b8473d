"""schema.graphql is committed and equals the exported schema."""

from __future__ import annotations

from pathlib import Path

from gateway.schema import build_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"


def test_committed_schema_equals_the_exported_schema() -> None:
    exported = str(build_schema()) + "\n"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == exported, (
        "schema.graphql is stale: run `plivo-gateway export-schema --output schema.graphql`"
    )
