"""examples/typescript: its generated code is current, tsc checks it, and a gateway deployed with
its manifest (only trusted documents) answers its operations and refuses any other document.

Each test works on a copy of the example beside a copy of schema.graphql, laid out as in the
repository and sharing its installed node_modules, so nothing is written into the work tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import fixtures
from gateway.operations.principals import key_digest
from gateway.simulator.seed import RECENT_VERIFIED
from tests.conftest import AUTH_ID, AUTH_TOKEN
from tests.node_tools import npm_project
from tests.servers import free_port, process, wait_for_http

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "typescript"
GENERATED = EXAMPLE / "src" / "gql"
MANIFEST = GENERATED / "persisted-documents.json"
API_KEY = "typescript-example-key-0123456789"
# Generous for a loaded machine; each wait ends as soon as its thing is done.
DEADLINE = 60.0


def copy_example(into: Path) -> Path:
    """The example (generated code included) and schema.graphql under `into`, as in the repo."""
    npm_project(EXAMPLE)
    shutil.copy2(ROOT / "schema.graphql", into / "schema.graphql")
    folder = into / "examples" / "typescript"
    shutil.copytree(EXAMPLE / "src", folder / "src")
    for name in ("package.json", "codegen.ts", "tsconfig.json"):
        shutil.copy2(EXAMPLE / name, folder / name)
    (folder / "node_modules").symlink_to(EXAMPLE / "node_modules", target_is_directory=True)
    return folder


def npm_run(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`npm run <script>` of the example's package.json, in `folder`."""
    return subprocess.run(
        ["npm", "run", "--silent", script],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*.*")}


def test_codegen_regenerates_exactly_the_committed_src_gql(tmp_path: Path) -> None:
    folder = copy_example(tmp_path)
    shutil.rmtree(folder / "src" / "gql")
    done = npm_run(folder, "codegen")
    assert done.returncode == 0, done.stdout + done.stderr
    regenerated, committed = files_under(folder / "src" / "gql"), files_under(GENERATED)
    assert "persisted-documents.json" in regenerated
    names = regenerated.keys() | committed.keys()
    stale = sorted(name for name in names if regenerated.get(name) != committed.get(name))
    assert stale == [], "schema.graphql or src/ changed: `npm run codegen` in examples/typescript"


def test_tsc_accepts_the_example_and_refuses_a_field_it_did_not_select(tmp_path: Path) -> None:
    folder = copy_example(tmp_path)
    checked = npm_run(folder, "typecheck")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # `locale` is a field of VerifySession that the example's Session query does not select.
    (folder / "src" / "unselected.ts").write_text(
        'import type { ResultOf } from "@graphql-typed-document-node/core";\n'
        'import type { SessionQuery } from "./operations.js";\n'
        "export const locale = (result: ResultOf<typeof SessionQuery>) =>\n"
        "  result.session?.locale;\n"
    )
    refused = npm_run(folder, "typecheck")
    assert refused.returncode != 0
    assert "src/unselected.ts" in refused.stdout
    assert "Property 'locale' does not exist" in refused.stdout


# --- the compiled example against a gateway deployed with its manifest -------------------------


@dataclass
class Deployment:
    """The simulator and a gateway trusting only the example's documents, with the built example."""

    example: Path
    gateway: str
    simulator: str
    gateway_log: Path

    def run_example(self, *args: str, stdin: str | None = None) -> list[dict[str, Any]]:
        """`node dist/main.js args`: each JSON line it printed, after checking it exited 0."""
        done = subprocess.run(
            ["node", "dist/main.js", *args],
            cwd=self.example,
            env=self.example_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert done.returncode == 0, done.stderr + self.gateway_log.read_text()[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines()]

    def example_env(self) -> dict[str, str]:
        return {**os.environ, "GATEWAY_URL": self.gateway, "GATEWAY_API_KEY": API_KEY}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    example = copy_example(tmp_path_factory.mktemp("example"))
    built = npm_run(example, "build")
    assert built.returncode == 0, built.stdout + built.stderr
    logs = tmp_path_factory.mktemp("logs")
    sim_port, port = free_port(), free_port()
    credential = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    gateway_env = credential | {
        "PLIVO_API_URL": f"http://127.0.0.1:{sim_port}",
        "GATEWAY_API_KEYS": f"example:{key_digest(API_KEY)}:read+write",
        "GATEWAY_TRUSTED_DOCUMENTS": str(MANIFEST),
        "GATEWAY_ONLY_TRUSTED_DOCUMENTS": "true",
    }
    sim_args = ("simulate", "--port", str(sim_port), "--expose-codes")
    with (
        process(*sim_args, env=credential, log=logs / "simulator.log") as simulator,
        process("serve", "--port", str(port), env=gateway_env, log=logs / "gateway.log") as gw,
    ):
        sim_url, gateway_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
        wait_for_http(
            f"{sim_url}/__simulator/stats",
            timeout=DEADLINE,
            child=simulator,
            log=logs / "simulator.log",
        )
        wait_for_http(f"{gateway_url}/readyz", timeout=DEADLINE, child=gw, log=logs / "gateway.log")
        yield Deployment(example, gateway_url, sim_url, logs / "gateway.log")


def test_the_examples_queries_are_answered_with_typed_data(deployment: Deployment) -> None:
    session_line, sessions_line = deployment.run_example()
    session = session_line["session"]
    assert session["sessionUuid"] == fixtures.DOCS_EXAMPLE_UUID
    assert (session["status"], session["channel"], session["count"]) == ("EXPIRED", "VOICE", 3)
    assert [attempt["charge"] for attempt in session["attempts"]] == [
        "0.03300",
        "0.08000",
        "0.00000",
    ]
    assert session["charges"] == {"totalCharge": "0.113", "validationCharge": "0.0000"}
    assert session_line["charged"] == ["VOICE 0.03300", "SMS 0.08000", "VOICE 0.00000"]
    listed = sessions_line["sessions"]
    assert RECENT_VERIFIED in [node["sessionUuid"] for node in listed]
    assert {node["status"] for node in listed} == {"VERIFIED"}


@dataclass
class Conversation:
    """A running `node dist/main.js ...` that reads lines on stdin and prints JSON lines."""

    child: subprocess.Popen[str]

    def send(self, line: str) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(f"{line}\n")
        self.child.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.child.stdout is not None
        assert self.child.stderr is not None
        line = self.child.stdout.readline()  # "" once it exited (or the watchdog killed it)
        assert line, self.child.stderr.read()
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextmanager
def converse(deployment: Deployment, *args: str) -> Iterator[Conversation]:
    """`node dist/main.js args`, killed if it is still running after DEADLINE seconds."""
    pipe = subprocess.PIPE
    with subprocess.Popen(
        ["node", "dist/main.js", *args],
        cwd=deployment.example,
        env=deployment.example_env(),
        stdin=pipe,
        stdout=pipe,
        stderr=pipe,
        text=True,
    ) as child:
        watchdog = threading.Timer(DEADLINE, child.kill)
        watchdog.start()
        try:
            yield Conversation(child)
        finally:
            watchdog.cancel()


def test_the_examples_mutations_verify_the_code_the_simulator_sent(
    deployment: Deployment,
) -> None:
    with converse(deployment, "verify", "+14155550123") as example:
        started = example.receive()["startVerification"]
        assert (started["replayed"], started["session"]["status"]) == (False, "IN_PROGRESS")
        uuid = started["sessionUuid"]
        code = httpx.get(f"{deployment.simulator}/__simulator/codes/{uuid}").json()["code"]
        example.send(code[:-1] + str((int(code[-1]) + 1) % 10))  # one digit off
        wrong = example.receive()["validateSession"]
        example.send(code)
        right = example.receive()["validateSession"]
        assert example.child.wait() == 0  # done once verified
    assert (wrong["sessionUuid"], wrong["result"]) == (uuid, "WRONG_CODE")
    assert (right["result"], right["session"]) == ("VERIFIED", {"status": "VERIFIED"})


def test_a_document_not_in_the_manifest_is_refused(deployment: Deployment) -> None:
    query = "query Session($uuid: ID!) { session(uuid: $uuid) { sessionUuid locale } }"
    answer = httpx.post(
        f"{deployment.gateway}/graphql",
        json={"query": query, "variables": {"uuid": fixtures.DOCS_EXAMPLE_UUID}},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    body = answer.json()
    assert body.get("data") is None, body
    assert [error["extensions"]["code"] for error in body["errors"]] == [
        "PERSISTED_QUERY_NOT_IN_LIST"
    ]
