"""Headless Chromium drives GraphiQL served by `plivo-gateway demo`: a query, and a
subscription that follows a verification to its end."""

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
