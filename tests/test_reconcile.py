"""Recovering calls whose webhook never came: the sweep, the late webhook, backfill."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from bridge.keys import DB
from bridge.onlinepbx import commands
from bridge.onlinepbx.backfill import windows
from bridge.onlinepbx.history import as_webhook
from bridge.onlinepbx.reconcile import Tally
from bridge.onlinepbx.service import app_reconciler
from bridge.samples import sample
from bridge.store import Outbox
from bridge.store.sqlite import SQLiteStorage
from tests.conftest import WEBHOOK, rows
from tests.fakes.onlinepbx import call_record
from tests.test_cli import cli, config
from tests.test_delivery import http_table, receivers, wait_for  # noqa: F401

DAY = 86_400


# --- history → webhook ---------------------------------------------------------------------


def test_history_records_become_the_webhooks_that_were_lost():
    answered = as_webhook(call_record("a", 1000, extension="105", talk=42, ring=8), "d.onpbx.ru")
    assert answered["event"] == "call_end" and answered["direction"] == "inbound"
    assert answered["caller"] == "79161234567" and answered["callee"] == "105"
    assert answered["date"] == "1050" and answered["dialog_duration"] == "42"
    assert answered["call_duration"] == "50" and answered["domain"] == "d.onpbx.ru"
    missed = as_webhook(call_record("m", 1000, kind="missed", talk=0), "d.onpbx.ru")
    assert missed["event"] == "call_missed" and "direction" not in missed
    unanswered_inbound = as_webhook(call_record("i", 1000, talk=0), "d.onpbx.ru")
    assert unanswered_inbound["event"] == "call_missed"
    outbound = as_webhook(call_record("o", 1000, kind="outbound", talk=0), "d.onpbx.ru")
    assert outbound["event"] == "call_end" and outbound["direction"] == "outbound"
    assert outbound["caller"] == "101" and outbound["callee"] == "79161234567"


def test_backfill_windows_cover_the_range_without_overlap():
    cut = windows(0, 10 * DAY + 5, 7 * DAY)
    assert [(w.start, w.end) for w in cut] == [(0, 7 * DAY - 1), (7 * DAY, 10 * DAY + 4)]


# --- the sweep -----------------------------------------------------------------------------


async def recover_now(app) -> Tally:
    return await app_reconciler(app).sweep(3 * 3600)


async def test_sweep_recovers_a_call_whose_webhook_never_came(
    pbx, pbx_settings, pbx_clock, start_bridge
):
    now = int(pbx_clock())
    pbx.calls += [
        call_record("lost-answered", now - 900, extension="105"),
        call_record("lost-missed", now - 600, kind="missed", talk=0),
        call_record("internal", now - 300, kind="local"),
    ]
    settings = pbx_settings(adapters={}, schedule={"locale": "en"})
    client = await start_bridge(settings, clock=pbx_clock)
    tally = await recover_now(client.app)
    assert (tally.found, tally.queued, tally.internal) == (3, 2, 1)

    async def delivered():
        calls = await rows(settings, "SELECT uuid, extension FROM local_calls")
        tasks = await rows(settings, "SELECT uuid FROM local_tasks")
        return (calls, tasks) if calls and tasks else None

    calls, tasks = await wait_for(delivered)
    assert calls == [("lost-answered", "105")] and tasks == [("lost-missed",)]
    events = await rows(settings, "SELECT uuid, event, recovered FROM events ORDER BY uuid")
    assert events == [("lost-answered", "call_end", 1), ("lost-missed", "call_missed", 1)]
    again = await recover_now(client.app)
    assert (again.known, again.queued) == (2, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_table(request: Any, tmp_path: Path) -> dict[str, Any]:
    if request.param == "postgresql":
        return {"url": request.getfixturevalue("postgres_url")}
    return {"path": str(tmp_path / "bridge.db")}


async def test_a_recovered_call_gets_a_live_job_only_if_it_rang_through_the_bridge(
    pbx, pbx_settings, pbx_clock, start_bridge, storage_table
):
    # local has live actions, on by default. A call the bridge never heard of never showed a
    # card: an `over` for it could only be skipped ("no card was shown"), so it gets none. A
    # call whose ring came (only its end was lost) keeps its `over`: it ends the call in
    # progress that the ring left in `calls --live`.
    now = int(pbx_clock())
    pbx.calls += [
        call_record("unseen-answered", now - 900, extension="101"),
        call_record("unseen-missed", now - 600, kind="missed", talk=0),
        call_record("rang", now - 300, extension="101"),
    ]
    settings = pbx_settings(adapters={}, storage=storage_table)
    client = await start_bridge(settings, clock=pbx_clock)
    db = client.app[DB]
    ring = {**sample("call_user_start", uuid="rang", now=now - 300), "domain": pbx.domain}
    assert (await client.post(WEBHOOK, data=ring)).status == 200

    async def rung():
        return await db.local_live_list(10, None) or None

    await wait_for(rung)
    assert (await recover_now(client.app)).queued == 3

    async def booked():
        jobs = await Outbox(db).list(limit=20)
        return jobs if all(j.status == "done" for j in jobs) else None

    jobs = await wait_for(booked)
    recovered = sorted((j.uuid, j.action) for j in jobs if j.recovered)
    assert recovered == [
        ("rang", "log_call"),
        ("rang", "over"),
        ("unseen-answered", "log_call"),
        ("unseen-missed", "create_task"),
    ]
    assert not [j.result for j in jobs if (j.result or "").startswith("skipped")]
    (over,) = [j for j in jobs if j.action == "over"]
    assert over.result == "live:ended" and await db.local_live_list(10, None) == []


async def test_sweep_then_late_webhook_make_one_crm_call(
    pbx,
    pbx_settings,
    pbx_clock,
    start_bridge,
    receivers,  # noqa: F811
):
    receiver = await receivers()
    now = int(pbx_clock())
    body = {**sample("call_end", uuid="late-1", now=now - 800), "domain": "Example.ONPBX.ru"}
    pbx.calls.append(call_record("late-1", now - 950))
    # The [onlinepbx] domain is written differently from the webhook's: same dedup key.
    settings = pbx_settings(
        adapters={"hook": http_table(receiver)},
        onlinepbx={"domain": "https://example.onpbx.ru/"},
    )
    client = await start_bridge(settings, clock=pbx_clock)
    assert (await recover_now(client.app)).queued == 1
    late = await client.post(WEBHOOK, data=body)
    assert (await late.json())["duplicate"] is True

    async def delivered():
        return receiver.documents()

    (doc,) = await wait_for(delivered)
    assert doc["call"]["uuid"] == "late-1" and doc["call"]["recovered"] is True
    await asyncio.sleep(0.1)
    assert len(receiver.documents()) == 1


async def test_webhook_first_then_sweep_recovers_nothing(
    pbx, pbx_settings, pbx_clock, start_bridge
):
    now = int(pbx_clock())
    pbx.calls.append(call_record("seen-1", now - 950))
    client = await start_bridge(pbx_settings(), clock=pbx_clock)
    body = {**sample("call_end", uuid="seen-1", now=now - 800), "domain": pbx.domain}
    assert (await client.post(WEBHOOK, data=body)).status == 200
    tally = await recover_now(client.app)
    assert (tally.found, tally.known, tally.queued) == (1, 1, 0)


async def test_the_sweep_runs_at_startup_when_enabled(pbx, pbx_settings, pbx_clock, start_bridge):
    now = int(pbx_clock())
    pbx.calls.append(call_record("while-down", now - 1200))
    settings = pbx_settings(onlinepbx={"sweep_interval_minutes": 10})
    await start_bridge(settings, clock=pbx_clock)

    async def recovered():
        return await rows(settings, "SELECT uuid FROM events WHERE recovered = 1")

    assert await wait_for(recovered) == [("while-down",)]


# --- backfill ------------------------------------------------------------------------------


def backfill_config(tmp_path, pbx, extra: str = "") -> str:
    return config(
        tmp_path,
        f'[onlinepbx]\ndomain = "{pbx.domain}"\napi_key = "{pbx.api_key}"\n'
        f'base_url = "{pbx.base_url}"\nrate_limit = 5\n' + extra,
    )


def seed_month(pbx) -> list[str]:
    """Ten calls, one every three days through March 2026 (Moscow time)."""
    start = 1_772_312_400  # 2026-03-01 00:00 MSK
    uuids = [f"old-{i}" for i in range(10)]
    pbx.calls += [call_record(u, start + i * 3 * DAY + 3600) for i, u in enumerate(uuids)]
    return uuids


async def test_backfill_dry_run_counts_and_queues_nothing(tmp_path, pbx, make_settings, capsys):
    seed_month(pbx)
    path = backfill_config(tmp_path, pbx, "backfill_window_hours = 168\n")
    argv = ["-c", path, "backfill", "--since", "2026-03-01", "--until", "2026-04-01", "--dry-run"]
    assert await cli(argv) == 0
    out = capsys.readouterr()
    assert "calls found: 10, already known: 0, would be queued: 10" in out.out
    assert "window" in out.err  # the progress bar
    assert await rows(make_settings(), "SELECT COUNT(*) FROM events") == [(0,)]


async def test_backfill_resumes_after_an_interruption(tmp_path, pbx, make_settings, capsys):
    uuids = seed_month(pbx)
    path = backfill_config(tmp_path, pbx, "backfill_window_hours = 168\n")
    argv = ["-c", path, "backfill", "--since", "2026-03-01", "--until", "2026-04-01", "--force"]
    pbx.fail_history_at = 3  # the third week fails
    assert await cli(argv) == 1
    first = capsys.readouterr()
    assert "HTTP 500" in first.err and "continue from 2026-03-15 00:00" in first.err
    got = await rows(make_settings(), "SELECT uuid FROM events ORDER BY id")
    assert [u for (u,) in got] == uuids[:5]  # two weeks: days 0..12
    searched = len(pbx.searches())
    assert await cli(argv) == 0
    second = capsys.readouterr()
    assert "resuming an earlier run from 2026-03-15 00:00" in second.err
    assert len(pbx.searches()) - searched == 3  # weeks 3, 4 and the last three days
    assert "already known: 0, queued: 5" in second.out
    got = await rows(make_settings(), "SELECT uuid, event, recovered FROM events ORDER BY uuid")
    assert [u for u, _, _ in got] == sorted(uuids)
    assert {(e, r) for _, e, r in got} == {("call_end", 1)}


async def test_backfill_stops_cleanly_on_ctrl_c_and_resumes(tmp_path, pbx, pbx_settings):
    uuids = seed_month(pbx)
    settings = pbx_settings(onlinepbx={"backfill_window_hours": 168})
    args = argparse.Namespace(
        since="2026-03-01", until="2026-04-01", dry_run=False, quiet=True, force=True
    )
    db = await SQLiteStorage.open(settings.storage.path)
    try:
        pbx.hang_history_at = 2
        task = asyncio.create_task(commands.backfill(settings, db, args))
        await pbx.hanging.wait()
        task.cancel()  # what asyncio.run does with the main task on Ctrl-C
        assert await task == 130
        pbx.hang_history_at = None
        assert await commands.backfill(settings, db, args) == 0
        got = await db.db.fetchall("SELECT uuid FROM events ORDER BY uuid")
        assert [r[0] for r in got] == sorted(uuids)
    finally:
        await db.close()


async def test_check_warns_that_raw_links_stop_playing(tmp_path, capsys):
    assert await cli(["-c", config(tmp_path), "check"]) == 0
    out = capsys.readouterr().out
    assert "[WARN]" in out and "30 minutes" in out


async def test_check_proves_the_api_key(tmp_path, pbx, capsys):
    path = backfill_config(tmp_path, pbx)
    pbx.api_key = "a-new-key-0123456789"  # the configured one was replaced in the panel
    assert await cli(["-c", path, "check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] onlinepbx" in out and "Auth key not found" in out
    assert "fake-api-key-0123456789" not in out
