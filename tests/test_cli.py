"""The plivo-gateway command: exit codes, messages, export-schema, the demo banner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import fixtures
from gateway.cli import demo_banner, main
from gateway.schema import build_schema

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PLIVO_", "GATEWAY_"))}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=CLEAN_ENV | (env or {}),
        timeout=30,
        cwd=ROOT,
        check=False,
    )


def test_serve_without_settings_exits_nonzero_with_one_line_and_no_traceback() -> None:
    result = run("serve")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "plivo-gateway: configuration error: PLIVO_AUTH_ID is not set; PLIVO_AUTH_TOKEN is not set;"
        " GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE) is not set"
    )


def test_serve_with_malformed_settings_names_every_one() -> None:
    result = run(
        "serve",
        env={
            "PLIVO_AUTH_ID": "MA1",
            "PLIVO_AUTH_TOKEN": "t",
            "GATEWAY_PORT": "x",
            "PLIVO_READ_TIMEOUT": "-2",
        },
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line
    for name in ("PLIVO_AUTH_ID", "GATEWAY_PORT", "PLIVO_READ_TIMEOUT"):
        assert name in line
    assert "PLIVO_AUTH_TOKEN" not in line


def test_simulate_without_credential_exits_nonzero() -> None:
    result = run("simulate")
    assert result.returncode == 2
    assert "PLIVO_AUTH_ID is not set" in result.stderr


def test_simulate_with_bad_fault_exits_nonzero() -> None:
    result = run(
        "simulate", "--fault", "sometimes", env={"PLIVO_AUTH_ID": "MA1", "PLIVO_AUTH_TOKEN": "t"}
    )
    assert result.returncode == 2
    assert "--fault" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_schema_prints_the_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema"]) == 0
    assert capsys.readouterr().out == str(build_schema()) + "\n"


def test_export_schema_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    assert main(["export-schema", "--output", str(target)]) == 0
    assert "session(uuid: ID!): VerifySession" in target.read_text()


def test_version_flag() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("plivo-gateway ")


def test_demo_banner_gives_graphiql_and_a_ready_curl() -> None:
    banner = demo_banner("127.0.0.1", 8000, "http://127.0.0.1:8001", "MAXXXXXXXXXXXXXXXXXX")
    assert "http://127.0.0.1:8000/graphql" in banner
    curl = next(line for line in banner.splitlines() if "curl" in line)
    assert fixtures.DOCS_EXAMPLE_UUID in curl
    assert "content-type: application/json" in curl
