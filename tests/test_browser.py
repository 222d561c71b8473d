"""Headless Chromium runs the example query in GraphiQL served by `plivo-gateway demo`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway import fixtures, graphiql
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


def test_graphiql_runs_the_example_query_offline(tmp_path: Path) -> None:
    require(CHROMIUM is not None, "Chromium is not installed (apt-get install chromium)")
    require(
        graphiql.local_assets(None) is not None,
        "GraphiQL assets are not installed (make assets needs npm)",
    )
    sync_api = pytest.importorskip("playwright.sync_api")
    port, sim_port = free_port(), free_port()
    demo = ("demo", "--port", str(port), "--simulator-port", str(sim_port))
    with process(*demo, env={}, log=tmp_path / "demo.log"):
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
                page.goto(f"http://127.0.0.1:{port}/graphql", wait_until="networkidle")
                page.locator(".graphiql-execute-button").click()
                result = page.locator(".result-window")
                result.get_by_text(fixtures.DOCS_EXAMPLE_UUID).first.wait_for(timeout=15_000)
                text = result.inner_text()
                page.screenshot(path=str(tmp_path / "graphiql.png"))
            finally:
                browser.close()
    assert '"status": "EXPIRED"' in text
    assert '"charge": "0.03300"' in text
    assert [url for url in offsite if not url.startswith("data:")] == []
