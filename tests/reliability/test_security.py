"""Who gets in, and what leaks: token variants, throttling, allowed IPs behind proxies, and a
grep for every configured secret in every output of a full end-to-end run."""

from __future__ import annotations

import asyncio
import hmac
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict

from bridge.fakecrm import TEMPLATES
from bridge.receive import access
from bridge.receive.throttle import MAX_TRACKED, BadTokenThrottle
from bridge.receive.webhook import THROTTLE
from bridge.registry import configured
from bridge.samples import sample
from tests.conftest import TOKEN, WEBHOOK, rows
from tests.reliability.fakes import UNAUTHORIZED
from tests.reliability.process import BridgeProcess, forker, free_port, query, write_settings
from tests.reliability.sizes import BIG
from tests.reliability.targets import CRM

VARIANTS = {
    "wrong": "x" * len(TOKEN),
    "other case": TOKEN.upper(),
    "prefix": TOKEN[:-1],
    "longer": TOKEN + "0",
    "padded": f" {TOKEN}",
    "empty": "",
}


@pytest.mark.parametrize("variant", VARIANTS)
async def test_token_variants_are_refused_and_store_nothing(
    variant: str, make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings()
    client = await start_bridge(settings)
    r = await client.post(f"/webhooks/onlinepbx/{VARIANTS[variant]}", data=sample("call_end"))
    assert r.status == 404 and (await r.json())["ok"] is False
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(0,)]


def test_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    assert not access.token_ok(TOKEN[:-1] + "X", TOKEN)
    assert access.token_ok(TOKEN, TOKEN)
    assert len(calls) == 2  # no shortcut (==, startswith) before the constant-time compare


@pytest.mark.skipif(not BIG, reason="timing measurement: PBX_BRIDGE_BIG=1")
def test_no_measurable_timing_difference_between_near_miss_and_garbage() -> None:
    near, garbage = TOKEN[:-1] + "X", "X" + TOKEN[1:]

    def median_ns(given: str) -> float:
        samples = []
        for _ in range(200):
            t = time.perf_counter_ns()
            for _ in range(500):
                access.token_ok(given, TOKEN)
            samples.append(time.perf_counter_ns() - t)
        return statistics.median(samples) / 500

    a, b = median_ns(near), median_ns(garbage)
    print(f"\nTOKEN TIMING near-miss {a:.1f} ns, first-byte miss {b:.1f} ns, ratio {a / b:.3f}")
    assert 0.8 < a / b < 1.25


async def test_repeated_bad_tokens_are_throttled_and_the_right_token_always_gets_in(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    """#12 item 2: onlinePBX posts every customer's webhooks from shared addresses, so a
    block that stops the right token lets anyone shut a bridge's intake."""
    settings = make_settings(server={"trusted_proxies": ["127.0.0.1/32"]})
    client = await start_bridge(settings)
    now = [0.0]
    guard = client.app[THROTTLE]
    guard._clock = lambda: now[0]
    shared = {"X-Forwarded-For": "203.0.113.9"}  # the guesser and the PBX: one address
    for _ in range(guard.limit):
        r = await client.post("/webhooks/onlinepbx/guess", data={}, headers=shared)
        assert r.status == 404
    blocked = await client.post("/webhooks/onlinepbx/guess", data={}, headers=shared)
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
    assert (await blocked.json())["error"] == "too_many_requests"
    for n in range(3):  # the right token from the blocked address is let through every time
        r = await client.post(WEBHOOK, data=sample("call_end"), headers=shared)
        assert r.status == 200, (n, await r.text())
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(3,)]
    assert (await client.post("/webhooks/onlinepbx/guess", data={}, headers=shared)).status == 429
    now[0] += guard.block + 1
    assert (await client.post("/webhooks/onlinepbx/guess", data={}, headers=shared)).status == 404


def test_the_throttle_memory_is_bounded() -> None:
    guard = BadTokenThrottle(limit=1)  # every miss blocks: the worst case
    for n in range(MAX_TRACKED * 3):
        guard.miss(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    for n in range(MAX_TRACKED):  # IPv6: one /64 is one sender, however many addresses
        guard.miss(f"2001:db8:0:1::{n:x}")
    assert len(guard) <= MAX_TRACKED + 1, len(guard)
    assert guard.retry_after("2001:db8:0:1::ffff") is not None
    print(f"THROTTLE after {MAX_TRACKED * 4} blocked senders: {len(guard)} remembered")


@pytest.mark.parametrize(
    ("proxies", "forwarded", "status"),
    [
        ([], "198.51.100.7", 403),  # no trusted proxy: the header is anyone's to write
        (["127.0.0.1/32"], "198.51.100.7", 200),  # from the trusted proxy: believed
        (["127.0.0.1/32"], "203.0.113.9", 403),
        (["127.0.0.1/32"], "198.51.100.7, 203.0.113.9", 403),  # the hop the proxy saw counts
        (["127.0.0.1/32"], "203.0.113.9, 198.51.100.7", 200),  # a spoofed first hop is ignored
        (["10.0.0.0/8"], "198.51.100.7", 403),  # the peer is not that proxy
    ],
)
async def test_allowed_ips_honour_forwarded_for_only_from_trusted_proxies(
    proxies: list[str],
    forwarded: str,
    status: int,
    make_settings: Callable[..., Any],
    start_bridge: Callable[..., Any],
) -> None:
    settings = make_settings(
        server={"allowed_ips": ["198.51.100.0/24"], "trusted_proxies": proxies}
    )
    client = await start_bridge(settings)
    r = await client.post(WEBHOOK, data=sample("call_end"), headers={"X-Forwarded-For": forwarded})
    assert r.status == status
    stored = await rows(settings, "SELECT COUNT(*) FROM events")
    assert stored == [(1 if status == 200 else 0,)]


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        # #12 item 3: a client's own line first, the proxy's line after it
        (["198.51.100.7", "203.0.113.9"], 403),
        (["203.0.113.9", "198.51.100.7"], 200),
        (["203.0.113.9, 198.51.100.7", "127.0.0.1"], 200),  # the proxy's own hop skipped
        (["198.51.100.7:51234"], 200),  # ports are stripped
        (["[2001:db8::7]:443"], 200),
        (["203.0.113.9:80"], 403),
    ],
)
async def test_forwarded_for_over_several_lines_and_with_ports(
    lines: list[str],
    status: int,
    make_settings: Callable[..., Any],
    start_bridge: Callable[..., Any],
) -> None:
    settings = make_settings(
        server={
            "allowed_ips": ["198.51.100.0/24", "2001:db8::/32"],
            "trusted_proxies": ["127.0.0.1/32"],
        }
    )
    client = await start_bridge(settings)
    headers = CIMultiDict(("X-Forwarded-For", line) for line in lines)
    r = await client.post(WEBHOOK, data=sample("call_end"), headers=headers)
    assert r.status == status, await r.text()


SECRET_TOKEN = "e2e-webhook-token-5f1c9a7b3d"


async def test_no_secret_in_any_log_answer_page_or_cli_output(tmp_path: Path) -> None:
    fakes = {t.name: await t.fake(time.time).start() for t in CRM}
    secrets = [SECRET_TOKEN, *(s for t in CRM for s in t.secrets)]
    for fake in fakes.values():  # a careless CRM: its 401 quotes the credentials back
        fake.play(UNAUTHORIZED, 1)
        fake.error_body = {"error": "bad credentials", "you sent": secrets}
    port = free_port()
    tables: dict[str, dict[str, Any]] = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "webhook_token": SECRET_TOKEN,
            "shutdown_grace_seconds": 0,
        },
        "storage": {"path": str(tmp_path / "bridge.db")},
        "delivery": {"retry_base_seconds": 0.05},
        "log": {"level": "DEBUG", "format": "json"},
        "schedule": {"templates": TEMPLATES},
    }
    for target in CRM:
        tables[f"adapters.{target.name}"] = target.table(fakes[target.name].base_url)
    config = write_settings(tmp_path / "settings.toml", tables)
    bridge = BridgeProcess(config, port, tmp_path)
    seen: list[str] = []
    try:
        await bridge.start()
        async with httpx.AsyncClient(base_url=bridge.base_url, timeout=5) as client:
            hook = f"/webhooks/onlinepbx/{SECRET_TOKEN}"
            for path, body in [
                (hook, sample("call_end")),
                (hook, sample("call_missed")),
                (hook, {"event": "call_end"}),
                (hook[:-1], sample("call_end")),
                (hook + "/x", sample("call_end")),
            ]:
                seen.append((await client.post(path, data=body)).text)
            await _settled(tmp_path / "bridge.db")  # the 401, then retries and deliveries
            for page in ("/metrics", "/readyz", "/healthz", "/nope"):
                seen.append((await client.get(page)).text)
        # The CLI beside the server, all three at once (they only read; `check` calls the
        # fake CRMs served by this very loop).
        commands = (["check"], ["outbox", "list", "--json"], ["outbox", "show", "1"])
        runs = []
        for n, args in enumerate(commands):
            out, err = tmp_path / f"cli-{n}.out", tmp_path / f"cli-{n}.err"
            run = await forker().spawn(["--config", str(config), *args], stdout=out, stderr=err)
            runs.append((run, out, err))
        for run, out, err in runs:
            await asyncio.wait_for(run.wait(), 60)
            seen += [out.read_text(), err.read_text()]
        await bridge.stop()
    finally:
        await bridge.close()
        for fake in fakes.values():
            await fake.close()
    logs = bridge.log()
    assert "job is dead" in logs and "HTTP 401" in logs  # the careless CRM was heard
    assert any("***" in text for text in seen)  # its quote was kept, masked
    for secret in secrets:
        assert secret not in logs, f"secret in the log: {secret[:4]}…"
        for text in seen:
            assert secret not in text, f"secret in an output: {text[:200]}"


async def _settled(db: Path, within: float = 10.0) -> None:
    """Until every job has ended (done or dead): all the output a run makes has been made."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = query(db, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')")
        if query(db, "SELECT COUNT(*) FROM jobs")[0][0] and not left[0][0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(query(db, "SELECT adapter, action, status, last_error FROM jobs"))


async def test_the_http_adapters_url_is_a_secret(
    make_settings: Callable[..., Any],
    start_bridge: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#12 item 13: a catch-hook URL (Zapier, Make, n8n) is its own key, and so is a
    ``user:pass@``: masked in settings dumps, stored reasons and logs."""
    password, path = "pa55-w0rd-77", "/hooks/catch/1234567/abcdefgh/"
    url = f"http://robot:{password}@127.0.0.1:{free_port()}{path}?key=q-secret-31"
    settings = make_settings(
        delivery={"retry_base_seconds": 0.05},
        adapters={"zap": {"type": "http", "url": url, "secret": "s" * 20, "rate_limit": 0}},
    )
    [zap] = configured(settings.adapters)
    assert password not in zap.settings.model_dump_json() and path not in repr(zap.settings)
    client = await start_bridge(settings)
    assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
    for _ in range(300):  # the port is closed: the job fails and is retried
        reasons = await rows(settings, "SELECT last_error FROM jobs WHERE last_error IS NOT NULL")
        if reasons:
            break
        await asyncio.sleep(0.02)
    assert reasons, "no attempt recorded"
    await client.close()
    seen = reasons[0][0] + capsys.readouterr().err
    assert "network error" in seen
    for secret in (password, path, "q-secret-31", url):
        assert secret not in seen, secret
