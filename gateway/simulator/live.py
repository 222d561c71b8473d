"""The live bench mode's admin API: upstream traffic, and status changes with signed callbacks.

`GET /__simulator/traffic?since=T&until=T` tells when session GETs arrived (monotonic seconds).
`POST /__simulator/bench/changes` starts a run (replacing a running one): with `initial`, one
in-progress callback per uuid first, spread over `initial_over` seconds; then every `every`
seconds one random uuid changes (its next GET differs) and its callback is sent. Callbacks
alternate over `callback_urls` (loopback only), like a load balancer, each signed V2 and V3
with the account's token for the URL it goes to. `GET` tells how far it got, `DELETE` stops it.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.simulator.seed import LiveBenchTemplate
from gateway.simulator.state import CANONICAL, SimulatorState, json_object
from gateway.simulator.verify import CALLBACK_TIMEOUT, callback_params, is_loopback, post_callback

MAX_UUIDS = 100_000


async def traffic(request: Request) -> Response:
    """When session GETs arrived: `{"clock", "now", "since", "until", "count", "times",
    "kept", "dropped"}`; `since` and `until` (monotonic seconds) are optional bounds."""
    state: SimulatorState = request.app.state.simulator
    now = time.monotonic()
    try:
        since = float(request.query_params.get("since", "-inf"))
        until = float(request.query_params.get("until", "inf"))
    except ValueError:
        return JSONResponse({"error": "since and until must be numbers"}, status_code=400)
    times = state.traffic.between(since, until)
    return JSONResponse(
        {
            "clock": "monotonic",
            "now": now,
            "since": since if math.isfinite(since) else None,
            "until": until if math.isfinite(until) else None,
            "count": len(times),
            "times": times,
            "kept": len(state.traffic.times),
            "dropped": state.traffic.dropped,
        }
    )


@dataclass
class ChangePlan:
    """What a run of changes does (the body of `POST /__simulator/bench/changes`)."""

    uuids: list[str]
    callback_urls: list[str] = field(default_factory=list)
    initial: bool = False
    initial_over: float = 5.0
    every: float | None = 1.0
    limit: int | None = None
    seed: int | None = None

    @classmethod
    def parse(cls, body: dict[str, object]) -> ChangePlan:
        """The plan in `body`; ValueError says what is wrong with it."""
        uuids, urls = body.get("uuids"), body.get("callback_urls", [])
        if not isinstance(uuids, list) or not 0 < len(uuids) <= MAX_UUIDS:
            raise ValueError(f"uuids must be a list of 1 to {MAX_UUIDS:,} session uuids")
        wanted = [str(u).lower() for u in uuids]
        if not all(CANONICAL.fullmatch(u) for u in wanted):
            raise ValueError("uuids must be canonical session uuids")
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) and is_loopback(u)
            for u in urls
        ):
            raise ValueError("callback_urls must be a list of loopback http(s) URLs")
        every, limit, seed = body.get("every", 1.0), body.get("limit"), body.get("seed")
        if every is not None and not _positive(every):
            raise ValueError("every must be a number of seconds above 0, or null (no changes)")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise ValueError("limit must be a whole number of changes, or null")
        over = body.get("initial_over", 5.0)
        if not (_positive(over) or over == 0):
            raise ValueError("initial_over must be a number of seconds of at least 0")
        return cls(
            wanted,
            list(urls),
            bool(body.get("initial", False)),
            float(over),  # type: ignore[arg-type]
            float(every) if every is not None else None,  # type: ignore[arg-type]
            limit,
            seed if isinstance(seed, int) else None,
        )


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


class ChangeRun:
    """One run of changes and callbacks, in a background task of the simulator's loop."""

    def __init__(self, state: SimulatorState, live: LiveBenchTemplate, plan: ChangePlan) -> None:
        self.state, self.live, self.plan = state, live, plan
        self.token = state.tokens[state.settings.auth_id]
        self.account = state.settings.auth_id
        self.rng = random.Random(plan.seed)  # noqa: S311 - which session changes, not a secret
        self.changes = 0
        self.initial_sent = 0
        self._sent = 0
        self._sending: set[asyncio.Task[None]] = set()
        self.task = asyncio.ensure_future(self._run())

    def report(self) -> dict[str, object]:
        return {
            "running": not self.task.done(),
            "uuids": len(self.plan.uuids),
            "callback_urls": self.plan.callback_urls,
            "every": self.plan.every,
            "initial_sent": self.initial_sent,
            "changes": self.changes,
        }

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=CALLBACK_TIMEOUT) as client:
            try:
                await self._changes(client)
            finally:
                if self._sending:  # let the callbacks under way finish with the client
                    await asyncio.wait(self._sending, timeout=CALLBACK_TIMEOUT.total)

    async def _changes(self, client: aiohttp.ClientSession) -> None:
        plan, loop = self.plan, asyncio.get_running_loop()
        start = loop.time()
        if plan.initial:
            step = plan.initial_over / len(plan.uuids)
            for index, session_uuid in enumerate(plan.uuids):
                await asyncio.sleep(max(0.0, start + index * step - loop.time()))
                self._send(client, session_uuid)
                self.initial_sent += 1
            start = loop.time()
        if plan.every is None:
            return
        while plan.limit is None or self.changes < plan.limit:
            await asyncio.sleep(max(0.0, start + (self.changes + 1) * plan.every - loop.time()))
            session_uuid = self.rng.choice(plan.uuids)
            self.live.change(session_uuid)
            self.changes += 1
            self.state.changes += 1
            self._send(client, session_uuid)

    def _send(self, client: aiohttp.ClientSession, session_uuid: str) -> None:
        """The session's in-progress callback, to the next URL (none: nothing is sent)."""
        urls = self.plan.callback_urls
        if not urls:
            return
        url = urls[self._sent % len(urls)]
        self._sent += 1
        body = json.loads(self.live.render(session_uuid, self.account))
        params = callback_params(body, "in-progress")
        task = asyncio.ensure_future(self._post(client, url, params))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, client: aiohttp.ClientSession, url: str, params: dict[str, str]) -> None:
        self.state.answered_callback(await post_callback(client, url, params, self.token))


async def changes(request: Request) -> Response:
    """POST starts a run of changes (202), GET tells how it goes, DELETE stops it."""
    state: SimulatorState = request.app.state.simulator
    run: ChangeRun | None = getattr(request.app.state, "changes", None)
    if request.method == "GET":
        return JSONResponse(_report(state, run))
    if run is not None:
        await run.stop()
    if request.method == "DELETE":
        request.app.state.changes = None
        return JSONResponse({**_report(state, run), "running": False})
    if not isinstance(state.bench, LiveBenchTemplate):
        return JSONResponse({"error": "changes need the live bench mode (--bench-live)"}, 409)
    body = await json_object(request)
    if isinstance(body, Response):
        return body
    try:
        plan = ChangePlan.parse(body)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    request.app.state.changes = run = ChangeRun(state, state.bench, plan)
    return JSONResponse(_report(state, run), status_code=202)


def _report(state: SimulatorState, run: ChangeRun | None) -> dict[str, object]:
    """The run's progress, and the simulator's counts of changes and callbacks."""
    base: dict[str, object] = run.report() if run is not None else {"running": False}
    return {
        **base,
        "total_changes": state.changes,
        "callbacks_sent": sum(state.callbacks.values()),
        "callbacks_by_status": dict(sorted(state.callbacks.items())),
    }
