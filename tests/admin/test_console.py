"""The console over HTTP: off by default, login, sessions, CSRF, and what each page shows."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from bridge.admin.auth import hash_password
from bridge.samples import sample
from bridge.settings import load_settings
from tests.admin.conftest import PASSWORD, csrf_of, log_in
from tests.conftest import TOKEN, WEBHOOK

PAGES = (
    "/admin/",
    "/admin/calls",
    "/admin/calls?q=79502222919",
    "/admin/calls/some-uuid",
    "/admin/outbox?status=dead",
    "/admin/rejected",
    "/admin/settings",
    "/admin/live",
    "/admin/live/stream",
)


async def _until(check: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_console_is_off_without_a_password(make_settings, start_bridge):
    client = await start_bridge(make_settings())
    for path in (*PAGES, "/admin/login", "/admin/static/console.css"):
        r = await client.get(path, allow_redirects=False)
        assert r.status == 404, path
    r = await client.post("/admin/login", data={"password": "anything"})
    assert r.status == 404


async def test_unauthenticated_requests_get_no_data(console_settings, start_bridge):
    settings = console_settings()
    client = await start_bridge(settings)
    body = sample("call_end")
    assert (await client.post(WEBHOOK, data=body)).status == 200
    for path in PAGES:
        r = await client.get(path, allow_redirects=False)
        text = await r.text()
        assert r.status in (303, 403), path
        if r.status == 303:
            assert r.headers["Location"].startswith("/admin/login?next=")
        assert body["uuid"] not in text and TOKEN not in text
    for path in ("/admin/outbox/1/retry", "/admin/outbox/retry", "/admin/test-call"):
        r = await client.post(path, data={"adapter": "local"}, allow_redirects=False)
        assert r.status == 403, path
    login = await client.get("/admin/login")
    assert login.status == 200
    assert 'name="password"' in await login.text()


async def test_login_sets_a_strict_httponly_cookie_and_wrong_password_is_refused(
    console_settings, start_bridge
):
    client = await start_bridge(console_settings())
    r = await client.post("/admin/login", data={"password": "wrong one"}, allow_redirects=False)
    assert r.status == 401
    assert "pbx_admin_session" not in r.headers.get("Set-Cookie", "")
    r = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
    assert r.status == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    page = await client.get("/admin/")
    assert page.status == 200 and 'lang="' in await page.text()


async def test_cookie_is_secure_behind_https(console_settings, start_bridge):
    client = await start_bridge(console_settings(server={"public_url": "https://pbx.example"}))
    r = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
    assert "Secure" in r.headers["Set-Cookie"]


async def test_a_form_body_that_does_not_parse_is_a_400(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    broken = {"Content-Type": "multipart/form-data; boundary=x"}
    body = b"--x\r\nbad\r\n\r\nvalue\r\n--x--\r\n"
    r = await client.post("/admin/login", data=body, headers=broken, allow_redirects=False)
    assert r.status == 400, await r.text()
    csrf = await log_in(client)
    r = await client.post("/admin/outbox/retry", data=body, headers=broken)
    assert r.status == 400 and "Traceback" not in await r.text()
    assert csrf  # still logged in: the bad body changed nothing


async def test_login_from_another_origin_is_refused(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    r = await client.post(
        "/admin/login",
        data={"password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert r.status == 403


async def test_repeated_wrong_passwords_are_throttled(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    for _ in range(5):
        r = await client.post("/admin/login", data={"password": "guess"}, allow_redirects=False)
        assert r.status == 401
    r = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
    assert r.status == 429  # even the right one, while the address is blocked
    assert int(r.headers["Retry-After"]) > 0


async def test_password_hash_and_environment(console_settings, start_bridge, monkeypatch, tmp_path):
    client = await start_bridge(
        console_settings(admin={"password": None, "password_hash": hash_password("s3cret-pass")})
    )
    await log_in(client, "s3cret-pass")
    monkeypatch.setenv("PBX_BRIDGE_ADMIN__PASSWORD", "from-the-env-1")
    assert load_settings().admin.password.get_secret_value() == "from-the-env-1"


async def test_post_without_csrf_is_refused_and_with_it_retries(
    console_settings, start_bridge, sql
):
    # One post-call job to retry (a live `over` would be a second row for the same call).
    settings = console_settings(adapters={"local": {"events": ["log_call", "create_task"]}})
    client = await start_bridge(settings)
    assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
    await log_in(client)
    db = sql(settings)
    await db.until("SELECT status FROM jobs", "done")
    await db.run("UPDATE jobs SET status = 'dead', last_error = 'HTTP 400: bad phone'")
    r = await client.post("/admin/outbox/1/retry", allow_redirects=False)
    assert r.status == 403
    r = await client.post("/admin/outbox/1/retry", data={"csrf_token": "forged"})
    assert r.status == 403
    assert await db.val("SELECT status FROM jobs") == "dead"
    page = await client.get("/admin/outbox?status=dead")
    text = await page.text()
    assert "HTTP 400: bad phone" in text
    assert re.search(r'<form method="post" action="/admin/outbox/1/retry">.*?<button[^>]*>'
                     r"Повторить</button>", text, re.S)  # fmt: skip
    r = await client.post("/admin/outbox/1/retry", data={"csrf_token": csrf_of(text)})
    assert r.status == 200
    await db.until("SELECT status FROM jobs", "done")


async def test_retry_all_of_one_adapter(console_settings, start_bridge, sql):
    settings = console_settings(adapters={"local": {}, "other": {"type": "local"}})
    client = await start_bridge(settings)
    for _ in range(3):
        assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
    csrf = await log_in(client)
    db = sql(settings)
    # 3 calls × 2 adapters × (log_call + over: live actions are on by default)
    await db.until("SELECT COUNT(*) FROM jobs WHERE status = 'done'", 12)
    await db.run("UPDATE jobs SET status = 'dead', last_error = 'gone'")
    r = await client.post("/admin/outbox/retry", data={"csrf_token": csrf, "adapter": "other"})
    assert r.status == 200
    statuses: dict[str, set[str]] = {}
    for adapter, status in await db.all("SELECT adapter, status FROM jobs"):
        statuses.setdefault(adapter, set()).add(status)
    assert statuses["local"] == {"dead"}
    assert "dead" not in statuses["other"]
    bad = await client.post("/admin/outbox/retry", data={"csrf_token": csrf, "adapter": "nope"})
    assert bad.status == 400


async def test_overview_numbers_match_the_database(console_settings, start_bridge, sql):
    settings = console_settings(adapters={"local": {}})
    client = await start_bridge(settings)
    calls = [sample("call_end") for _ in range(3)] + [sample("call_missed")]
    for body in calls:
        assert (await client.post(WEBHOOK, data=body)).status == 200
    assert (await client.post(WEBHOOK, data=calls[0])).status == 200  # a duplicate
    assert (await client.post("/webhooks/onlinepbx/wrong-token", data=calls[0])).status == 404
    csrf = await log_in(client)
    db = sql(settings)
    # 4 calls × (log_call or create_task + over: live actions are on by default)
    await db.until("SELECT COUNT(*) FROM jobs WHERE status = 'done'", 8)
    await db.run("UPDATE jobs SET status = 'dead', last_error = 'HTTP 401: token expired'"
                 " WHERE id = 2")  # fmt: skip
    text = await (await client.get("/admin/?lang=en")).text()
    row = re.search(r'<tr data-adapter="local">(.*?)</tr>', text, re.S).group(1)
    counts = dict(re.findall(r'data-count="(\w+)">(?:<a [^>]*>)?(\d+)', row))
    assert counts == {"done": "7", "pending": "0", "dead": "1"}
    assert "HTTP 401: token expired" in row
    intake = dict(re.findall(r'data-intake="(\w+)">(\d+)', text))
    assert intake == {"accepted": "4", "duplicate": "1", "bad_token": "1"}
    assert text.count("<svg") >= 3  # the charts are pictures
    assert "<rect" in text
    assert csrf


async def test_calls_search_by_any_format_uuid_and_dates(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    wanted = sample("call_end")  # callee 79502222919
    other = {**sample("call_end"), "callee": "79161234567"}
    for body in (wanted, other):
        assert (await client.post(WEBHOOK, data=body)).status == 200
    await log_in(client)
    for q in ("8 (950) 222-29-19", "+7 950 222 29 19", "89502222919", wanted["uuid"]):
        text = await (await client.get("/admin/calls", params={"q": q})).text()
        assert wanted["uuid"] in text and other["uuid"] not in text, q
    old = {"from": "2000-01-01", "to": "2000-01-02"}
    text = await (await client.get("/admin/calls", params=old)).text()
    assert wanted["uuid"] not in text
    text = await (await client.get("/admin/calls", params={"from": "2000-01-01"})).text()
    assert wanted["uuid"] in text and other["uuid"] in text
    bad = await client.get("/admin/calls", params={"from": "yesterday"})
    assert bad.status == 400 and "from" in await bad.text()


async def test_call_page_shows_events_jobs_and_crm_ids(
    console_settings, start_bridge, monkeypatch, sql
):
    from adapters.local.adapter import LocalAdapter

    def crm_url(self: Any, name: str, value: str) -> str | None:
        return f"https://crm.example/{name}/{value}" if name == "log_call" else None

    # An adapter that knows its CRM's URLs gets its ids linked (crm_url is optional).
    monkeypatch.setattr(LocalAdapter, "crm_url", crm_url, raising=False)
    settings = console_settings()
    client = await start_bridge(settings)
    body = sample("call_end")
    assert (await client.post(WEBHOOK, data=body)).status == 200
    await log_in(client)
    db = sql(settings)
    await db.until("SELECT COUNT(*) FROM jobs WHERE status = 'done'", 2)  # over + log_call
    text = await (await client.get(f"/admin/calls/{body['uuid']}?lang=en")).text()
    assert "call_end" in text and "NORMAL_CLEARING" in text
    assert 'data-status="done"' in text and "log_call" in text
    crm = await db.val("SELECT value FROM crm_objects WHERE name = 'log_call'")
    assert f'href="https://crm.example/log_call/{crm}"' in text
    assert (await client.get("/admin/calls/no-such-call")).status == 404


async def test_rejected_webhooks_are_listed_without_token_or_body(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    secret_body = {**sample("call_end"), "comment": "card 4111111111111111"}
    assert (
        await client.post("/webhooks/onlinepbx/guessed-token-123", data=secret_body)
    ).status == 404
    assert (await client.post(WEBHOOK, data={"event": "call_end"})).status == 422
    await log_in(client)
    text = await (await client.get("/admin/rejected")).text()
    assert "bad_token" in text and "missing_field" in text and "uuid is required" in text
    assert "127.0.0.1" in text
    assert "guessed-token-123" not in text and "4111111111111111" not in text
    assert TOKEN not in text


async def test_rejected_table_is_capped(console_settings, start_bridge, monkeypatch, sql):
    from bridge.store import reports

    monkeypatch.setattr(reports, "REJECTED_CAP", 5)
    settings = console_settings()
    client = await start_bridge(settings)
    for _ in range(8):
        await client.post(WEBHOOK, data={"event": "call_end"})
    await log_in(client)
    await client.get("/admin/rejected")
    assert await sql(settings).val("SELECT COUNT(*) FROM rejected_webhooks") == 5


async def test_settings_are_masked_and_webhook_url_revealed_on_demand(
    console_settings, start_bridge
):
    hook_secret = "whsec_" + "Zm9vYmFyYmF6cXV4" * 2
    settings = console_settings(
        adapters={"local": {}, "http": {"url": "https://crm.example/hook", "secret": hook_secret}}
    )
    client = await start_bridge(settings)
    await log_in(client)
    text = await (await client.get("/admin/settings")).text()
    assert "[server]" in text and "[adapters]" in text
    for secret in (TOKEN, PASSWORD, hook_secret):
        assert secret not in text
    overview = await (await client.get("/admin/")).text()
    masked = overview.split("<details>")[0]
    assert "/webhooks/onlinepbx/***" in masked and TOKEN not in masked
    revealed = overview.split("<details>")[1].split("</details>")[0]
    assert f"/webhooks/onlinepbx/{TOKEN}" in revealed and "data-copy" in revealed
    # The copy control reads "Copy" (a dict's .copy method once leaked into the page).
    assert ">Копировать</button>" in revealed or ">Copy</button>" in revealed
    assert "built-in method" not in overview


async def test_test_call_shows_what_the_crm_answered(console_settings, start_bridge, sql):
    settings = console_settings()
    client = await start_bridge(settings)
    csrf = await log_in(client)
    r = await client.post(
        "/admin/test-call",
        data={
            "csrf_token": csrf,
            "adapter": "local",
            "phone": "8 916 123-45-67",
            "extension": "101",
        },
    )
    text = await r.text()
    assert r.status == 200
    call_id = re.search(r'<pre id="crm-answer">([^<]+)</pre>', text).group(1)
    row = (await sql(settings).all("SELECT client, extension FROM local_calls"))[0]
    assert call_id == "call:1" and row == ("+79161234567", "101")
    bad = await client.post(
        "/admin/test-call", data={"csrf_token": csrf, "adapter": "local", "phone": "abc"}
    )
    assert bad.status == 400 and "phone" in await bad.text()


async def test_language_follows_browser_then_schedule_locale(console_settings, start_bridge):
    client = await start_bridge(console_settings(schedule={"locale": "en"}))
    await log_in(client)
    text = await (await client.get("/admin/outbox")).text()
    assert '<html lang="en">' in text and "Outbox" in text
    ru = await client.get("/admin/outbox", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert '<html lang="ru">' in await ru.text()


async def test_logout_ends_the_session(console_settings, start_bridge):
    client = await start_bridge(console_settings())
    csrf = await log_in(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/admin/"))
    stolen = cookie["pbx_admin_session"].value
    r = await client.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303
    again = await client.get(
        "/admin/", headers={"Cookie": f"pbx_admin_session={stolen}"}, allow_redirects=False
    )
    assert again.status == 303  # the old cookie no longer opens the console


def _session_of(client: Any) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/admin/"))[
        "pbx_admin_session"
    ].value


async def _opens(client: Any, cookie: str) -> bool:
    r = await client.get(
        "/admin/", headers={"Cookie": f"pbx_admin_session={cookie}"}, allow_redirects=False
    )
    return r.status == 200


async def test_logout_holds_after_a_restart(console_settings, start_bridge):
    # The revocation is stored: a restarted process (or another one) refuses the cookie too.
    settings = console_settings()
    first = await start_bridge(settings)
    csrf = await log_in(first)
    cookie = _session_of(first)
    await first.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    await first.close()
    second = await start_bridge(settings)
    assert not await _opens(second, cookie)
    await log_in(second)  # a new session still opens it
    assert await _opens(second, _session_of(second))


async def test_logout_on_one_replica_is_refused_by_the_other(
    make_settings, start_bridge, postgres_url
):
    settings = make_settings(admin={"password": PASSWORD}, storage={"url": postgres_url})
    a, b = await start_bridge(settings), await start_bridge(settings)
    csrf = await log_in(a)
    cookie = _session_of(a)
    assert await _opens(b, cookie)  # one deployment: B accepts A's session
    r = await a.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303
    assert not await _opens(b, cookie) and not await _opens(a, cookie)
    # B still takes its own sessions.
    await log_in(b)
    assert await _opens(b, _session_of(b))


async def test_live_calls_stream(console_settings, start_bridge):
    # The view built from the events, when no adapter keeps the calls in progress (local
    # without its live actions); the local_live view is the next test's.
    post_call = {"events": ["log_call", "create_task"]}
    client = await start_bridge(console_settings(adapters={"local": post_call}))
    start = sample("call_start")
    assert (await client.post(WEBHOOK, data=start)).status == 200
    await log_in(client)
    page = await (await client.get("/admin/live")).text()
    assert start["uuid"] in page
    r = await client.get("/admin/live/stream")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    event, data = first.decode().strip().split("\n")
    assert event == "event: calls"
    assert [c["uuid"] for c in json.loads(data.removeprefix("data: "))] == [start["uuid"]]
    end = {**sample("call_end"), "uuid": start["uuid"]}
    assert (await client.post(WEBHOOK, data=end)).status == 200
    second = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    assert json.loads(second.decode().split("data: ")[1]) == []
    r.close()


async def _next_calls(stream: Any) -> list[dict[str, Any]]:
    """The calls of the next ``event: calls`` on a live stream."""
    message = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
    return json.loads(message.decode().split("data: ", 1)[1])


async def test_live_calls_come_from_the_adapter_that_keeps_them(console_settings, start_bridge):
    # The local adapter with its live actions keeps the calls in progress (local_live): the
    # page and the stream read that table, which knows who is ringing and who answered.
    live = ["log_call", "create_task", "ringing", "answered", "over"]
    client = await start_bridge(console_settings(adapters={"local": {"events": live}}))
    ring = {**sample("call_user_start"), "direction": "inbound", "caller": "79221111123",
            "callee": "101"}  # fmt: skip
    await log_in(client)
    stream = await client.get("/admin/live/stream")
    assert await _next_calls(stream) == []
    assert (await client.post(WEBHOOK, data=ring)).status == 200
    [call] = await _next_calls(stream)  # once its ringing job has run
    assert (call["uuid"], call["state"], call["callee"]) == (ring["uuid"], "ringing", "101")
    assert call["caller"].endswith("79221111123")
    assert (await client.post(WEBHOOK, data={**ring, "event": "call_answered"})).status == 200
    assert [c["state"] for c in await _next_calls(stream)] == ["answered"]
    end = {**sample("call_end"), "uuid": ring["uuid"]}
    assert (await client.post(WEBHOOK, data=end)).status == 200
    assert await _next_calls(stream) == []
    stream.close()
    assert ring["uuid"] not in await (await client.get("/admin/live")).text()


@pytest.mark.parametrize("bad", ["short", "plaintext-not-a-hash"])
def test_admin_settings_refuse_weak_values(bad, tmp_path):
    from bridge.settings import SettingsError

    key = "password" if bad == "short" else "password_hash"
    path = tmp_path / "s.toml"
    path.write_text(f'[admin]\n{key} = "{bad}"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert f"admin.{key}" in str(err.value) and bad not in str(err.value)


async def test_search_uses_the_background_index(console_settings, start_bridge, monkeypatch, sql):
    from bridge.admin import intake
    from bridge.store import open_storage
    from bridge.store.reports import reports_for

    monkeypatch.setattr(intake, "PRUNE_EVERY", 1e12)  # only this test prunes

    settings = console_settings()
    client = await start_bridge(settings)
    wanted = {**sample("call_end"), "callee": "+7 (916) 765-43-21"}
    assert (await client.post(WEBHOOK, data=wanted)).status == 200
    assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
    db, raw = await open_storage(settings.storage), sql(settings)
    reports = reports_for(db)
    try:
        await reports.index_calls()  # (the app's own loop may have done it already)
        keys = {r[0] for r in await raw.all("SELECT key FROM admin_call_index")}
        assert "p:9167654321" in keys and f"u:{wanted['uuid']}" in keys
        # Everything is indexed: the scan covers no event, so these hits come from the index.
        for q in ("89167654321", wanted["uuid"]):
            await log_in(client)
            text = await (await client.get("/admin/calls", params={"q": q})).text()
            assert wanted["uuid"] in text, q
        assert await reports.index_calls() == 0
        # Retention deleted the first event: its index entries go, the second's stay.
        await raw.run("DELETE FROM jobs WHERE event_id = 1")
        await raw.run("DELETE FROM events WHERE id = 1")
        # Its number and its uuid, and its row in the per-call table of the hourly chart.
        assert await reports.prune_index(chunk=1) == 3
        left = {r[0] for r in await raw.all("SELECT event_id FROM admin_call_index")}
        assert left == {2}
        assert await raw.all("SELECT uuid FROM admin_calls") != [(wanted["uuid"],)]
        assert await raw.val("SELECT COUNT(*) FROM admin_calls") == 1
    finally:
        await reports.close()
        await db.close()


async def test_a_storage_failure_is_a_clear_page_not_a_500(
    console_settings, start_bridge, monkeypatch
):
    from bridge.store import StorageError
    from bridge.store.reports import Reports

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("PostgreSQL: ConnectionRefusedError: [Errno 111] refused")

    client = await start_bridge(console_settings())
    await log_in(client)
    monkeypatch.setattr(Reports, "search_calls", broken)
    r = await client.get("/admin/calls?lang=en")
    assert r.status == 503
    assert "ConnectionRefusedError" in await r.text()
    monkeypatch.setattr(Reports, "session_revoked", broken)  # cannot tell: nobody gets in
    r = await client.get("/admin/?lang=en", allow_redirects=False)
    assert r.status == 503 and "ConnectionRefusedError" in await r.text()
