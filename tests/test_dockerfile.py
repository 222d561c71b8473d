"""The image's command, user and health check, read from the Dockerfile (no engine here)."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from pathlib import Path

from gateway.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) of each stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def comments() -> str:
    return "\n".join(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("#")
    )


def instruction(name: str) -> list[str]:
    return [args for inst, args in final_stage() if inst == name]


def test_runs_on_slim_python_311() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]


def test_runs_as_a_non_root_user() -> None:
    users = instruction("USER")
    assert len(users) == 1
    user = users[0].split(":")[0]
    assert user not in ("root", "0")


def test_production_environment() -> None:
    env = " ".join(instruction("ENV"))
    assert "GATEWAY_ENV=production" in env
    assert "GATEWAY_HOST=0.0.0.0" in env


def test_command_is_plivo_gateway_serve() -> None:
    assert [json.loads(cmd) for cmd in instruction("CMD")] == [["plivo-gateway", "serve"]]


def test_health_check_calls_healthz() -> None:
    checks = instruction("HEALTHCHECK")
    assert len(checks) == 1
    assert "CMD" in checks[0]
    assert "/healthz" in checks[0]


def test_stops_on_sigterm() -> None:
    assert instruction("STOPSIGNAL") == ["SIGTERM"]


def test_documents_a_stop_timeout_longer_than_the_shutdown_grace() -> None:
    """`docker stop` waits 10 s by default, no longer than the drain: the note asks for more."""
    grace = {f.name: f.default for f in dataclasses.fields(Settings)}["shutdown_grace"]
    assert isinstance(grace, float)
    timeouts = [int(n) for n in re.findall(r"--stop-timeout (\d+)", comments())]
    periods = [int(n) for n in re.findall(r"stop_grace_period: (\d+)s", comments())]
    assert timeouts
    assert periods
    assert all(n > grace for n in timeouts + periods)


def test_documents_the_public_url_for_callbacks() -> None:
    assert "GATEWAY_PUBLIC_URL" in comments()


def test_installs_the_locked_dependencies_with_hashes_then_the_project_alone() -> None:
    runs = [args for inst, args in stages()[0] if inst == "RUN" and "pip install" in args]
    assert len(runs) == 2
    assert "--require-hashes -r requirements.lock" in runs[0]
    assert "--no-deps" in runs[1]
    assert runs[1].endswith(" .")
    copies = [args for inst, args in stages()[0] if inst == "COPY"]
    assert copies[0].split()[0] == "requirements.lock"


def test_dockerignore_keeps_the_lock_in_the_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [p for p in patterns if fnmatch.fnmatch("requirements.lock", p)] == []
