"""Storage promises an adversarial review broke (issue #12): file modes, one bad event in a
group commit, clock steps, one key for CRM ids, backfill beyond retention, ``outbox retry`` of
a job that died of old age, and /readyz after a failed commit."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.adapter.errors import RetryLater
from bridge.deliver.backoff import Backoff
from bridge.deliver.worker import AdapterWorker
from bridge.keys import DB
from bridge.metrics import Metrics
from bridge.samples import sample
from bridge.store.events import EventWriter, IncomingEvent
from bridge.store.outbox import Outbox
from bridge.store.retention import Pruner, prune
from bridge.store.sqlite import SQLiteStorage
from tests.conftest import WEBHOOK, FakeClock, rows
from tests.reliability.process import write_settings

DAY = 86_400.0


def _event(n: int | str, **payload: str) -> IncomingEvent:
    return IncomingEvent("pbx.example.com", f"u-{n}", "call_end", {"uuid": f"u-{n}", **payload})


def _one_job(event: str) -> list[tuple[str, str]]:
    return [("crm", "log_call")]


# --- 6. file modes -------------------------------------------------------------------------------


async def test_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files come out 0644 unless the bridge says so
    try:
        db = await SQLiteStorage.open(tmp_path / "fresh.db")
        await db.put_meta("x", "y")
        existing = tmp_path / "old.db"
        existing.touch(mode=0o644)  # made by an older version
        db2 = await SQLiteStorage.open(existing)
    finally:
        os.umask(old)
    try:
        for path in (tmp_path / "fresh.db", Path(f"{tmp_path}/fresh.db-wal"), existing):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path.name}: {oct(mode)}"
        shm = Path(f"{tmp_path}/fresh.db-shm")
        assert stat.S_IMODE(shm.stat().st_mode) == 0o600
    finally:
        await db.close()
        await db2.close()


# --- 9. one bad event in a batch -----------------------------------------------------------------


async def test_one_unstorable_event_does_not_fail_its_batch(tmp_path: Path) -> None:
    db = await SQLiteStorage.open(tmp_path / "b.db")
    writer = EventWriter(db, _one_job)
    try:
        bad = IncomingEvent("pbx.example.com", "u-bad", "call_end", {"f\udcff": "x"})
        results = await asyncio.gather(
            writer.submit(_event(1)),
            writer.submit(bad),
            writer.submit(_event(2)),
            return_exceptions=True,
        )
        assert not isinstance(results[0], BaseException), results
        assert not isinstance(results[2], BaseException), results
        assert isinstance(results[1], Exception)
        stored = await db.db.fetchall("SELECT uuid FROM events ORDER BY uuid")
        assert [r[0] for r in stored] == ["u-1", "u-2"]
        jobs = await db.db.fetchall("SELECT COUNT(*) FROM jobs")
        assert jobs[0][0] == 2
    finally:
        await db.close()


# --- 12. clock steps -----------------------------------------------------------------------------


async def test_a_retry_booked_with_the_clock_days_ahead_is_not_waited_out(tmp_path: Path) -> None:
    clock = FakeClock()
    db = await SQLiteStorage.open(tmp_path / "b.db")
    try:
        await EventWriter(db, _one_job, clock=clock).submit(_event(1))
        outbox = Outbox(db, clock)
        real = clock.now
        clock.advance(3 * DAY)  # the clock jumps days ahead (a bad NTP answer) …
        (job,) = await outbox.claim("crm", 10)
        await outbox.mark_retry(job.id, clock.now + 10, "HTTP 500")
        clock.now = real + 60  # … and is set right a minute later
        due = await outbox.next_due("crm")
        assert due is not None and due <= clock.now + 10, f"due in {(due or 0) - clock.now:.0f} s"
        assert [j.id for j in await outbox.claim("crm", 10)] == [job.id]
    finally:
        await db.close()


def test_a_retry_after_is_bounded() -> None:
    backoff = Backoff()
    assert backoff.delay(1, retry_after=30 * DAY) <= DAY


async def test_a_start_with_the_clock_far_ahead_keeps_fresh_dedup_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    db = await SQLiteStorage.open(tmp_path / "b.db")
    try:
        writer = EventWriter(db, lambda event: [], clock=clock)
        await writer.submit(_event("old"))
        clock.advance(40 * DAY)
        await writer.submit(_event("fresh"))
        clock.advance(365 * DAY)  # started with a clock a year ahead
        await Pruner(db, retention_days=30, clock=clock).once()
        left = [r[0] for r in await db.db.fetchall("SELECT uuid FROM events")]
        assert left == ["u-fresh"], left  # the old one may go, the newest ones never
        assert (await writer.submit(_event("fresh"))).duplicate
    finally:
        await db.close()


# --- 14. one key for CRM ids ---------------------------------------------------------------------


async def test_crm_ids_use_the_event_key_and_are_pruned(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings(adapters={"local": {}})
    client = await start_bridge(settings)
    body = {**sample("call_end", uuid=" Mixed-Case-uuid "), "domain": "PBX.Example.COM"}
    assert (await client.post(WEBHOOK, data=body)).status == 200
    for _ in range(300):  # both jobs: over + log_call
        if await rows(settings, "SELECT status FROM jobs") == [("done",), ("done",)]:
            break
        await asyncio.sleep(0.02)
    (domain, uuid), *_ = await rows(settings, "SELECT domain, uuid FROM events")
    keys = {r[0] for r in await rows(settings, "SELECT call_key FROM crm_objects")}
    assert keys == {f"{domain}/{uuid}"}, keys
    deleted = await prune(client.app[DB], cutoff=1e12)
    assert deleted["crm_objects"] >= 1
    assert await rows(settings, "SELECT COUNT(*) FROM crm_objects") == [(0,)]


# --- 15. backfill beyond retention ---------------------------------------------------------------


def test_backfill_older_than_retention_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import main

    config = write_settings(
        tmp_path / "settings.toml",
        {
            "storage": {"path": str(tmp_path / "b.db"), "retention_days": 30},
            "onlinepbx": {"domain": "pbx.example.com", "api_key": "k" * 20},
        },
    )
    code = main(["--config", str(config), "backfill", "--since", "2001-01-01"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "retention_days" in err and "--force" in err


# --- 17. outbox retry restarts the age -----------------------------------------------------------


class _Failing:
    name = "crm"

    async def run(self, job: Any) -> str:
        raise RetryLater("HTTP 500")


async def test_outbox_retry_of_a_job_dead_of_old_age_restarts_its_age(tmp_path: Path) -> None:
    clock = FakeClock()
    db = await SQLiteStorage.open(tmp_path / "b.db")
    try:
        await EventWriter(db, _one_job, clock=clock).submit(_event(1))
        outbox = Outbox(db, clock)
        (job,) = await outbox.claim("crm", 1)
        clock.advance(73 * 3600)
        await outbox.mark_dead(job.id, "gave up after 12 attempts")
        clock.advance(DAY)  # the admin fixes the CRM and retries the next day
        assert await outbox.retry_dead() == 1
        worker = AdapterWorker(_Failing(), outbox, Backoff(), Metrics(), concurrency=1, clock=clock)  # type: ignore[arg-type]
        (again,) = await outbox.claim("crm", 1)
        await worker.process(again)
        status = await db.db.fetchone("SELECT status, attempts FROM jobs")
        assert tuple(status) == ("pending", 1), tuple(status)  # a real new round of tries
    finally:
        await db.close()


# --- 18. /readyz reflects the last commit --------------------------------------------------------


async def test_readyz_is_red_while_event_commits_fail(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings(adapters={"local": {}})
    client = await start_bridge(settings)
    db = client.app[DB]
    # Event inserts fail while small writes (the heartbeat) still fit: a nearly full disk.
    trigger = (
        "CREATE TEMP TRIGGER full BEFORE INSERT ON events"
        " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    await db.db.run(lambda conn: conn.execute(trigger))
    assert (await client.post(WEBHOOK, data=sample("call_end", uuid="r-1"))).status == 503
    ready = await client.get("/readyz")
    assert ready.status == 503, await ready.text()
    assert "disk is full" in (await ready.json())["checks"]["database"]
    await db.db.run(lambda conn: conn.execute("DROP TRIGGER temp.full"))
    ready = await client.get("/readyz")  # no webhook needed to turn green again
    assert ready.status == 200, await ready.text()
    assert (await client.post(WEBHOOK, data=sample("call_end", uuid="r-2"))).status == 200


# --- 4. one serving process per database ------------------------------------------------------


async def test_a_second_bridge_on_the_same_database_is_refused_and_changes_nothing(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    from bridge.store import StorageError

    local = {"events": ["log_call", "create_task"]}  # one (post-call) job to lease
    settings = make_settings(adapters={"local": local})
    first = await start_bridge(settings)
    assert (await first.post(WEBHOOK, data=sample("call_end", uuid="two-1"))).status == 200
    for _ in range(300):
        if await rows(settings, "SELECT status FROM jobs") == [("done",)]:
            break
        await asyncio.sleep(0.02)
    # a job "in flight" whose lease a second start would take as expired and requeue
    await first.app[DB].db.write(
        "UPDATE jobs SET status = 'running', lease_owner = 'first', lease_expires = 0"
    )
    with pytest.raises(StorageError, match="already running"):
        await start_bridge(settings)
    assert await rows(settings, "SELECT status FROM jobs") == [("running",)]  # not requeued
    await first.close()
    again = await start_bridge(settings)  # the lock went with the first process
    assert (await again.get("/healthz")).status == 200
