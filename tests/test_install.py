"""What `make` installs: pinned locks with hashes, the runtime for the demo, dev tools for tests."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
DEV_TARGETS = ["test", "lint", "typecheck", "importlint", "hadolint", "pytest", "bench"]


def pins(lock: Path) -> dict[NormalizedName, Version]:
    """Each package the lock pins, with its version."""
    found = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def entries(lock: Path) -> dict[str, str]:
    """Each pin's whole entry: its line and the continuation lines below it."""
    blocks: dict[str, str] = {}
    name = ""
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = match[1]
            blocks[name] = ""
        if name:
            blocks[name] += line + "\n"
    return blocks


def declared(*extras: str) -> list[Requirement]:
    """pyproject.toml's dependencies, with the named extras' too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"]]
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


def dry_run(target: str, tmp_path: Path, *args: str) -> str:
    """The commands `make TARGET` would run on a fresh virtualenv (make -n runs nothing)."""
    venv = tmp_path / "venv"
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")  # when `make test` runs this
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}", *args],
        cwd=ROOT,
        env={name: value for name, value in os.environ.items() if name not in outer},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def pip_installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if "-m pip install" in line]


@pytest.mark.parametrize(
    ("lock", "extras"), [(LOCK, ()), (DEV_LOCK, ("dev",))], ids=["runtime", "dev"]
)
def test_lock_pins_every_declared_dependency_within_its_range(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    stale = [
        f"{req} (locked: {pinned.get(canonicalize_name(req.name), 'missing')})"
        for req in declared(*extras)
        if canonicalize_name(req.name) not in pinned
        or not req.specifier.contains(pinned[canonicalize_name(req.name)], prereleases=True)
    ]
    assert stale == [], f"{lock.name} is stale, run `make lock`: {stale}"


def test_runtime_lock_holds_no_dev_tool() -> None:
    tools = {"playwright", "mypy", "schemathesis", "plivo", "ruff", "pytest", "hypothesis"}
    assert sorted(tools & set(pins(LOCK))) == []
    assert tools <= set(pins(DEV_LOCK))


def test_runtime_lock_agrees_with_the_dev_lock() -> None:
    """The image runs exactly the versions `make test` tested."""
    dev = pins(DEV_LOCK)
    differ = {name: (v, dev.get(name)) for name, v in pins(LOCK).items() if dev.get(name) != v}
    assert differ == {}


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_a_hash(lock: Path) -> None:
    blocks = entries(lock)
    assert blocks
    assert [name for name, block in blocks.items() if "--hash=sha256:" not in block] == []


def test_demo_installs_the_runtime_lock_only_and_shows_progress(tmp_path: Path) -> None:
    installs = pip_installs(dry_run("demo", tmp_path))
    assert any("--require-hashes -r requirements.lock" in line for line in installs)
    assert not any("requirements-dev.lock" in line or "[dev]" in line for line in installs)
    assert not any(re.search(r"\s(--quiet|-q)\b", line) for line in installs)


def test_demo_installs_the_project_without_resolving_again(tmp_path: Path) -> None:
    installs = pip_installs(dry_run("demo", tmp_path))
    project = [line for line in installs if line.endswith(" -e .")]
    assert project
    assert all("--no-deps" in line for line in project)


@pytest.mark.parametrize("target", DEV_TARGETS)
def test_targets_that_run_dev_tools_install_the_dev_lock(target: str, tmp_path: Path) -> None:
    installs = pip_installs(dry_run(target, tmp_path))
    assert any("--require-hashes -r requirements-dev.lock" in line for line in installs)


def test_demo_ports_can_be_chosen(tmp_path: Path) -> None:
    commands = dry_run("demo", tmp_path, "DEMO_PORT=8123", "DEMO_SIMULATOR_PORT=8124")
    assert "plivo-gateway demo --port 8123 --simulator-port 8124" in commands


def test_lock_target_regenerates_both_locks_with_hashes(tmp_path: Path) -> None:
    commands = dry_run("lock", tmp_path)
    assert "--generate-hashes" in commands
    assert "-o requirements-dev.lock" in commands
    assert "-c requirements-dev.lock" in commands
    assert "-o requirements.lock" in commands
