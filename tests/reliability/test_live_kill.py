"""#14: a kill -9 between Bitrix24's register and finish — the call is still finished once, on
its ``CALL_ID``.

The real bridge (``pbx-bridge serve``) with a Bitrix24 adapter against the loopback portal
(adapters/bitrix24/fake.py). The portal takes the ring's ``telephony.externalcall.register``
and the bridge is SIGKILLed before the answer reaches it: Bitrix24 has the call, the bridge
has not recorded its CALL_ID. After the restart the answer and the end arrive; the portal
must end up with one call, finished once, and no job may be dead. (What happens: the ring
and the answer come too late and are skipped, ``over`` finds no CALL_ID, and ``log_call``
registers again with the same keys — Bitrix24 hands back the ring's CALL_ID within 30
minutes — and finishes that one.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from adapters.bitrix24.fake import FakeBitrix24, reliability_table
from bridge.fakecrm import Recorded
from bridge.samples import sample
from tests.reliability.process import BridgeProcess, free_port, query, write_settings

TOKEN = "live-kill-harness-token-0123456789"
UUID = "live-kill-0001-4aag-b000-000000000001"


def _event(name: str, callee: str, **extra: str) -> dict[str, str]:
    body = sample(name, UUID)
    body.update(
        direction="inbound", caller="79221111123", callee=callee, gateway="74991111282", **extra
    )
    return body


async def test_kill_between_register_and_finish_finishes_the_call_once(tmp_path: Path) -> None:
    fake = await FakeBitrix24(clock=time.time).start()
    port = free_port()
    table = {**reliability_table(fake.base_url), "users": {"101": "8", "102": "9"}}
    config = write_settings(
        tmp_path / "settings.toml",
        {
            "server": {"host": "127.0.0.1", "port": port, "webhook_token": TOKEN},
            # Short leases: the killed run's ring job is taken again 2 s after it died.
            "storage": {"path": str(tmp_path / "bridge.db"), "lease_seconds": 2},
            "delivery": {"retry_base_seconds": 0.05, "retry_max_delay_seconds": 0.5},
            "log": {"level": "INFO", "format": "json"},
            "adapters.b24": table,
        },
    )
    bridge = BridgeProcess(config, port, tmp_path)
    killed: list[Recorded] = []

    def on_request(seen: Recorded) -> None:
        if not killed and seen.path.lower().endswith("telephony.externalcall.register"):
            killed.append(seen)
            bridge.kill()  # the portal registers the call; the bridge never hears the answer

    fake.on_request = on_request
    url = f"http://127.0.0.1:{port}/webhooks/onlinepbx/{TOKEN}"
    db = tmp_path / "bridge.db"
    try:
        await bridge.start()
        async with httpx.AsyncClient(timeout=10) as client:
            assert (
                await client.post(url, data=_event("call_user_start", "101"))
            ).status_code == 200
            await bridge.wait()
            assert killed, "the ring never reached the portal"
            assert len(fake.portal.registrations) == 1
            await bridge.start()
            for body in (
                _event("call_user_start", "102"),
                _event("call_answered", "101"),
                _event("call_end", "101", call_duration="40", dialog_duration="30"),
            ):
                assert (await client.post(url, data=body)).status_code == 200
        deadline = time.monotonic() + 60
        while query(db, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')")[0][0]:
            assert time.monotonic() < deadline, bridge.log()[-3000:]
            await asyncio.sleep(0.1)
        assert await bridge.stop() == 0
    finally:
        await bridge.close()
        await fake.close()
    (reg,) = fake.portal.registrations.values()  # one call in Bitrix24, never a second register
    finishes = fake.portal.calls("telephony.externalCall.finish")
    assert [p["CALL_ID"] for p in finishes if p["CALL_ID"] == reg.call_id] == [reg.call_id]
    assert len(fake.portal.finished()) == 1 and reg.finished is not None
    assert reg.shown == set()  # no card left shown
    assert query(db, "SELECT COUNT(*) FROM jobs WHERE status = 'dead'") == [(0,)]
