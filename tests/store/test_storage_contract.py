"""One contract, both backends: every Storage port behaves the same on SQLite and PostgreSQL.

``open_one()`` opens one more process's view of the same data (the same SQLite file, or the
same PostgreSQL schema) with its own lease owner, as a second replica would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.settings import StorageSettings
from bridge.store import (
    DEAD,
    DONE,
    PENDING,
    RUNNING,
    EventWriter,
    IncomingEvent,
    Storage,
    StorageError,
    open_storage,
)
from bridge.store.migrations import LATEST

NOW = 1_780_000_000.0
PLAN = {"call_end": [("crm", "log_call"), ("local", "log_call")], "call_missed": []}

Opener = Callable[..., Awaitable[Storage]]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: Any, tmp_path: Path) -> StorageSettings:
    if request.param == "postgresql":
        return StorageSettings(url=request.getfixturevalue("postgres_url"), lease_seconds=30)
    return StorageSettings(path=tmp_path / "contract.db", lease_seconds=30)


@pytest.fixture
async def open_one(backend: StorageSettings) -> AsyncIterator[Opener]:
    settings = backend
    opened: list[Storage] = []

    async def open_(owner: str | None = None) -> Storage:
        storage = await open_storage(settings, owner=owner)
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        await storage.close()


@pytest.fixture
async def store(open_one: Opener) -> Storage:
    return await open_one("replica-a")


def ev(uuid: str, event: str = "call_end", domain: str = "d.onpbx.ru") -> IncomingEvent:
    return IncomingEvent(domain, uuid, event, {"uuid": uuid, "event": event, "x": "ü"})


async def test_append_stores_events_with_their_jobs_and_dedups(store: Storage) -> None:
    results, adapters = await store.append([ev("a"), ev("b"), ev("a")], PLAN, NOW)
    assert [(r.duplicate, r.jobs) for r in results] == [(False, 2), (False, 2), (True, 0)]
    assert adapters == {"crm", "local"}
    again, adapters = await store.append([ev("b"), ev("c", "call_missed")], PLAN, NOW)
    assert [(r.duplicate, r.jobs) for r in again] == [(True, 0), (False, 0)]
    assert adapters == set()
    counts = await store.job_counts()
    assert counts == {
        "crm": {PENDING: 2, RUNNING: 0, DONE: 0, DEAD: 0},
        "local": {PENDING: 2, RUNNING: 0, DONE: 0, DEAD: 0},
    }
    assert await store.final_uuids(["a", "b", "c", "z"], "d.onpbx.ru", ["call_end"]) == {"a", "b"}
    assert await store.final_uuids(["a"], "other.onpbx.ru", ["call_end"]) == set()


async def test_event_writer_group_commits_through_the_port(store: Storage) -> None:
    woken: list[set[str]] = []
    writer = EventWriter(store, lambda e: PLAN.get(e, []), woken.append, clock=lambda: NOW)
    stored = await asyncio.gather(*(writer.submit(ev(f"u{i}")) for i in range(50)))
    assert sum(not s.duplicate for s in stored) == 50
    assert len(woken) < 50  # batched: far fewer commits than events
    assert (await store.job_counts())["crm"][PENDING] == 50


async def test_claim_leases_and_book(store: Storage) -> None:
    await store.append([ev("a"), ev("b")], PLAN, NOW)
    jobs = await store.claim("crm", 10, NOW + 1)
    assert [j.uuid for j in jobs] == ["a", "b"]
    assert all(j.status == RUNNING and j.attempts == 1 for j in jobs)
    assert jobs[0].payload["x"] == "ü" and jobs[0].recovered is False
    assert await store.claim("crm", 10, NOW + 1) == []  # running: not claimed twice
    assert await store.book(jobs[0].id, DONE, NOW + 2, result="id-1")
    assert await store.book(jobs[1].id, PENDING, NOW + 2, error="HTTP 503", due_at=NOW + 100)
    done = await store.get_job(jobs[0].id)
    assert done and done.status == DONE and done.result == "id-1"
    retry = await store.get_job(jobs[1].id)
    assert retry and retry.status == PENDING and retry.last_error == "HTTP 503"
    assert await store.next_due("crm", NOW + 2) == NOW + 100
    assert await store.claim("crm", 10, NOW + 50) == []
    [again] = await store.claim("crm", 10, NOW + 100)
    assert again.attempts == 2
    await store.release(again.id, NOW + 101)  # shutdown: back, attempt not counted
    back = await store.get_job(again.id)
    assert back and back.status == PENDING and back.attempts == 1
    [again] = await store.claim("crm", 10, NOW + 102)
    assert await store.book(again.id, DEAD, NOW + 103, error="HTTP 400")
    assert [j.id for j in await store.list_jobs(status=DEAD)] == [again.id]
    assert [j.id for j in await store.list_jobs(adapter="crm", limit=1)] == [jobs[1].id]
    assert await store.retry_dead(None, NOW + 200) == 1
    revived = await store.get_job(again.id)
    assert revived and revived.status == PENDING and revived.attempts == 0
    assert revived.created_at == NOW + 200  # its age restarts: a full retry period again


async def test_two_replicas_never_claim_the_same_job(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    await a.append([ev(f"u{i}") for i in range(40)], PLAN, NOW)
    got = await asyncio.gather(*(s.claim("crm", 7, NOW + 1) for s in [a, b] * 4))
    ids = [j.id for batch in got for j in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_only_expired_leases_are_requeued_and_a_lost_lease_cannot_book(
    open_one: Opener,
) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    await a.append([ev("x"), ev("y")], PLAN, NOW)
    jx, jy = await a.claim("crm", 2, NOW)  # leases until NOW + 30
    assert await b.requeue_expired(NOW + 10) == 0  # a is alive: its jobs stay its own
    assert await a.renew([jx.id], NOW + 20) == 1  # x renewed until NOW + 50
    assert await b.renew([jx.id], NOW + 20) == 0  # b holds no lease on it
    assert await b.requeue_expired(NOW + 40, "crm") == 1  # y expired, x not
    [taken] = await b.claim("crm", 10, NOW + 40)
    assert taken.id == jy.id and taken.attempts == 2
    assert not await a.book(jy.id, DONE, NOW + 41, result="late")  # a lost it
    assert await b.book(jy.id, DONE, NOW + 41, result="b's")
    assert await a.book(jx.id, DONE, NOW + 41, result="a's")
    assert {(j.uuid, j.result) for j in await a.list_jobs(adapter="crm")} == {
        ("x", "a's"),
        ("y", "b's"),
    }


async def test_records_meta_and_adapter_values(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    assert await a.call_record("crm", "d/u", "log_call") is None
    await a.put_call_record("crm", "d/u", "log_call", "1", NOW)
    await a.put_call_record("crm", "d/u", "log_call", "2", NOW)
    assert await b.call_record("crm", "d/u", "log_call") == "2"
    assert await b.call_record("other", "d/u", "log_call") is None
    await a.put_adapter_value("crm", "oauth", '{"a": 1}', NOW)
    assert await b.adapter_value("crm", "oauth") == '{"a": 1}'
    first = await a.put_meta_if_absent("webhook_token", "token-a")
    assert await b.put_meta_if_absent("webhook_token", "token-b") == first == "token-a"
    await b.put_meta("cursor", "5")
    assert await a.meta("cursor") == "5"
    await a.ping_write(NOW)
    assert await a.schema_version() == LATEST


async def test_local_records(store: Storage) -> None:
    assert await store.local_contact("+79161234567") is None
    made = await store.local_add_contact("c1", "+79161234567", "Client", "7", "2026-01-01")
    again = await store.local_add_contact("c2", "+79161234567", "Other", None, "2026-01-02")
    assert made == again == {"id": "c1", "name": "Client", "owner_id": "7"}
    row = {
        "call_key": "d/u1",
        "uuid": "u1",
        "direction": "inbound",
        "client": "+79161234567",
        "started_at": "2026-01-01T10:00:00+03:00",
        "talk_seconds": 5,
        "total_seconds": 9,
        "result": "talked",
    }
    first = await store.local_add("calls", row)
    assert await store.local_add("calls", row) == first  # once per call
    await store.local_add("calls", {**row, "call_key": "d/u2", "uuid": "u2"})
    assert [r["uuid"] for r in await store.local_list("calls")] == ["u2", "u1"]
    assert await store.local_count("calls") == 2
    task = {
        "call_key": "d/u3",
        "uuid": "u3",
        "client": "+7916",
        "title": "Call back",
        "description": "",
        "due_at": "2026-01-01T10:15:00+03:00",
    }
    await store.local_add("tasks", task)
    assert [r["title"] for r in await store.local_list("tasks")] == ["Call back"]


async def test_lock_excludes_other_processes(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    order: list[str] = []
    async with a.lock("adapter:crm:oauth"):
        waiting = asyncio.create_task(_locked(b, "adapter:crm:oauth", order))
        await asyncio.sleep(0.3)
        assert order == []  # b waits for a
        order.append("a done")
    await asyncio.wait_for(waiting, 5)
    assert order == ["a done", "b in"]
    async with a.lock("another"), b.lock("unrelated"):  # different names never wait
        pass


async def _locked(storage: Storage, name: str, order: list[str]) -> None:
    async with storage.lock(name):
        order.append("b in")


async def test_one_lead_at_a_time(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    if a.backend == "sqlite":
        pytest.skip("one serve per SQLite file: the process leads everything")
    assert await a.try_lead("adapter:crm") and a.leads("adapter:crm")
    assert await a.try_lead("adapter:crm")  # kept
    assert not await b.try_lead("adapter:crm") and not b.leads("adapter:crm")
    assert await b.try_lead("adapter:local")
    await a.close()  # a dies: its session's leads go with it
    assert await b.try_lead("adapter:crm")


async def test_shared_rate_spaces_every_process(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    slots = []
    for s in (a, b, a, b, a):
        wait = await s.rate_slot("onlinepbx:d", 0.2)
        slots.append(time.monotonic() + wait)  # when this request may leave
    # Five send times 0.2 s apart, whichever process reserved them.
    for i, slot in enumerate(slots):
        assert slot - slots[0] == pytest.approx(0.2 * i, abs=0.05)


async def test_prune_deletes_only_what_is_old_and_finished(store: Storage) -> None:
    await store.append([ev("old"), ev("old-pending")], PLAN, NOW - 90 * 86400)
    await store.append([ev("start", "call_start")], PLAN, NOW - 90 * 86400)  # caused no job
    await store.append([ev("new")], PLAN, NOW)
    for job in await store.claim("crm", 10, NOW) + await store.claim("local", 10, NOW):
        if job.uuid != "old-pending":
            assert await store.book(job.id, DONE, job.due_at, result="ok")
    await store.put_call_record("crm", "d.onpbx.ru/old", "log_call", "1", NOW)
    deleted = await store.prune(NOW - 30 * 86400, 1)
    assert deleted == {"jobs": 2, "events": 2, "crm_objects": 1}
    left = {(j.uuid, j.adapter) for j in await store.list_jobs()}
    assert left == {
        ("old-pending", "crm"),
        ("old-pending", "local"),
        ("new", "crm"),
        ("new", "local"),
    }


async def test_notify_wakes_another_process(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    if a.backend == "sqlite":
        pytest.skip("one process per SQLite file: its writer wakes its own workers")
    woken: asyncio.Queue[set[str]] = asyncio.Queue()
    b.listen(woken.put_nowait)
    assert await asyncio.wait_for(woken.get(), 5) == {"*"}  # connected: look once
    await a.append([ev("n1")], PLAN, NOW)
    assert await asyncio.wait_for(woken.get(), 5) == {"crm", "local"}


async def test_second_serve_on_one_sqlite_file_is_refused(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    await a.hold_instance()
    if a.backend == "postgresql":
        await b.hold_instance()  # replicas are the point
        return
    with pytest.raises(StorageError, match=r"another pbx-bridge serve .* is already running"):
        await b.hold_instance()
    await a.close()
    await b.hold_instance()  # the first one stopped: now it may


async def test_migrations_are_recorded_and_a_newer_schema_is_refused(open_one: Opener) -> None:
    a = await open_one()
    assert a.migrated == (0, LATEST)
    b = await open_one()
    assert b.migrated == (LATEST, LATEST)  # nothing applied twice
    await a.put_meta("schema_version", str(LATEST + 1))
    with pytest.raises(StorageError, match="newer than this pbx-bridge"):
        await open_one()


async def test_concurrent_openers_migrate_once(open_one: Opener) -> None:
    opened = await asyncio.gather(*(open_one() for _ in range(3)))
    assert sorted(s.migrated[0] for s in opened) == [0, LATEST, LATEST]


# --- the fast lane and per-call order (#14) ---------------------------------------------

LIVE_PLAN = {
    "call_start": [("crm", "ringing")],
    "call_user_start": [("crm", "ringing")],
    "call_answered": [("crm", "answered")],
    "call_end": [("crm", "over"), ("crm", "log_call")],
}


def live_ev(uuid: str, event: str, callee: str = "") -> IncomingEvent:
    payload = {"uuid": uuid, "event": event, "callee": callee}
    return IncomingEvent("d.onpbx.ru", uuid, event, payload)


def test_the_live_lane_is_the_contracts_live_actions() -> None:
    from bridge.adapter.contract import LIVE_ACTIONS
    from bridge.store.tables import LIVE_LANE

    assert LIVE_LANE == LIVE_ACTIONS


async def test_live_jobs_are_claimed_before_a_backlog_and_its_retries(store: Storage) -> None:
    backlog = [ev(f"old{i}") for i in range(300)]  # post-call jobs after a CRM outage
    await store.append(backlog, PLAN, NOW - 600)
    [retry] = await store.claim("crm", 1, NOW - 500)
    await store.book(retry.id, PENDING, NOW - 500, error="HTTP 503", due_at=NOW - 1)
    await store.append([live_ev("ring", "call_user_start", "101")], LIVE_PLAN, NOW)
    [first] = await store.claim("crm", 1, NOW)
    assert (first.uuid, first.action) == ("ring", "ringing")
    # The worker's two budgets: a live job beyond the post-call ones.
    await store.append([live_ev("ring2", "call_user_start", "102")], LIVE_PLAN, NOW + 1)
    both = await store.claim("crm", 2, NOW + 1, live=1)
    assert [(j.uuid, j.action) for j in both] == [
        ("ring2", "ringing"),
        ("old1", "log_call"),  # the retried old0 (due NOW - 1) waits its turn in due order
        ("old2", "log_call"),
    ]
    assert await store.claim("crm", 0, NOW + 1, live=5) == []  # no live job left


async def test_the_jobs_of_one_call_run_one_at_a_time_in_order(store: Storage) -> None:
    call = [
        live_ev("c1", "call_user_start", "101"),
        live_ev("c1", "call_user_start", "102"),
        live_ev("c1", "call_user_start", "101"),  # repeated webhook: a duplicate
        live_ev("c1", "call_answered", "102"),
        live_ev("c1", "call_end"),
    ]
    results, _ = await store.append(call, LIVE_PLAN, NOW)
    assert [r.duplicate for r in results] == [False, False, True, False, False]
    await store.append([live_ev("c2", "call_user_start", "103")], LIVE_PLAN, NOW)
    got = await store.claim("crm", 10, NOW)
    assert [(j.uuid, j.event) for j in got] == [
        ("c1", "call_user_start:101"),
        ("c2", "call_user_start:103"),
    ]
    ring101 = got[0]
    assert await store.claim("crm", 10, NOW) == []  # c1's next job waits for the running one
    assert await store.next_due("crm", NOW) is None  # nothing claimable: no hot loop
    assert await store.book(ring101.id, DONE, NOW, result="registered")
    [ring102] = await store.claim("crm", 10, NOW)
    assert ring102.event == "call_user_start:102"
    # A failure retried later holds the call's later jobs back until its due time...
    assert await store.book(ring102.id, PENDING, NOW, error="HTTP 503", due_at=NOW + 2)
    assert await store.claim("crm", 10, NOW + 1) == []
    assert await store.next_due("crm", NOW + 1) == NOW + 2
    assert await store.next_due("crm", NOW + 1, lane="post") is None  # log_call waits too
    [again] = await store.claim("crm", 10, NOW + 2)
    assert again.id == ring102.id
    # ...and once it is given up (dead, or put aside as done) the next one goes.
    assert await store.book(again.id, DEAD, NOW + 2, error="HTTP 400")
    [answered] = await store.claim("crm", 10, NOW + 2)
    assert answered.action == "answered"
    await store.book(answered.id, DONE, NOW + 3, result="skipped: stale")
    [over] = await store.claim("crm", 10, NOW + 3)
    assert over.action == "over"  # planned before log_call: the card closes first
    await store.book(over.id, DONE, NOW + 3, result="finished")
    [log] = await store.claim("crm", 10, NOW + 3)
    assert log.action == "log_call"


async def test_replicas_claiming_together_never_run_two_jobs_of_one_call(
    open_one: Opener,
) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    events = [
        live_ev(f"c{i}", name, callee)
        for i in range(12)
        for name, callee in (("call_user_start", "101"), ("call_answered", "101"), ("call_end", ""))
    ]
    await a.append(events, LIVE_PLAN, NOW)
    seen: list[tuple[str, str]] = []
    for _ in range(4):  # claim, finish, claim again: the calls go step by step
        got = await asyncio.gather(*(s.claim("crm", 5, NOW, live=5) for s in (a, b, a, b)))
        jobs = [j for batch in got for j in batch]
        calls = [j.uuid for j in jobs]
        assert len(calls) == len(set(calls)) == 12  # one job of each call, never two
        for s, batch in zip((a, b, a, b), got, strict=True):
            for job in batch:
                seen.append((job.uuid, job.action))
                assert await s.book(job.id, DONE, NOW, result="ok")
    order = [action for uuid, action in seen if uuid == "c7"]
    assert order == ["ringing", "answered", "over", "log_call"]


async def test_call_events_name_what_is_stored_for_one_call(store: Storage) -> None:
    await store.append(
        [live_ev("c1", "call_user_start", "101"), live_ev("c1", "call_end")], LIVE_PLAN, NOW
    )
    assert await store.call_events("d.onpbx.ru", "c1") == {"call_user_start:101", "call_end"}
    assert await store.call_events("other.onpbx.ru", "c1") == set()


async def test_calls_in_progress(open_one: Opener) -> None:
    a, b = await open_one("replica-a"), await open_one("replica-b")
    row = {
        "call_key": "d/c1",
        "domain": "d",
        "uuid": "c1",
        "direction": "inbound",
        "client": "+79161234567",
        "line": "74991112233",
        "user_id": None,
        "contact_id": None,
        "started_at": NOW,
    }
    await a.local_live_ring({**row, "extension": "101", "updated_at": NOW})
    await b.local_live_ring({**row, "extension": "102", "user_id": "7", "updated_at": NOW + 1})
    await a.local_live_ring({**row, "extension": "101", "updated_at": NOW + 2})  # again
    [ringing] = await b.local_live_list()
    assert ringing["state"] == "ringing" and ringing["ringing"] == ["101", "102"]
    assert ringing["user_id"] == "7" and ringing["answered_by"] is None
    await b.local_live_answer({**row, "extension": "102", "user_id": "7", "updated_at": NOW + 3})
    await a.local_live_ring({**row, "extension": "103", "updated_at": NOW + 4})  # late ring
    await a.local_live_answer(
        {
            **row,
            "call_key": "d/c2",
            "uuid": "c2",
            "extension": "104",
            "started_at": NOW + 5,
            "updated_at": NOW + 5,
        }
    )  # an answer with no ring seen
    c2, c1 = await a.local_live_list()
    assert (c1["state"], c1["answered_by"], c1["ringing"]) == (
        "answered",
        "102",
        ["101", "102", "103"],
    )
    assert c1["started_at"] == NOW and c1["updated_at"] == NOW + 4
    assert (c2["uuid"], c2["state"], c2["ringing"]) == ("c2", "answered", ["104"])
    assert [r["uuid"] for r in await a.local_live_list(since=NOW + 5)] == ["c2"]
    assert await b.local_live_end("d/c1") and not await a.local_live_end("d/c1")
    assert [r["uuid"] for r in await a.local_live_list()] == ["c2"]
    assert (await a.prune(NOW + 6, 100)).get("local_live") == 1  # its end never came
    assert await a.local_live_list() == []


async def test_a_retry_booked_by_a_clock_far_ahead_is_claimed_now(store: Storage) -> None:
    # A replica whose clock ran ahead booked a retry by its clock: a due time beyond any
    # backoff from ours (more than a day on), or stamped in our future. Waiting for it would
    # park the job for as long as that clock was wrong; it is due now instead.
    await store.append([ev("far"), ev("soon")], {"call_end": [("crm", "log_call")]}, NOW)
    far, soon = await store.claim("crm", 2, NOW)
    ahead = NOW + 10 * 86_400
    assert await store.book(far.id, PENDING, ahead, error="x", due_at=ahead + 60)
    assert await store.book(soon.id, PENDING, NOW, error="x", due_at=NOW + 60)
    assert [j.id for j in await store.claim("crm", 5, NOW + 1)] == [far.id]
    assert [j.id for j in await store.claim("crm", 5, NOW + 61)] == [soon.id]
