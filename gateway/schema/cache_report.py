"""The `extensions.cache` entry of a response: where each session came from."""

from __future__ import annotations

from strawberry.extensions import SchemaExtension


class CacheReport(SchemaExtension):
    """Adds `extensions.cache`: per uuid, hit, miss or stale, and the entry's age in seconds."""

    def get_results(self) -> dict[str, object]:
        report = getattr(self.execution_context.context, "cache_report", None)
        return {"cache": dict(report)} if report else {}
