"""End to end: webhook → SQLite outbox → worker → adapter, with a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.keys import DELIVERY
from bridge.samples import sample
from bridge.settings import Settings
from bridge.store.events import EventWriter, IncomingEvent
from bridge.store.outbox import Outbox
from bridge.store.sqlite import SQLiteStorage
from tests.conftest import WEBHOOK, FakeClock, rows

SECRET = "whsec_" + base64.b64encode(b"receiver-signing-key-0123456789").decode()


class Receiver:
    """A CRM stand-in: records every request, answers from a script (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.delay = 0.0
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.delay:
            await asyncio.sleep(self.delay)
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.json_response({"status": status}, status=status, headers=headers)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
async def receivers() -> Any:
    made: list[Receiver] = []

    async def make() -> Receiver:
        r = Receiver()
        app = web.Application()
        app.router.add_route("*", "/hook", r.handle)
        r.server = TestServer(app)
        await r.server.start_server()
        made.append(r)
        return r

    yield make
    for r in made:
        assert r.server is not None
        await r.server.close()


def http_table(receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {"type": "http", "url": receiver.url, "secret": SECRET, "rate_limit": 0, **kw}


async def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def jobs(settings: Settings) -> list[tuple[Any, ...]]:
    return await rows(
        settings,
        "SELECT adapter, action, status, attempts, due_at, last_error, result"
        " FROM jobs ORDER BY id",
    )


async def test_call_end_and_missed_reach_http_receiver_signed(
    make_settings, start_bridge, receivers
):
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver, users={"145": 42})})
    client = await start_bridge(settings)
    end = sample("call_end")
    missed = sample("call_missed")
    assert (await client.post(WEBHOOK, data=end)).status == 200
    assert (await client.post(WEBHOOK, data=missed)).status == 200
    await wait_for(lambda: _all_done(settings, 2))

    verifier = Webhook(SECRET)  # the reference implementation checks our signature
    docs = []
    for req in receiver.requests:
        docs.append(verifier.verify(req["body"], req["headers"]))
    by_type = {d["type"]: d for d in docs}
    log = by_type["call.logged"]
    assert log["version"] == "1"
    assert log["call"]["uuid"] == end["uuid"]
    assert log["call"]["client"] == "+79502222919"  # outbound: the callee is the client
    assert log["call"]["extension"] == "145"
    assert log["call"]["talk_seconds"] == 135 and log["call"]["answered"] is True
    assert log["responsible_user"] == "42"  # users map, TOML number → string id
    task = by_type["task.created"]
    assert task["call"]["client"] == "+79221111123"
    assert "+7 922 111-11-23" in task["task"]["title"]
    # A tampered body fails verification: the test would catch a wrong signature.
    with pytest.raises(WebhookVerificationError):
        verifier.verify(receiver.requests[0]["body"] + b" ", receiver.requests[0]["headers"])


async def _all_done(settings: Settings, n: int) -> bool:
    found = await jobs(settings)
    return len(found) == n and all(j[2] == "done" for j in found)


async def test_retry_after_is_honoured_then_delivered(make_settings, start_bridge, receivers):
    receiver = await receivers()
    receiver.script = [(429, {"Retry-After": "120"})]
    clock = FakeClock()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings, clock=clock)
    await client.post(WEBHOOK, data=sample("call_end", now=clock()))

    async def retried() -> Any:
        j = (await jobs(settings))[0]
        return j if j[2] == "pending" and j[3] == 1 else None

    job = await wait_for(retried)
    assert job[4] == pytest.approx(clock() + 120)  # due exactly when the CRM asked
    assert "HTTP 429" in job[5]
    await asyncio.sleep(0.05)
    assert len(receiver.requests) == 1  # nothing before the time is up
    clock.advance(121)
    client.app[DELIVERY].wake({"hook"})
    await wait_for(lambda: _all_done(settings, 1))
    assert len(receiver.requests) == 2


async def test_permanent_error_is_dead_with_reason(make_settings, start_bridge, receivers):
    receiver = await receivers()
    receiver.script = [(400, {})]
    settings = make_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings)
    await client.post(WEBHOOK, data=sample("call_end"))

    async def dead() -> Any:
        j = (await jobs(settings))[0]
        return j if j[2] == "dead" else None

    job = await wait_for(dead)
    assert job[3] == 1 and "HTTP 400" in job[5]
    assert len(receiver.requests) == 1


async def test_outage_longer_than_retry_window_ends_dead_without_hot_loop(
    make_settings, start_bridge, receivers
):
    receiver = await receivers()
    receiver.script = [(503, {})] * 1000
    clock = FakeClock()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings, clock=clock)
    await client.post(WEBHOOK, data=sample("call_end", now=clock()))
    start = clock()
    attempts_seen = 0
    deadline = asyncio.get_running_loop().time() + 30  # generous: CI machines are slow
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
        job = (await jobs(settings))[0]
        if job[2] == "dead":
            break
        if job[3] > attempts_seen and job[2] == "pending":
            attempts_seen = job[3]
            clock.now = job[4]  # jump to the next due time
            client.app[DELIVERY].wake({"hook"})
    assert job[2] == "dead", job
    assert "gave up" in job[5] and "HTTP 503" in job[5]
    # ~72 h of exponential backoff capped at 1 h (with jitter, 30-60 min): ~100 tries, not
    # thousands, spread over the whole window.
    assert 70 <= job[3] <= 160
    assert clock() - start > 70 * 3600
    assert len(receiver.requests) == job[3]


async def test_one_failing_adapter_does_not_hold_up_another(make_settings, start_bridge, receivers):
    bad, good = await receivers(), await receivers()
    bad.script = [(500, {})] * 100
    settings = make_settings(adapters={"bad": http_table(bad), "good": http_table(good)})
    client = await start_bridge(settings)
    for _ in range(3):
        await client.post(WEBHOOK, data=sample("call_end"))

    async def good_done() -> bool:
        found = await jobs(settings)
        return sum(1 for j in found if j[0] == "good" and j[2] == "done") == 3

    await wait_for(good_done)
    states = {j[2] for j in await jobs(settings) if j[0] == "bad"}
    assert states == {"pending"}


async def test_events_setting_narrows_jobs(make_settings, start_bridge, receivers):
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver, events=["create_task"])})
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=sample("call_end"))
    assert (await resp.json())["jobs"] == 0
    resp = await client.post(WEBHOOK, data=sample("call_missed"))
    assert (await resp.json())["jobs"] == 1


async def test_job_left_running_by_a_dead_process_is_taken_again(
    make_settings, start_bridge, receivers
):
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    # A previous process stored the event, claimed the job, and died mid-delivery: its
    # lease (taken a minute ago, for 30 s) has expired.
    db = await SQLiteStorage.open(settings.storage.path, owner="dead-process")
    minute_ago = lambda: time.time() - 60  # noqa: E731
    writer = EventWriter(db, lambda event: [("hook", "log_call")], clock=minute_ago)
    payload = sample("call_end")
    await writer.submit(IncomingEvent("onlinepbx.ru", payload["uuid"], "call_end", payload))
    claimed = await Outbox(db, minute_ago).claim("hook", 10)
    assert claimed[0].status == "running"
    await db.close()

    await start_bridge(settings)
    await wait_for(lambda: _all_done(settings, 1))
    assert receiver.documents()[0]["call"]["uuid"] == payload["uuid"]


async def test_a_job_under_another_process_live_lease_is_left_alone(
    make_settings, start_bridge, receivers
):
    """A starting server requeues only expired leases: a job another live process is
    running (its lease still valid) is not delivered a second time."""
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    db = await SQLiteStorage.open(settings.storage.path, owner="live-process")
    writer = EventWriter(db, lambda event: [("hook", "log_call")])
    payload = sample("call_end")
    await writer.submit(IncomingEvent("onlinepbx.ru", payload["uuid"], "call_end", payload))
    [claimed] = await Outbox(db).claim("hook", 10)
    assert claimed.status == "running"
    await db.close()

    await start_bridge(settings)
    await asyncio.sleep(1.0)
    assert await rows(settings, "SELECT status, attempts FROM jobs") == [("running", 1)]
    assert receiver.documents() == []


async def test_redelivered_call_is_not_logged_twice(make_settings, start_bridge, receivers):
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings)
    payload = sample("call_end")
    await client.post(WEBHOOK, data=payload)
    await wait_for(lambda: _all_done(settings, 1))

    # The same job retried after the CRM write (e.g. crash before booking): no second write.
    def requeue() -> None:  # another process's write: off the event loop, as it would be
        conn = sqlite3.connect(settings.storage.path, timeout=10)
        conn.execute("UPDATE jobs SET status = 'pending'")
        conn.commit()
        conn.close()

    await asyncio.to_thread(requeue)
    client.app[DELIVERY].wake({"hook"})
    await asyncio.sleep(0.2)
    await wait_for(lambda: _all_done(settings, 1))
    assert len(receiver.requests) == 1


async def test_shutdown_lets_inflight_call_finish(make_settings, start_bridge, receivers):
    receiver = await receivers()
    receiver.delay = 0.3
    settings = make_settings(
        adapters={"hook": http_table(receiver)}, server={"shutdown_grace_seconds": 5}
    )
    client = await start_bridge(settings)
    await client.post(WEBHOOK, data=sample("call_end"))
    await wait_for(lambda: _has_requests(receiver))
    await client.close()  # SIGTERM path: cleanup_ctx stops delivery
    assert (await jobs(settings))[0][2] == "done"


async def test_shutdown_grace_exceeded_leaves_job_pending(make_settings, start_bridge, receivers):
    receiver = await receivers()
    receiver.delay = 3
    settings = make_settings(
        adapters={"hook": http_table(receiver)}, server={"shutdown_grace_seconds": 0.1}
    )
    client = await start_bridge(settings)
    await client.post(WEBHOOK, data=sample("call_end"))
    await wait_for(lambda: _has_requests(receiver))
    await client.close()
    job = (await jobs(settings))[0]
    assert job[2] == "pending" and job[3] == 0  # the interrupted try is not counted


async def _has_requests(receiver: Receiver) -> bool:
    return bool(receiver.requests)


async def test_local_adapter_default_logs_calls_and_tasks(make_settings, start_bridge):
    settings = make_settings(adapters={}, schedule={"locale": "en"})
    client = await start_bridge(settings)
    await client.post(WEBHOOK, data=sample("call_end"))
    await client.post(WEBHOOK, data=sample("call_missed"))
    # log_call, create_task, and for each end the live `over` (on by default, as everywhere)
    await wait_for(lambda: _all_done(settings, 4))
    calls = await rows(settings, "SELECT client, extension, talk_seconds, result FROM local_calls")
    assert calls == [("+79502222919", "145", 135, "Talked")]
    tasks = await rows(settings, "SELECT client, title FROM local_tasks")
    assert tasks[0][0] == "+79221111123"
    assert tasks[0][1].startswith("Call back: missed call from +7 922 111-11-23")
    contacts = await rows(settings, "SELECT phone FROM local_contacts")
    assert contacts == [("+79221111123",)]  # inbound unknown caller → contact (policy inbound)


async def test_internal_call_causes_no_crm_action(make_settings, start_bridge, receivers):
    receiver = await receivers()
    settings = make_settings(adapters={"hook": http_table(receiver)})
    client = await start_bridge(settings)
    internal = sample("call_end") | {"caller": "101", "callee": "510@pbx.onpbx.ru", "gateway": ""}
    await client.post(WEBHOOK, data=internal)
    await wait_for(lambda: _all_done(settings, 1))
    assert (await jobs(settings))[0][6].startswith("skipped: internal")
    assert receiver.requests == []


async def test_metrics_and_health(make_settings, start_bridge):
    client = await start_bridge(make_settings())
    await client.post(WEBHOOK, data=sample("call_end"))
    await client.post(WEBHOOK, data={"uuid": "x"})
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["workers"] == "alive"
    text = await (await client.get("/metrics")).text()
    assert 'pbx_bridge_events_total{event="call_end",outcome="stored"} 1.0' in text
    assert 'pbx_bridge_events_total{event="-",outcome="rejected"} 1.0' in text
    assert "pbx_bridge_outbox_jobs" in text


async def test_a_claim_that_cannot_read_its_jobs_leaves_them_pending(make_settings, monkeypatch):
    settings = make_settings()
    db = await SQLiteStorage.open(settings.storage.path)
    writer = EventWriter(db, lambda event: [("hook", "log_call")])
    payload = sample("call_end")
    await writer.submit(IncomingEvent("onlinepbx.ru", payload["uuid"], "call_end", payload))
    import bridge.store.sqlite as sqlite_module
    from bridge.store import StorageError

    # The read half of the claim fails (as on an I/O error): the whole claim rolls back.
    monkeypatch.setattr(sqlite_module, "JOB_COLUMNS", "j.no_such_column")
    with pytest.raises(StorageError):
        await Outbox(db).claim("hook", 10)
    monkeypatch.undo()
    assert await rows(settings, "SELECT status, attempts FROM jobs") == [("pending", 0)]
    [job] = await Outbox(db).claim("hook", 10)
    assert job.status == "running" and job.attempts == 1
    await db.close()
