"""The README's first lines and its example stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def block_after(marker: str, language: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README, re.S)
    assert match, f"README has no {language} block after <!-- {marker} -->"
    return match.group(1)


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_block[0].startswith("make demo")
    assert first_block[1].startswith("make test")


async def test_readme_example_query_gives_the_readme_answer(gateway: httpx.AsyncClient) -> None:
    query = block_after("example-query", "graphql")
    answer = json.loads(block_after("example-answer", "json"))
    response = await gateway.post(
        "/graphql",
        json={"query": query, "variables": {"uuid": "60ea68db-b123-46d9-9eb2-1201d516dbbd"}},
    )
    assert response.json() == answer
