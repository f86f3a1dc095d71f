"""How the storage starts: `pbx-bridge migrate`, an old file brought forward, one serve per
SQLite file, and a server started on PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app
from bridge.cli import main
from bridge.keys import DB
from bridge.samples import sample
from bridge.store import StorageBusy
from bridge.store.migrations import LATEST
from bridge.store.sqlite import SQLiteStorage
from tests.conftest import TOKEN, WEBHOOK

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, domain TEXT NOT NULL, uuid TEXT NOT NULL,
    event TEXT NOT NULL, payload TEXT NOT NULL, received_at REAL NOT NULL,
    recovered INTEGER NOT NULL DEFAULT 0, UNIQUE (domain, uuid, event));
CREATE TABLE jobs (id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL REFERENCES events (id),
    adapter TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, due_at REAL NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, last_error TEXT, result TEXT, UNIQUE (event_id, adapter, action));
CREATE TABLE crm_objects (adapter TEXT NOT NULL, call_key TEXT NOT NULL, name TEXT NOT NULL,
    value TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (adapter, call_key, name));
CREATE TABLE adapter_state (adapter TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (adapter, key));
CREATE TABLE local_calls (id INTEGER PRIMARY KEY, call_key TEXT NOT NULL UNIQUE,
    uuid TEXT NOT NULL, direction TEXT NOT NULL, client TEXT NOT NULL, extension TEXT,
    line TEXT, started_at TEXT NOT NULL, talk_seconds INTEGER NOT NULL,
    total_seconds INTEGER NOT NULL, result TEXT NOT NULL, user_id TEXT, contact_id TEXT,
    recording_url TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO events VALUES (1, 'd', 'u1', 'call_end', '{"uuid": "u1"}', 1.0, 0);
INSERT INTO jobs VALUES (1, 1, 'crm', 'log_call', 'running', 1, 1.0, 1.0, 1.0, NULL, NULL);
"""


def config(tmp_path, storage: str) -> str:
    path = tmp_path / "settings.toml"
    path.write_text(f'[server]\nwebhook_token = "{TOKEN}"\n[storage]\n{storage}\n')
    return str(path)


async def test_migrate_creates_a_new_sqlite_file_at_the_latest_version(tmp_path, capsys) -> None:
    db = tmp_path / "new.db"
    cfg = config(tmp_path, f'path = "{db}"')
    assert await asyncio.to_thread(main, ["--config", cfg, "migrate"]) == 0
    assert f"migrated from schema version 0 to {LATEST}" in capsys.readouterr().out
    assert db.exists()


async def test_migrate_brings_a_first_release_file_forward(tmp_path, capsys) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.close()
    cfg = config(tmp_path, f'path = "{db}"')
    assert await asyncio.to_thread(main, ["--config", cfg, "migrate"]) == 0
    assert f"migrated from schema version 1 to {LATEST}" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["--config", cfg, "migrate"]) == 0
    assert f"schema version {LATEST}, up to date" in capsys.readouterr().out
    storage = await SQLiteStorage.open(db)
    try:
        # The old process's job (no lease: it predates leases) is taken again at start.
        assert await storage.requeue_expired(2.0) == 1
        [job] = await storage.claim("crm", 1, 2.0)
        assert job.uuid == "u1" and job.attempts == 2
    finally:
        await storage.close()


async def test_a_file_from_a_newer_release_is_refused(tmp_path, capsys) -> None:
    db = tmp_path / "new.db"
    storage = await SQLiteStorage.open(db)
    await storage.put_meta("schema_version", str(LATEST + 1))
    await storage.close()
    cfg = config(tmp_path, f'path = "{db}"')
    assert await asyncio.to_thread(main, ["--config", cfg, "outbox", "stats"]) == 2
    err = capsys.readouterr().err
    assert f"schema version {LATEST + 1}, newer than this pbx-bridge" in err


async def test_a_second_serve_on_one_sqlite_file_refuses_to_start(make_settings) -> None:
    settings = make_settings(adapters={"local": {}})
    first = TestClient(TestServer(create_app(settings)))
    await first.start_server()
    second = TestClient(TestServer(create_app(settings)))
    try:
        with pytest.raises(StorageBusy, match="another pbx-bridge serve"):
            await second.start_server()
        # The first one is untouched and keeps taking webhooks.
        resp = await first.post(WEBHOOK, data=sample("call_end"))
        assert resp.status == 200
    finally:
        await second.close()
        await first.close()


def test_serve_says_why_it_will_not_start(tmp_path, capsys) -> None:
    db = tmp_path / "b.db"
    cfg = config(tmp_path, f'path = "{db}"')
    with open(f"{db}.lock", "w") as held:  # what a running serve holds
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["--config", cfg, "serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "another pbx-bridge serve" in err and "PostgreSQL" in err
    assert "Traceback" not in err


async def test_serve_on_postgresql(postgres_url, make_settings, start_bridge) -> None:
    # post-call only: the one job this follows end to end
    local = {"events": ["log_call", "create_task"]}
    settings = make_settings(adapters={"local": local}, storage={"url": postgres_url})
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=sample("call_end", uuid="pg-call"))
    assert resp.status == 200 and (await resp.json())["jobs"] == 1
    assert (await client.get("/readyz")).status == 200
    storage = client.app[DB]
    for _ in range(100):
        [job] = await storage.list_jobs()
        if job.status == "done":
            break
        await asyncio.sleep(0.05)
    assert job.status == "done" and job.result == "call:1"
    assert [r["uuid"] for r in await storage.local_list("calls")] == ["pg-call"]


@pytest.mark.parametrize("step", ["delivery", "recordings"])
async def test_a_start_step_that_fails_closes_what_it_opened(
    step, pbx_settings, monkeypatch
) -> None:
    # aiohttp unwinds only the start steps that finished; a step that failed half-way must
    # close what it had opened itself: the adapters (an adapter's setup failed), the onlinePBX
    # client (the link-signing key could not be stored).
    from adapters.local.adapter import LocalAdapter
    from bridge.onlinepbx import service
    from bridge.onlinepbx.client import OnlinePBX
    from bridge.store import StorageError

    closed: list[str] = []

    async def refuse(*args: object) -> None:
        raise StorageError(f"{step} could not start")

    async def adapter_closed(self: LocalAdapter) -> None:
        closed.append("adapter")

    async def client_closed(self: OnlinePBX) -> None:
        closed.append("onlinepbx")

    monkeypatch.setattr(LocalAdapter, "aclose", adapter_closed)
    monkeypatch.setattr(OnlinePBX, "aclose", client_closed)
    if step == "delivery":
        monkeypatch.setattr(LocalAdapter, "setup", refuse)
    else:
        monkeypatch.setattr(service, "recording_links", refuse)
    settings = pbx_settings(adapters={"local": {}}, server={"public_url": "https://pbx.example"})
    client = TestClient(TestServer(create_app(settings)))
    try:
        with pytest.raises(StorageError, match="could not start"):
            await client.start_server()
        assert closed == (["adapter"] if step == "delivery" else ["onlinepbx"])
    finally:
        await client.close()  # the steps that did start (the storage) are unwound here
