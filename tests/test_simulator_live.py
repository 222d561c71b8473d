"""The simulator's live bench mode: sessions that change, upstream traffic, signed callbacks;
and the pure helpers of bench/fleet.py."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.fleet import (
    Outcome,
    Scenario,
    WrkResult,
    add_heading,
    parse_wrk,
    percentile,
    verdicts,
    window_max,
)
from gateway.plivo.signature import is_signed
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.seed import LiveBenchTemplate
from gateway.simulator.state import SimulatorState, Traffic
from tests.conftest import AUTH_ID, AUTH_TOKEN, eventually
from tests.servers import serve_in_thread

CHANGES = "/__simulator/bench/changes"


def session_path(session_uuid: str) -> str:
    return f"/v1/Account/{AUTH_ID}/Verify/Session/{session_uuid}/"


def new_uuid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def live_app() -> Starlette:
    return create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, bench=True, bench_live=True))


@pytest.fixture
async def live(live_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The live bench simulator in-process; any run of changes is stopped at the end."""
    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://simulator", auth=(AUTH_ID, AUTH_TOKEN)
    ) as client:
        yield client
        assert (await client.delete(CHANGES)).status_code == 200


def state_of(app: Starlette) -> SimulatorState:
    state: SimulatorState = app.state.simulator
    return state


async def session(client: httpx.AsyncClient, session_uuid: str) -> dict[str, object]:
    answer = await client.get(session_path(session_uuid))
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


def attempt_statuses(body: dict[str, object]) -> list[str]:
    attempts = body["attempt_details"]
    assert isinstance(attempts, list)
    return [str(a["status"]) for a in attempts]


# a. Sessions that stay in progress and change.


async def test_any_uuid_is_an_in_progress_session_of_its_own(live: httpx.AsyncClient) -> None:
    first, second = new_uuid(), new_uuid()
    body = await session(live, first)
    assert body["session_uuid"] == first
    assert body["status"] == "in-progress"
    assert body["alias"] == AUTH_ID
    assert attempt_statuses(body) == ["sent"]
    assert (await session(live, second))["session_uuid"] == second


async def test_a_change_makes_the_next_get_differ_and_the_session_stays_in_progress(
    live: httpx.AsyncClient, live_app: Starlette
) -> None:
    changed, other = new_uuid(), new_uuid()
    before, other_before = await session(live, changed), await session(live, other)
    answer = await live.post(CHANGES, json={"uuids": [changed], "every": 0.01, "limit": 2})
    assert answer.status_code == 202

    async def finished() -> bool:
        report = (await live.get(CHANGES)).json()
        return report["changes"] == 2 and not report["running"]

    await eventually(finished)
    after = await session(live, changed)
    assert after != before
    assert after["status"] == "in-progress"
    assert attempt_statuses(after) == ["delivered", "sent"]
    assert after["count"] == 2
    assert after["updated_at"] != before["updated_at"]
    assert await session(live, other) == other_before
    assert state_of(live_app).bench is not None
    assert state_of(live_app).stats()["changes"] == 2


def test_every_change_gives_another_body_and_the_charges_add_up() -> None:
    from decimal import Decimal

    template, session_uuid = LiveBenchTemplate(), new_uuid()
    seen = template.render(session_uuid, AUTH_ID)
    for version in range(1, 3 * LiveBenchTemplate.MAX_ATTEMPTS):
        assert template.change(session_uuid) == version
        text = template.render(session_uuid, AUTH_ID)
        assert text != seen
        seen = text
        body = json.loads(text)
        count, last = LiveBenchTemplate.shape(version)
        assert body["status"] == "in-progress"
        assert body["count"] == len(body["attempt_details"]) == count
        assert body["attempt_details"][-1]["status"] == last
        assert body["attempt_details"][-1]["time"] == body["updated_at"]
        charges = body["charges"]
        total = sum((Decimal(c["charge"]) for c in charges["attempt_charges"]), Decimal(0))
        assert Decimal(charges["total_charge"]) == total


async def test_the_plain_bench_mode_still_answers_the_expired_docs_example() -> None:
    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, bench=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://simulator", auth=(AUTH_ID, AUTH_TOKEN)
    ) as client:
        body = await session(client, new_uuid())
        assert body["status"] == "Expired"
        assert len(attempt_statuses(body)) == 3
        refused = await client.post(CHANGES, json={"uuids": [new_uuid()]})
        assert refused.status_code == 409
        assert (await client.get("/__simulator/stats")).json()["bench_live"] is False


def test_the_cli_has_a_live_bench_mode() -> None:
    from gateway.cli import _parser

    args = _parser().parse_args(["simulate", "--bench-live"])
    assert args.bench_live is True
    assert args.bench is False  # --bench-live implies it (simulate_command)


# b. Upstream traffic.


async def test_traffic_tells_when_every_session_get_arrived(live: httpx.AsyncClient) -> None:
    start = time.monotonic()
    await session(live, new_uuid())
    await session(live, new_uuid())
    wrong = await live.get(session_path(new_uuid()), auth=(AUTH_ID, "wrong"))
    assert wrong.status_code == 401  # refused, yet it reached Plivo and counts
    end = time.monotonic()
    report = (await live.get("/__simulator/traffic", params={"since": start})).json()
    assert report["clock"] == "monotonic"
    assert report["count"] == len(report["times"]) == 3
    assert all(start <= t <= end for t in report["times"])
    assert report["times"] == sorted(report["times"])
    assert report["now"] >= end
    later = (await live.get("/__simulator/traffic", params={"since": report["times"][1]})).json()
    assert later["count"] == 2
    until = (await live.get("/__simulator/traffic", params={"until": report["times"][0]})).json()
    assert until["count"] == 1
    stats = (await live.get("/__simulator/stats")).json()
    assert stats["traffic_kept"] == 3
    await live.post("/__simulator/stats")  # a reset forgets them
    assert (await live.get("/__simulator/traffic")).json()["count"] == 0
    bad = await live.get("/__simulator/traffic", params={"since": "soon"})
    assert bad.status_code == 400


def test_traffic_keeps_a_bounded_number_for_a_bounded_time() -> None:
    traffic = Traffic(limit=3, keep=10.0)
    for at in (1.0, 2.0, 3.0, 4.0, 5.0):
        traffic.record(at)
    assert list(traffic.times) == [3.0, 4.0, 5.0]
    assert traffic.dropped == 2
    traffic.record(14.5)
    assert list(traffic.times) == [5.0, 14.5]
    assert traffic.dropped == 4
    assert traffic.between(5.0, 5.0) == [5.0]


# c. Changes with signed callbacks.


class Receiver:
    """A loopback server that collects the callbacks posted to /plivo/callbacks."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, str]]] = []
        self.lock = threading.Lock()
        self.url = ""

    async def endpoint(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with self.lock:
            self.calls.append((dict(request.headers), form))
        return Response("ok")


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Two receivers, like two gateway instances."""
    pair = [Receiver(), Receiver()]
    apps = [
        Starlette(routes=[Route("/plivo/callbacks", r.endpoint, methods=["POST"])]) for r in pair
    ]
    with serve_in_thread(apps[0]) as first, serve_in_thread(apps[1]) as second:
        pair[0].url, pair[1].url = f"{first}/plivo/callbacks", f"{second}/plivo/callbacks"
        yield pair


def signed_for(url: str, headers: dict[str, str], form: dict[str, str]) -> bool:
    return is_signed("POST", url, headers, {k: [v] for k, v in form.items()}, [AUTH_TOKEN])


async def test_changes_send_signed_callbacks_alternating_over_the_instances(
    live: httpx.AsyncClient, live_app: Starlette, receivers: list[Receiver]
) -> None:
    uuids = [new_uuid() for _ in range(3)]
    plan = {
        "uuids": uuids,
        "callback_urls": [r.url for r in receivers],
        "initial": True,
        "initial_over": 0,
        "every": 0.01,
        "limit": 3,
        "seed": 7,
    }
    answer = await live.post(CHANGES, json=plan)
    assert answer.status_code == 202

    async def all_answered() -> dict[str, object] | None:
        report: dict[str, object] = (await live.get(CHANGES)).json()
        return report if report["callbacks_sent"] == 6 and not report["running"] else None

    report = await eventually(all_answered)
    assert report["callbacks_by_status"] == {"200": 6}
    assert report["initial_sent"] == 3
    assert report["changes"] == 3
    assert [len(r.calls) for r in receivers] == [3, 3]  # alternating, like a load balancer
    for receiver, other in (receivers, receivers[::-1]):
        for headers, form in receiver.calls:
            assert signed_for(receiver.url, headers, form)
            assert not signed_for(other.url, headers, form)  # signed for the URL it went to
            assert form["SessionStatus"] == "in-progress"
            assert form["SessionUUID"] in uuids
    forms = [form for r in receivers for _, form in r.calls]
    assert Counter(f["SessionUUID"] for f in forms if f["AttemptSequence"] == "1") >= Counter(
        uuids
    )  # the initial callbacks: one for each
    live_bench = state_of(live_app).bench
    assert isinstance(live_bench, LiveBenchTemplate)
    versions = {u: live_bench.version(u) for u in uuids}
    assert sum(versions.values()) == 3
    for session_uuid, version in versions.items():
        if version:  # its last change was told: the attempt and status its GET now shows
            count, last = LiveBenchTemplate.shape(version)
            body = await session(live, session_uuid)
            assert attempt_statuses(body)[-1] == last
            assert any(
                f["SessionUUID"] == session_uuid
                and f["AttemptSequence"] == str(count)
                and f["ChannelStatus"] == last
                for f in forms
            )
    stats = (await live.get("/__simulator/stats")).json()
    assert stats["callbacks_sent"] == 6
    assert stats["changes"] == 3


async def test_delete_stops_the_changes(live: httpx.AsyncClient) -> None:
    answer = await live.post(CHANGES, json={"uuids": [new_uuid()], "every": 0.01})
    assert answer.status_code == 202

    async def changed() -> bool:
        return bool((await live.get(CHANGES)).json()["changes"] >= 1)

    await eventually(changed)
    stopped = (await live.delete(CHANGES)).json()
    assert stopped["running"] is False
    report = (await live.get(CHANGES)).json()
    assert report["running"] is False
    assert report["total_changes"] == stopped["total_changes"]


@pytest.mark.parametrize(
    "plan",
    [
        {},
        {"uuids": []},
        {"uuids": ["not-a-uuid"]},
        {"uuids": ["00000000-0000-4000-8000-000000000000"], "callback_urls": ["https://x.io/cb"]},
        {"uuids": ["00000000-0000-4000-8000-000000000000"], "every": 0},
        {"uuids": ["00000000-0000-4000-8000-000000000000"], "limit": "3"},
        {"uuids": ["00000000-0000-4000-8000-000000000000"], "initial_over": -1},
    ],
)
async def test_a_bad_plan_is_400(live: httpx.AsyncClient, plan: dict[str, object]) -> None:
    answer = await live.post(CHANGES, json=plan)
    assert answer.status_code == 400
    assert "error" in answer.json()


async def test_callbacks_of_started_sessions_are_counted_too(
    live: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    created = await live.post(
        f"/v1/Account/{AUTH_ID}/Verify/Session/",
        json={"recipient": "919999000301", "url": receivers[0].url},
    )
    assert created.status_code == 202

    async def counted() -> bool:
        stats = (await live.get("/__simulator/stats")).json()
        return bool(stats["callbacks_by_status"] == {"200": 1})

    await eventually(counted)


# bench/fleet.py's pure helpers.


def test_window_max_counts_every_sliding_window_not_only_whole_seconds() -> None:
    assert window_max([]) == 0
    assert window_max([0.0, 4.99, 5.0], 5.0) == 2  # [t, t + 5): 5.0 is out of the first
    # Aligned seconds would see at most 3 in [0, 5) and [5, 10); [4.5, 9.5) holds 5.
    times = [0.1, 4.5, 4.6, 4.7, 5.1, 9.4, 12.0]
    assert window_max(times, 5.0) == 5
    assert window_max(reversed(times), 5.0) == 5


def test_percentile_of_a_histogram_is_its_buckets_upper_edge() -> None:
    assert percentile({}, 0.5) is None
    histogram = {0: 50, 10: 49, 200: 1}  # 0 to 0.1 s, 1.0 to 1.1 s, 20.0 to 20.1 s
    assert percentile(histogram, 0.5) == 0.1
    assert percentile(histogram, 0.51) == 1.1
    assert percentile(histogram, 0.99) == 1.1
    assert percentile(histogram, 1.0) == 20.1


def test_parse_wrk_reads_the_lines_fleet_lua_prints() -> None:
    output = "\n".join(
        [
            "Running 20s test @ http://127.0.0.1:1/graphql",
            "FLEET requests=1200 seconds=20.013 socket_errors=1 error_answers=3 aged=1197",
            "AGES 0:700,15:400,120:97",
            'FIRST_ERROR 200 {"data":{"session":null},"errors":[{"message":"rate"}]}',
        ]
    )
    result = parse_wrk(output)
    assert (result.requests, result.seconds, result.socket_errors) == (1200, 20.013, 1)
    assert (result.error_answers, result.aged) == (3, 1197)
    assert result.ages == Counter({0: 700, 15: 400, 120: 97})
    assert result.first_error.startswith('200 {"data"')
    both = result + parse_wrk(
        "FLEET requests=10 seconds=19.9 socket_errors=0 error_answers=0 aged=10\n"
        "AGES 0:10\nFIRST_ERROR "
    )
    assert (both.requests, both.seconds, both.ages[0]) == (1210, 20.013, 710)
    with pytest.raises(ValueError, match="FLEET"):
        parse_wrk("wrk: connection refused")


def test_the_section_gets_its_heading_once(tmp_path: Path) -> None:
    from bench.report import write_section

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    for text in ("first", "second"):
        add_heading(path)
        write_section(path, "fleet", text)
    written = path.read_text()
    assert written.count("## Fleet freshness") == 1
    assert "second" in written
    assert "first" not in written


def test_verdicts_follow_the_targets() -> None:
    polls = WrkResult(requests=1000, seconds=10.0, ages=Counter({5: 10}))
    small = Outcome(Scenario("100", 100), polls, upstream=400, seconds=10.0, window_max=200)
    assert verdicts(small) == [("at most 50 upstream req/s", True), ("p50 age <= 2 s", True)]
    big = Outcome(
        Scenario("1,000 cb", 1000, callbacks=True),
        WrkResult(requests=1000, seconds=10.0, error_answers=2, ages=Counter({300: 10})),
        upstream=30,
        seconds=10.0,
        window_max=301,
        changes=20,
    )
    # with callbacks, an old copy is still current: no age target
    assert [name for name, _ in verdicts(big)] == [
        "0 error answers",
        "at most 300 upstream in every 5 s window",
        "at most 2 upstream calls per change",
    ]
    assert [met for _, met in verdicts(big)] == [False, False, True]
    assert big.per_change == 1.5
    polled = Outcome(Scenario("1,000", 1000), big.polls, upstream=30, seconds=10.0, window_max=300)
    assert verdicts(polled) == [
        ("0 error answers", False),
        ("at most 300 upstream in every 5 s window", True),
        ("p50 age <= 20 s", False),
    ]
