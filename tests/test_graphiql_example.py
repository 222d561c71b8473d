"""GraphiQL opens with the README's example: its query, as written there, and its variables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from gateway import fixtures

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def readme_example() -> tuple[str, dict[str, object]]:
    """The block after `<!-- example-query -->`, and the variables the README gives it."""
    block = re.search(r"<!-- example-query -->\n```graphql\n(.*?)```", README, re.S)
    given = re.search(r"with the variables `(\{.*?\})`", README)
    assert block, "README has a graphql block after <!-- example-query -->"
    assert given, "README names the example's variables"
    variables: dict[str, object] = json.loads(given.group(1))
    return block.group(1), variables


def preloaded(page: str, name: str) -> str:
    """The JS string literal the page falls back to for `linked.get(name)`."""
    marker = f'linked.get("{name}") || '
    start = page.index(marker) + len(marker)
    text, _ = json.JSONDecoder().raw_decode(page, start)
    assert isinstance(text, str)
    return text


async def test_graphiql_preloads_the_readme_example_query_and_variables(
    gateway: httpx.AsyncClient,
) -> None:
    page = (await gateway.get("/graphql", headers={"accept": "text/html"})).text
    query, variables = readme_example()
    assert preloaded(page, "query") == query
    assert json.loads(preloaded(page, "variables")) == variables
    assert variables == {"uuid": fixtures.DOCS_EXAMPLE_UUID}
