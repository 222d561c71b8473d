"""Node.js projects the tests drive (Apollo's composer and client, GraphQL Code Generator, tsc).

Each project keeps a package.json and a package-lock.json in the repository; `npm_project`
installs exactly the locked versions (`npm ci`) on first use, once per lock, and hands back
the folder. Where node or npm is missing the test is skipped with the reason; under CI it fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
NODE_TESTS = ROOT / "tests" / "node"
# npm ci of a project takes 5-60 s on a fresh machine; far longer means the registry is away.
INSTALL_TIMEOUT = 240.0


def require_node() -> str:
    """The path of node; skipped with a reason when node or npm is missing (failed under CI)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are needed for this test (apt-get install nodejs npm)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def npm_project(folder: Path) -> Path:
    """`folder` with its locked dependencies installed (npm ci, skipped when already done)."""
    require_node()
    lock = folder / "package-lock.json"
    stamp = folder / "node_modules" / ".installed-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    with open(folder / ".npm-install.lock", "w") as guard:  # one install at a time
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest:
            return folder
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {folder} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(digest)
    return folder


def run_node(script: str, payload: Any, *, folder: Path = NODE_TESTS, timeout: float = 60) -> Any:
    """Run `script` (a file in `folder`) with `payload` as JSON on stdin; its JSON stdout."""
    node = require_node()
    npm_project(folder)
    done = subprocess.run(
        [node, script],
        cwd=folder,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"node {script} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)
