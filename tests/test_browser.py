"""Headless Chromium drives GraphiQL served by `plivo-gateway demo`: a query, a document
replaced and run at once, and a subscription that follows a verification to its end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from gateway import fixtures
from gateway.web import graphiql
from tests.conftest import IN_CI
from tests.servers import free_port, process, wait_for_http

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def require(condition: bool, reason: str) -> None:
    """Skip with a visible reason on a developer's machine; fail under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


@dataclass
class Demo:
    """A running demo, and a Chromium page that records any request leaving the machine."""

    url: str
    simulator_url: str
    page: Any
    offsite: list[str]

    def run(self, fragment: str = "") -> Any:
        """Open GraphiQL (with an operation in the fragment) and press the run button."""
        self.page.goto(f"{self.url}/graphql{fragment}", wait_until="networkidle")
        self.page.locator(".graphiql-execute-button").click()
        return self.page.locator(".result-window")

    def replace_and_run(self, document: str, marker: str) -> str:
        """Replace the query editor's text as a paste does, press run with no pause, and
        return the answer once it holds `marker` or an error (within 15 s)."""
        self.page.locator(".graphiql-query-editor .CodeMirror").click()
        self.page.keyboard.press("ControlOrMeta+A")
        self.page.keyboard.insert_text(document)
        self.page.locator(".graphiql-execute-button").click()
        self.page.wait_for_function(
            """marker => {
                const text = document.querySelector(".result-window").textContent;
                return text.includes(marker) || text.includes('"errors"');
            }""",
            arg=marker,
            timeout=15_000,
        )
        text: str = self.page.locator(".result-window").inner_text()
        return text.replace("\xa0", " ")  # the answer's editor indents with no-break spaces


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    require(CHROMIUM is not None, "Chromium is not installed (apt-get install chromium)")
    require(
        graphiql.local_assets(None) is not None,
        "GraphiQL assets are not installed (make assets needs npm)",
    )
    sync_api = pytest.importorskip("playwright.sync_api")
    port, sim_port = free_port(), free_port()
    args = ("demo", "--port", str(port), "--simulator-port", str(sim_port))
    with process(*args, env={}, log=tmp_path / "demo.log"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            try:
                page = browser.new_page()
                offsite: list[str] = []
                page.on(
                    "request",
                    lambda r: offsite.append(r.url) if "127.0.0.1" not in r.url else None,
                )
                yield Demo(
                    f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}", page, offsite
                )
                page.screenshot(path=str(tmp_path / "graphiql.png"))
            finally:
                browser.close()


def test_graphiql_runs_the_example_query_offline(demo: Demo) -> None:
    result = demo.run()
    result.get_by_text(fixtures.DOCS_EXAMPLE_UUID).first.wait_for(timeout=15_000)
    text = result.inner_text()
    assert '"status": "EXPIRED"' in text
    assert '"charge": "0.03300"' in text
    assert [url for url in demo.offsite if not url.startswith("data:")] == []


def test_graphiql_runs_a_replaced_document_at_once(demo: Demo) -> None:
    """GraphiQL settles the operation name 100 ms after an edit; a run before that must
    still send a name the new document has (or none), never the old document's."""
    demo.page.goto(f"{demo.url}/graphql", wait_until="networkidle")
    uuid = fixtures.DOCS_EXAMPLE_UUID
    for i in range(10):
        documents = {
            # anonymous, after a named operation (the preloaded Session, then Again{i-1})
            f"anon{i}": f'{{ anon{i}: session(uuid: "{uuid}") {{ status }} }}',
            # named, after an anonymous one
            f"other{i}": f'query Other{i} {{ other{i}: session(uuid: "{uuid}") {{ status }} }}',
            # named, after another named one
            f"again{i}": f'query Again{i} {{ again{i}: session(uuid: "{uuid}") {{ status }} }}',
        }
        for marker, document in documents.items():
            text = demo.replace_and_run(document, f'"{marker}"')
            assert "no operation with that name" not in text, (i, document, text)
            assert f'"{marker}": {{' in text, (i, document, text)
            assert '"status": "EXPIRED"' in text, (i, document, text)
    assert [url for url in demo.offsite if not url.startswith("data:")] == []


def test_graphiql_follows_a_verification_over_a_subscription(demo: Demo) -> None:
    start = 'mutation { startVerification(input: {recipient: "+14155550100"}) { sessionUuid } }'
    started = httpx.post(f"{demo.url}/graphql", json={"query": start}).json()
    uuid = started["data"]["startVerification"]["sessionUuid"]
    watch = "subscription Watch($uuid: ID!) { sessionUpdated(uuid: $uuid) { status count } }"
    fragment = "#" + urlencode({"query": watch, "variables": json.dumps({"uuid": uuid})})
    result = demo.run(fragment)
    result.get_by_text("IN_PROGRESS").first.wait_for(timeout=15_000)
    code = httpx.get(f"{demo.simulator_url}/__simulator/codes/{uuid}").json()["code"]
    check = "mutation($u: ID!, $o: String!) { validateSession(uuid: $u, otp: $o) { result } }"
    checked = httpx.post(
        f"{demo.url}/graphql", json={"query": check, "variables": {"u": uuid, "o": code}}
    ).json()
    assert checked["data"]["validateSession"]["result"] == "VERIFIED"
    result.get_by_text("VERIFIED").first.wait_for(timeout=15_000)
    assert [url for url in demo.offsite if not url.startswith("data:")] == []
