"""The README's first lines, its examples and its recipe stay true; every relative link of the
docs reaches a file and a heading."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


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


async def test_the_readme_curl_sends_what_the_example_sends(gateway: httpx.AsyncClient) -> None:
    command = block_after("example-curl", "bash")
    payload = json.loads(re.search(r"-d '(.*?)'", command, re.S).group(1))  # type: ignore[union-attr]
    response = await gateway.post("/graphql", json=payload)
    assert response.json()["data"] == {
        "session": {"sessionUuid": "60ea68db-b123-46d9-9eb2-1201d516dbbd", "status": "EXPIRED"}
    }


def test_the_readme_recipe_serves_with_a_generated_key(tmp_path: Path) -> None:
    # The recipe as written, on free ports: simulate, a generated key, serve, one query.
    recipe = block_after("try-serve", "bash")
    port, sim = free_port(), free_port()
    recipe = recipe.replace("port=8000 sim=8001", f"port={port} sim={sim}", 1)
    assert f"port={port}" in recipe, "the recipe's first line names its ports"
    script = tmp_path / "recipe.sh"
    script.write_text("set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + recipe)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLIVO_", "GATEWAY_"))}
    done = subprocess.run(
        ["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"data": {"__typename": "Query"}}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_of_the_docs_reaches_a_file_and_a_heading() -> None:
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in slugs(file.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    assert len(pages) >= 9  # the README, BENCHMARKS.md and the reference in docs/


def test_the_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 150
