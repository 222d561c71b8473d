"""schema.graphql and schema.federation.graphql are committed and equal the exported ones."""

from __future__ import annotations

from pathlib import Path

from gateway.schema import build_schema, exported_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"


def test_committed_schema_equals_the_exported_schema() -> None:
    exported = str(build_schema()) + "\n"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == exported, (
        "schema.graphql is stale: run `plivo-gateway export-schema --output schema.graphql`"
    )


FEDERATION_FILE = SCHEMA_FILE.with_name("schema.federation.graphql")


def test_committed_subgraph_schema_equals_the_exported_subgraph_schema() -> None:
    assert FEDERATION_FILE.read_text(encoding="utf-8") == exported_sdl(federation=True), (
        "schema.federation.graphql is stale: run `make schema`"
    )
