"""The image's command, user and health check, read from the Dockerfile (no engine here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the last stage, continuation lines joined."""
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
    return stages[-1]


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
