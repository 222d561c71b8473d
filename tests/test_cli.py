"""The plivo-gateway command: exit codes, messages, export-schema, the demo banner, --help."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import fixtures
from gateway.cli import _parser, demo_banner, main
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
    banner = demo_banner(
        "127.0.0.1", 8000, "http://127.0.0.1:8001", "MAXXXXXXXXXXXXXXXXXX", "generated-token"
    )
    assert "http://127.0.0.1:8000/graphql" in banner
    curl = next(line for line in banner.splitlines() if "curl" in line)
    assert fixtures.DOCS_EXAMPLE_UUID in curl
    assert "content-type: application/json" in curl


def test_demo_banner_gives_what_calling_the_simulator_directly_needs() -> None:
    banner = demo_banner(
        "127.0.0.1", 8000, "http://127.0.0.1:8001", "MAXXXXXXXXXXXXXXXXXX", "generated-token"
    )
    assert "http://127.0.0.1:8001" in banner
    assert "MAXXXXXXXXXXXXXXXXXX" in banner
    assert "generated-token" in banner
    curl = next(line for line in banner.splitlines() if "curl" in line and " -u " in line)
    assert "MAXXXXXXXXXXXXXXXXXX:generated-token" in curl
    path = f"/v1/Account/MAXXXXXXXXXXXXXXXXXX/Verify/Session/{fixtures.DOCS_EXAMPLE_UUID}/"
    assert curl.endswith(f"http://127.0.0.1:8001{path}")


# --- every input checked like the environment: one line, exit 2, before anything starts ------

GOOD_ENV = {
    "PLIVO_AUTH_ID": "MAODZKMDFJMJU3MTEYNG",
    "PLIVO_AUTH_TOKEN": "tok",
    "GATEWAY_AUTH": "none",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any PLIVO_ or GATEWAY_ variable, for main() in-process."""
    for name in list(os.environ):
        if name.startswith(("PLIVO_", "GATEWAY_")):
            monkeypatch.delenv(name)
    return monkeypatch


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """main(argv) exits 2 with one line on stderr, no traceback and nothing on stdout: the line."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no banner, no "serving on"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("plivo-gateway: configuration error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["serve", "--port", "70000"], ["--port must be a port number from 1 to 65535"]),
        (["serve", "--port", "-1"], ["--port must be a port number from 1 to 65535"]),
        (["serve", "--port", "http"], ["--port must be"]),
        (["serve", "--workers", "0"], ["--workers must be a whole number of at least 1"]),
        (
            ["serve", "--host", "", "--port", "0", "--workers", "-2"],
            ["--host", "--port", "--workers"],
        ),
        (["demo", "--port", "0", "--simulator-port", "65536"], ["--port", "--simulator-port"]),
        (["demo", "--port", "8123", "--simulator-port", "8123"], ["must differ"]),
        (
            [
                "simulate",
                "--port",
                "99999",
                "--latency-ms",
                "-5",
                "--code-expiry",
                "0",
                "--fault",
                "sometimes",
                "--extra-credential",
                "no-colon",
            ],
            ["--port", "--latency-ms", "--code-expiry", "--fault", "--extra-credential"],
        ),
        (
            ["simulate", "--latency-ms", "nan", "--code-expiry", "inf"],
            ["--latency-ms", "--code-expiry"],
        ),
    ],
)
def test_out_of_range_options_are_named_together_in_one_line(
    argv: list[str],
    named: list[str],
    environ: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in GOOD_ENV.items():
        environ.setenv(name, value)
    line = refused(capsys, *argv)
    for part in named:
        assert part in line
    assert "Traceback" not in line


def test_options_and_settings_are_named_in_the_same_line(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "serve", "--port", "70000")
    assert line.endswith(
        "--port must be a port number from 1 to 65535; PLIVO_AUTH_ID is not set;"
        " PLIVO_AUTH_TOKEN is not set; GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE) is not set:"
        " configure API keys, or set GATEWAY_AUTH=none to run without them"
    )


def test_a_malformed_key_source_is_named_once_through_the_command(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ.setenv("PLIVO_AUTH_ID", GOOD_ENV["PLIVO_AUTH_ID"])
    environ.setenv("PLIVO_AUTH_TOKEN", "tok")
    environ.setenv("GATEWAY_API_KEYS", "frontend:abc:read")
    line = refused(capsys, "serve")
    assert line == (
        "plivo-gateway: configuration error: GATEWAY_API_KEYS entries must be"
        " name:sha256-hex:scopes (a 64-digit hex digest)"
    )


@pytest.fixture
def taken() -> Iterator[tuple[int, int]]:
    """Two loopback ports something listens on, as a running demo's would be."""
    with socket.socket() as first, socket.socket() as second:
        for sock in (first, second):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield first.getsockname()[1], second.getsockname()[1]


def test_a_second_demo_names_both_ports_in_use_before_any_banner(
    taken: tuple[int, int], environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port, sim_port = taken
    line = refused(capsys, "demo", "--port", str(port), "--simulator-port", str(sim_port))
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert "choose another with --port;" in line
    assert f"port {sim_port} on 127.0.0.1 is already in use" in line
    assert line.endswith("choose another with --simulator-port")


def test_demo_names_the_one_port_in_use(
    taken: tuple[int, int], environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
    line = refused(capsys, "demo", "--port", str(free_port), "--simulator-port", str(taken[1]))
    assert line == (
        f"plivo-gateway: configuration error: port {taken[1]} on 127.0.0.1 is already in use:"
        " stop what listens there, or choose another with --simulator-port"
    )


@pytest.mark.parametrize("command", ["serve", "simulate"])
def test_serve_and_simulate_name_a_port_in_use(
    command: str,
    taken: tuple[int, int],
    environ: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in GOOD_ENV.items():
        environ.setenv(name, value)
    line = refused(capsys, command, "--port", str(taken[0]))
    assert f"port {taken[0]} on 127.0.0.1 is already in use" in line


def test_serve_names_a_port_in_use_given_by_the_environment(
    taken: tuple[int, int], environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in GOOD_ENV.items():
        environ.setenv(name, value)
    environ.setenv("GATEWAY_PORT", str(taken[0]))
    line = refused(capsys, "serve")
    assert f"port {taken[0]} on 127.0.0.1 is already in use" in line
    assert "GATEWAY_PORT" in line


def test_a_host_that_is_not_this_machines_is_one_line(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "demo", "--host", "192.0.2.1")  # TEST-NET-1: no machine has it
    assert "cannot listen on 192.0.2.1 port 8000" in line
    assert "cannot listen on 192.0.2.1 port 8001" in line


def test_export_schema_to_an_unwritable_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "dir" / "x.graphql"
    line = refused(capsys, "export-schema", "--output", str(target))
    assert line == (
        f"plivo-gateway: configuration error: --output {target} cannot be written"
        " (No such file or directory)"
    )


def test_simulate_refuses_a_log_level_it_does_not_know(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in GOOD_ENV.items():
        environ.setenv(name, value)
    environ.setenv("GATEWAY_LOG_LEVEL", "chatty")
    line = refused(capsys, "simulate")
    assert line.endswith("GATEWAY_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")


def test_a_taken_port_is_refused_by_the_real_command_without_a_traceback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = str(sock.getsockname()[1])
        result = run("demo", "--port", port, "--simulator-port", port)
        assert result.returncode == 2
        assert result.stderr.strip().endswith("--port and --simulator-port must differ")
        result = run("serve", "--port", port, env=GOOD_ENV)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


# --- --help ----------------------------------------------------------------------------------


def commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    choices: dict[str, argparse.ArgumentParser] = action.choices
    return choices


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal


@pytest.mark.parametrize("command", ["serve", "simulate", "demo", "export-schema"])
def test_each_command_describes_itself_and_names_every_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = commands()[command]
    assert parser.description
    text = help_of(command, capsys)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help is not None
        assert "(default: " in action.help or "default: " in action.help, action.option_strings
        if isinstance(action.default, str):
            assert f"default: {action.default})" in text, action.option_strings


def test_serve_help_names_the_required_variables_first(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("serve", capsys)
    assert "(default: GATEWAY_PORT, else 8000)" in text
    assert "(default: GATEWAY_HOST, else 127.0.0.1)" in text
    required, optional = text.split("environment, required:")[1].split("environment, optional")
    for name in ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN", "GATEWAY_API_KEYS", "GATEWAY_API_KEYS_FILE"):
        assert name in required
    # The optional ones are derived from the settings: the first and the last they read.
    for name in ("PLIVO_API_URL", "GATEWAY_RECIPIENT_SECRET", "GATEWAY_LOG_LEVEL"):
        assert name in optional
    assert "GATEWAY_CACHE_STALE_IF_ERROR" not in text  # a retired name, only refused


def test_simulate_help_documents_the_extra_credential(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("simulate", capsys)
    assert "--extra-credential AUTH_ID:TOKEN one more account the simulator accepts" in text
    assert text.index("PLIVO_AUTH_ID") < text.index("GATEWAY_LOG_LEVEL")


def test_demo_help_says_what_it_sets_and_what_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("demo", capsys)
    assert "environment: none is required" in text
    read = text.split("GATEWAY_LOG_FORMAT text by default):")[1]
    assert "GATEWAY_CACHE_URL" in read
    for own in ("PLIVO_AUTH_ID", "PLIVO_API_URL", "GATEWAY_PORT", "GATEWAY_AUTH,"):
        assert own not in read
