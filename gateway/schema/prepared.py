"""Lets Strawberry run a document the pipeline has already parsed and validated."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension


class PreparedDocument(SchemaExtension):
    """Uses the Context's `document` instead of parsing and validating the query text again."""

    def on_parse(self) -> Iterator[None]:
        document = getattr(self.execution_context.context, "document", None)
        if document is not None:
            self.execution_context.graphql_document = document
        yield

    def on_validate(self) -> Iterator[None]:
        if getattr(self.execution_context.context, "document", None) is not None:
            self.execution_context.pre_execution_errors = []  # validated when it was parsed
        yield
