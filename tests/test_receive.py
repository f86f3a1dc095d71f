"""The webhook endpoint: what is accepted, what is rejected, and that rejects store nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import TOKEN, WEBHOOK, rows, vendor_sample

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVENTS = ["call_start", "call_answered", "call_end", "call_missed"]
# The embedded default (local, live actions on): the sample call_start is outbound (the
# caller's card: ringing), call_answered → answered, an end → over + log_call/create_task.
JOBS = {"call_start": 1, "call_answered": 1, "call_end": 2, "call_missed": 2}


async def count(settings, table: str) -> int:
    return (await rows(settings, f"SELECT COUNT(*) FROM {table}"))[0][0]


@pytest.mark.parametrize("event", EVENTS)
async def test_vendor_samples_as_form_are_stored(event, make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=vendor_sample(event, "form"), headers=FORM)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {
        "ok": True,
        "duplicate": False,
        "jobs": JOBS[event],
    }
    stored = await rows(settings, "SELECT uuid, event, payload FROM events")
    sample = vendor_sample(event)
    assert stored[0][0] == sample["uuid"]  # letters like g, q, s: not a UUID, kept as is
    assert json.loads(stored[0][2]) == sample


@pytest.mark.parametrize("event", EVENTS)
async def test_vendor_samples_as_json_are_stored(event, make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, json=vendor_sample(event))
    assert resp.status == 200
    assert await count(settings, "events") == 1


async def test_multipart_and_numbers_as_json_values(make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    import aiohttp

    form = aiohttp.FormData()
    for k, v in vendor_sample("call_end").items():
        form.add_field(k, v)
    form.add_field("file_only_to_force_multipart", "x")
    resp = await client.post(WEBHOOK, data=form)
    assert resp.status == 200, await resp.text()
    sample = vendor_sample("call_missed") | {"date": 1529406933, "extra": {"nested": [1, 2]}}
    resp = await client.post(WEBHOOK, json=sample)
    assert resp.status == 200
    payload = json.loads(
        (await rows(settings, "SELECT payload FROM events WHERE event='call_missed'"))[0][0]
    )
    assert payload["date"] == "1529406933"
    assert payload["extra"] == {"nested": [1, 2]}  # unknown fields kept as they came


async def test_unknown_event_is_kept_without_jobs(make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    # A name the bridge has no action for (call_user_start has one now: ringing).
    body = vendor_sample("call_start") | {"event": "call_transfer", "new_field": "kept"}
    resp = await client.post(WEBHOOK, data=body)
    assert resp.status == 200
    assert (await resp.json())["jobs"] == 0
    assert await count(settings, "events") == 1
    assert await count(settings, "jobs") == 0


async def test_duplicate_is_acknowledged_and_causes_nothing(make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    first = await client.post(WEBHOOK, data=vendor_sample("call_end", "form"), headers=FORM)
    second = await client.post(WEBHOOK, json=vendor_sample("call_end"))
    assert (await first.json())["duplicate"] is False
    assert (await second.json()) == {"ok": True, "duplicate": True, "jobs": 0}
    assert await count(settings, "events") == 1
    assert await count(settings, "jobs") == 2  # the first one's: over + log_call


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/webhooks/onlinepbx/{TOKEN}x", 404),
        (f"/webhooks/onlinepbx/{TOKEN[:-1]}", 404),
        (f"/webhooks/onlinepbx/{TOKEN.upper()}", 404),
        ("/webhooks/onlinepbx/", 404),
    ],
)
async def test_wrong_token_is_404_and_stores_nothing(path, status, make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await client.post(path, data=vendor_sample("call_end"))
    assert resp.status == status
    body = await resp.json()
    assert body["ok"] is False and TOKEN not in json.dumps(body)
    assert await count(settings, "events") == 0


BAD = [
    ({"uuid": "x"}, 422, "event"),
    ({"event": "call_end"}, 422, "uuid"),
    ({"event": "call_end", "uuid": "   "}, 422, "uuid"),
    ({"event": "call_end", "uuid": "u1", "call_duration": "abc"}, 422, "call_duration"),
    ({"event": "call_end", "uuid": "u1", "dialog_duration": "-5"}, 422, "dialog_duration"),
    ({"event": "call_end", "uuid": "u1", "call_duration": "99999999"}, 422, "call_duration"),
    ({"event": "call_end", "uuid": "u1", "date": "1527578"}, 422, "date"),
    ({"event": "call_end", "uuid": "u1", "date": "99999999999"}, 422, "date"),
    ({"event": "call end; drop", "uuid": "u1"}, 422, "event"),
    ({"event": "call_end", "uuid": "u" * 200}, 422, "uuid"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD)
@pytest.mark.parametrize("as_json", [False, True])
async def test_invalid_fields_are_named(body, status, field, as_json, make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await (client.post(WEBHOOK, json=body) if as_json else client.post(WEBHOOK, data=body))
    assert resp.status == status
    answer = await resp.json()
    assert answer["field"] == field and field in answer["detail"]
    assert await count(settings, "events") == 0


@pytest.mark.parametrize(
    ("data", "ctype", "status", "error"),
    [
        (b"{not json", "application/json", 400, "bad_json"),
        (b"[1, 2]", "application/json", 422, "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 413, "too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "bad_json"),
        (b"event=call_end&uuid=%FF%FE", "application/x-www-form-urlencoded", 400, "bad_encoding"),
        (b"\xff\xfe", "application/json", 400, "bad_encoding"),
        (b"<xml/>", "text/xml", 415, "unsupported_media_type"),
        (
            b"event=call_end&uuid=a&event=call_missed",
            "application/x-www-form-urlencoded",
            422,
            "duplicate_field",
        ),
        (b'{"event": "call_end", "uuid": {"a": 1}}', "application/json", 422, "invalid_field"),
        (
            b"event=call_end&uuid=" + b"a" * 70_000,
            "application/x-www-form-urlencoded",
            413,
            "too_large",
        ),
    ],
)
async def test_unreadable_bodies(data, ctype, status, error, make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=data, headers={"Content-Type": ctype})
    assert resp.status == status
    assert (await resp.json())["error"] == error
    assert await count(settings, "events") == 0


async def test_domain_and_ip_allow_lists(make_settings, start_bridge):
    settings = make_settings(server={"allowed_domains": ["example.onpbx.ru"]})
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=vendor_sample("call_end"))  # domain onlinepbx.ru
    assert resp.status == 403 and (await resp.json())["field"] == "domain"
    ok = await client.post(WEBHOOK, data=vendor_sample("call_end") | {"domain": "Example.onpbx.ru"})
    assert ok.status == 200
    assert await count(settings, "events") == 1


@pytest.mark.parametrize(
    ("server", "headers", "status"),
    [
        ({"allowed_ips": ["10.0.0.0/8"]}, {}, 403),
        ({"allowed_ips": ["127.0.0.0/8"]}, {}, 200),
        # X-Forwarded-For from a peer that is not a trusted proxy is ignored
        ({"allowed_ips": ["10.1.2.3/32"]}, {"X-Forwarded-For": "10.1.2.3"}, 403),
        (
            {"allowed_ips": ["10.1.2.3/32"], "trusted_proxies": ["127.0.0.1/32"]},
            {"X-Forwarded-For": "10.1.2.3"},
            200,
        ),
        # the client cannot prepend a fake hop: the right-most untrusted hop counts
        (
            {"allowed_ips": ["10.1.2.3/32"], "trusted_proxies": ["127.0.0.1/32"]},
            {"X-Forwarded-For": "10.1.2.3, 192.0.2.7"},
            403,
        ),
    ],
)
async def test_ip_rules(server, headers, status, make_settings, start_bridge):
    settings = make_settings(server=server)
    client = await start_bridge(settings)
    resp = await client.post(WEBHOOK, data=vendor_sample("call_end"), headers=headers)
    assert resp.status == status
    assert await count(settings, "events") == (1 if status == 200 else 0)


async def test_storage_failure_answers_503_not_200(make_settings, start_bridge):
    settings = make_settings(storage={"busy_timeout_ms": 100})
    client = await start_bridge(settings)
    import sqlite3

    # Another process holds the write lock (taken off the event loop, as a process would).
    lock = sqlite3.connect(settings.storage.path, timeout=5, check_same_thread=False)
    await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")
    try:
        resp = await client.post(WEBHOOK, data=vendor_sample("call_end"))
        assert resp.status == 503
        assert (await resp.json())["error"] == "storage_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
    finally:
        lock.rollback()
        lock.close()
    resp = await client.post(WEBHOOK, data=vendor_sample("call_end"))
    assert resp.status == 200  # recovered by itself
    assert (await client.get("/readyz")).status == 200


async def test_unknown_route_and_method_are_json(make_settings, start_bridge):
    client = await start_bridge(make_settings())
    resp = await client.get(WEBHOOK)
    assert resp.status == 405 and (await resp.json())["ok"] is False
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["ok"] is False


async def test_event_without_domain_is_filed_under_the_configured_account(
    make_settings, start_bridge
):
    settings = make_settings(onlinepbx={"domain": "https://Example.onpbx.ru/"})
    client = await start_bridge(settings)
    body = vendor_sample("call_end")
    del body["domain"]
    assert (await client.post(WEBHOOK, data=body)).status == 200
    again = await client.post(WEBHOOK, json=body | {"domain": "EXAMPLE.onpbx.ru"})
    assert (await again.json())["duplicate"] is True
    assert await rows(settings, "SELECT domain FROM events") == [("example.onpbx.ru",)]


async def test_a_multipart_part_with_broken_headers_is_a_400(make_settings, start_bridge):
    settings = make_settings()
    client = await start_bridge(settings)
    resp = await client.post(
        WEBHOOK,
        data=b"--x\r\nbad\r\n\r\nvalue\r\n--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "bad_body"
    assert await count(settings, "events") == 0
