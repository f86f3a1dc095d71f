"""kill -9 the real bridge between Bitrix24's ``register`` and ``finish`` of a live call: the
call is still one call in Bitrix24, finished once, on the CALL_ID of the ring (#14)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters.bitrix24.fake import FakeBitrix24, reliability_table
from bridge.fakecrm import Recorded
from bridge.samples import sample
from tests.reliability.process import BridgeProcess, free_port, query, write_settings

TOKEN = "bitrix24-crash-token-0123456789"
UUID = "b24-crash-0001"


def _settings(tmp: Path, port: int, fake: FakeBitrix24) -> Path:
    table = reliability_table(fake.base_url)
    table.update(users={"101": "8", "102": "9"})
    return write_settings(
        tmp / "settings.toml",
        {
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "webhook_token": TOKEN,
                "shutdown_grace_seconds": 0,
            },
            # Short leases: the killed run's job is taken again 2 s after the restart.
            "storage": {"path": str(tmp / "bridge.db"), "lease_seconds": 2},
            "delivery": {"retry_base_seconds": 0.05, "retry_max_delay_seconds": 0.5},
            "log": {"level": "INFO", "format": "json"},
            "adapters.bitrix24": table,
        },
    )


def _event(event: str, callee: str, **extra: str) -> dict[str, str]:
    body = sample(event, UUID, time.time())
    body.update(direction="inbound", caller="79221111123", callee=callee, gateway="73431111137")
    body.update(extra)
    return body


class Killer:
    """Kills the bridge the moment the fake portal receives ``method`` (it then handles the
    request: Bitrix24 has it, the bridge never hears the answer)."""

    def __init__(self, bridge: BridgeProcess) -> None:
        self.bridge = bridge
        self.method: str | None = None
        self.killed = asyncio.Event()

    def __call__(self, seen: Recorded) -> None:
        if self.method and seen.path.lower().endswith(self.method.lower()):
            self.method = None
            self.bridge.kill()
            self.killed.set()


async def _until(check: Callable[[], Any], bridge: BridgeProcess, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out\n{bridge.log()[-3000:]}")
        await asyncio.sleep(0.05)
    return found


async def test_kill_between_register_and_finish_finishes_the_call_once(tmp_path: Path) -> None:
    fake = await FakeBitrix24(time.time).start()
    port = free_port()
    bridge = BridgeProcess(_settings(tmp_path, port, fake), port, tmp_path)
    killer = Killer(bridge)
    fake.on_request = killer
    db = tmp_path / "bridge.db"

    def jobs() -> dict[str, tuple[str, str | None]]:
        rows = query(db, "SELECT action, status, result FROM jobs ORDER BY id")
        return {a: (s, r) for a, s, r in rows}

    async def post(body: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(f"{bridge.base_url}/webhooks/onlinepbx/{TOKEN}", data=body)
            assert r.status_code == 200, r.text

    async def crash_and_restart() -> None:
        await asyncio.wait_for(killer.killed.wait(), 20)
        killer.killed.clear()
        await bridge.wait()
        await bridge.start()

    try:
        await bridge.start()
        # 1. The first ring: killed as Bitrix24 registers the call (SHOW=1 to user 8).
        killer.method = "telephony.externalCall.register"
        await post(_event("call_user_start", "101"))
        await crash_and_restart()
        await _until(lambda: jobs().get("ringing", ("",))[0] == "done", bridge)
        # 2. The end: killed as Bitrix24 finishes it (the finish worked, never booked).
        killer.method = "telephony.externalCall.finish"
        await post(_event("call_end", "101", call_duration="50", dialog_duration="42"))
        await crash_and_restart()
        done = await _until(
            lambda: all(jobs().get(a, ("",))[0] == "done" for a in ("over", "log_call")), bridge
        )
        assert done
        assert await bridge.stop() == 0
    finally:
        await bridge.close()
        await fake.close()

    portal = fake.portal
    registers = portal.calls("telephony.externalCall.register")
    assert len(registers) >= 2  # the killed one, and its retry after the restart
    assert {r["USER_ID"] for r in registers} == {8}  # the same keys every time …
    (reg,) = portal.registrations.values()  # … so Bitrix24 kept one call
    finishes = portal.calls("telephony.externalCall.finish")
    assert len(finishes) >= 2 and {f["CALL_ID"] for f in finishes} == {reg.call_id}
    assert [s["CALL_ID"] for s in portal.stats] == [reg.call_id]  # finished once
    assert reg.finished is not None and reg.finished["CALL_FAILED_CODE"] == "200"
    states = jobs()
    assert states["ringing"] == ("done", reg.call_id)
    assert states["over"] == ("done", reg.call_id) and states["log_call"] == ("done", reg.call_id)
    assert fake.delivered() == {f"onlinepbx.ru/{UUID}/call.logged": 1}
