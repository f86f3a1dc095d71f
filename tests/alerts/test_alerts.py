"""Alerts: grouped per adapter, every channel against a local fake, retried, never blocking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook as StandardWebhook

from bridge.alerts import Monitor, send_test
from bridge.alerts.channels import channels
from bridge.alerts.monitor import RETRY_SECONDS
from bridge.cli import main
from bridge.metrics import Metrics
from bridge.samples import sample
from bridge.settings import Settings
from bridge.store.sqlite import SQLiteStorage
from tests.alerts.fakes import BOT_TOKEN, CHAT_ID, FakeTelegram, free_port, smtp_server
from tests.conftest import WEBHOOK

HOOK_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItYWxlcnRz"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    database = await SQLiteStorage.open(tmp_path / "bridge.db")
    yield database
    await database.close()


async def _job(
    db: SQLiteStorage, at: float, status: str, adapter: str = "local", **kw: Any
) -> None:
    body = sample("call_end")
    event_id = (
        await db.db.write(
            "INSERT INTO events (domain, uuid, event, payload, received_at, recovered)"
            " VALUES ('d', ?, 'call_end', ?, ?, ?) RETURNING id",
            (body["uuid"], json.dumps(body), at, kw.get("recovered", 0)),
        )
    )[0][0]
    await db.db.write(
        "INSERT INTO jobs (event_id, adapter, action, status, due_at, created_at, updated_at,"
        " last_error) VALUES (?, ?, 'log_call', ?, ?, ?, ?, ?)",
        (event_id, adapter, status, at, at, at, kw.get("error")),
    )


@asynccontextmanager
async def watching(
    db: SQLiteStorage, url: str, metrics: Metrics | None = None
) -> AsyncIterator[tuple[Monitor, Clock]]:
    clock, settings = Clock(), _settings(url)
    async with httpx.AsyncClient() as client:
        outlets = channels(settings.alerts, client)
        monitor = Monitor(settings, db, metrics or Metrics(), outlets, clock)
        await monitor.start()
        yield monitor, clock


async def tick(monitor: Monitor) -> None:
    monitor.enqueue(await monitor.collect())
    await monitor.send_due()


def _settings(base_url: str, **alerts: Any) -> Settings:
    return Settings(
        alerts={
            "interval_seconds": 60,
            "pending_age_minutes": 30,
            "telegram": {"bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "base_url": base_url},
            **alerts,
        },
        adapters={"local": {}, "other": {"type": "local"}},
    )


async def test_one_message_per_adapter_with_counts_and_no_secrets(db, telegram):
    fake, url = telegram
    metrics = Metrics()
    async with watching(db, url, metrics) as (monitor, clock):
        clock.now += 60
        for i in range(5):
            await _job(db, clock.now - 1, "dead", error=f"HTTP 400: bad phone {i}")
        await _job(db, clock.now - 1, "done", adapter="other")
        for _ in range(3):
            metrics.crm_requests.labels("other", "401").inc()
        await tick(monitor)
    texts = [m["text"] for m in fake.sent]
    assert len(texts) == 2  # local (dead) and other (credentials): one each, not eight
    local = next(t for t in texts if "pbx-bridge: local" in t)
    assert "5 job(s) went dead" in local and "bad phone 4" in local
    other = next(t for t in texts if "pbx-bridge: other" in t)
    assert "refused the credentials 3 time(s)" in other
    assert all(BOT_TOKEN not in t for t in texts)
    assert {m["chat_id"] for m in fake.sent} == {CHAT_ID}


async def test_nothing_new_sends_nothing_and_a_stale_backlog_is_not_repeated(db, telegram):
    fake, url = telegram
    async with watching(db, url) as (monitor, clock):
        await tick(monitor)
        assert fake.sent == []
        await _job(db, clock.now - 2 * 3600, "pending")
        for _ in range(3):
            clock.now += 60
            await tick(monitor)
    assert len(fake.sent) == 1
    assert "oldest pending job has waited 121 min (threshold 30 min)" in fake.sent[0]["text"]


async def test_recovered_calls_are_reported(db, telegram):
    fake, url = telegram
    async with watching(db, url) as (monitor, clock):
        await _job(db, clock.now, "done", recovered=1)
        await _job(db, clock.now, "done", recovered=1)
        await tick(monitor)
    assert len(fake.sent) == 1
    assert "recovered 2 call(s)" in fake.sent[0]["text"]


async def test_telegram_429_retry_after_is_honoured(db, telegram):
    fake, url = telegram
    fake.flood, fake.retry_after = 1, 45
    async with watching(db, url) as (monitor, clock):
        await _job(db, clock.now + 1, "dead", error="gone")
        clock.now += 60
        await tick(monitor)
        assert fake.sent == [] and monitor.queued == 1
        clock.now += RETRY_SECONDS + 1  # past our floor, not past Telegram's 45 s
        await monitor.send_due()
        assert fake.requests == 1 and monitor.queued == 1
        clock.now += 45
        await monitor.send_due()
    assert len(fake.sent) == 1 and monitor.queued == 0 and fake.requests == 2


async def test_refusals_are_reported_without_the_token(telegram):
    _, url = telegram
    wrong = Settings(
        alerts={
            "telegram": {"bot_token": "999:wrong-token-xyz", "chat_id": CHAT_ID, "base_url": url}
        }
    )
    assert await send_test(wrong) == [("telegram", "telegram: HTTP 401: Unauthorized")]
    no_chat = _settings(url)
    no_chat.alerts.telegram.chat_id = "42"
    [(_, reason)] = await send_test(no_chat)
    assert reason == "telegram: HTTP 400: Bad Request: chat not found"
    down = _settings(f"http://127.0.0.1:{free_port()}")
    [(_, reason)] = await send_test(down)
    assert reason.startswith("telegram: ConnectError") and BOT_TOKEN not in reason


async def test_email_reaches_a_real_smtp_server():
    controller, box = smtp_server()
    try:
        settings = Settings(
            alerts={
                "email": {
                    "host": "127.0.0.1",
                    "port": controller.port,
                    "security": "none",
                    "from": "bridge@example.com",
                    "to": ["admin@example.com", "ops@example.com"],
                }
            }
        )
        assert await send_test(settings) == [("email", None)]
    finally:
        controller.stop()
    [envelope] = box.messages
    assert envelope.rcpt_tos == ["admin@example.com", "ops@example.com"]
    assert b"Subject: pbx-bridge: test alert" in envelope.content


async def test_signed_webhook_verifies_with_the_standard_library():
    from aiohttp import web

    captured: list[tuple[bytes, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        captured.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/alerts", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        settings = Settings(
            alerts={"webhook": {"url": str(server.make_url("/alerts")), "secret": HOOK_SECRET}}
        )
        assert await send_test(settings) == [("webhook", None)]
    finally:
        await server.close()
    [(body, headers)] = captured
    lowered = {k.lower(): v for k, v in headers.items()}
    document = StandardWebhook(HOOK_SECRET).verify(body, lowered)
    assert (
        document["type"] == "pbx_bridge.alert" and document["subject"] == "pbx-bridge: test alert"
    )
    assert HOOK_SECRET not in body.decode()


async def test_a_failing_channel_never_blocks_delivery(make_settings, start_bridge, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        alerts={
            "interval_seconds": 1,
            "telegram": {"bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "base_url": down},
        }
    )
    client = await start_bridge(settings)
    for _ in range(3):
        assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
    import sqlite3

    db = sqlite3.connect(settings.storage.path)
    for _ in range(100):
        # 3 calls × (log_call + over: live actions are on by default)
        if db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 6:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("delivery stalled while alerts failed")


def test_check_sends_a_test_alert(tmp_path, capsys):
    controller, box = smtp_server()
    try:
        config = tmp_path / "settings.toml"
        config.write_text(
            f'[storage]\npath = "{tmp_path / "b.db"}"\n'
            f'[alerts.email]\nhost = "127.0.0.1"\nport = {controller.port}\nsecurity = "none"\n'
            'from = "bridge@example.com"\nto = ["admin@example.com"]\n'
        )
        assert main(["check", "--config", str(config)]) == 0
    finally:
        controller.stop()
    assert "[ OK ] alert via email: test message sent" in capsys.readouterr().out
    assert len(box.messages) == 1
