"""RetailCRM live call events (``POST /api/v5/telephony/call/event``) against the fake account:
the popup shown to each ringing manager, closed for the others when one answers and for all
when the call is over; RetailCRM's refusals; and the core's stale / ended skips."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from adapters.retailcrm.fake import DEFAULT_KEY, FakeRetailCRM
from bridge.samples import sample
from tests.conftest import FakeClock

HOST = "acme.retailcrm.ru"
BASE = f"https://{HOST}"
EVENT = "/api/v5/telephony/call/event"
UUID = "rc-live-0001"
CLIENT = "79221111123"
LINE = "73431111137"


def inbound(event: str, callee: str = "", now: float = 0.0, **extra: str) -> dict[str, str]:
    body = sample(event, UUID, now)
    body.update(direction="inbound", caller=CLIENT, callee=callee, gateway=LINE, **extra)
    if event == "call_missed":
        body.pop("direction")
    return body


def events(fake: FakeRetailCRM) -> list[dict[str, Any]]:
    """The ``event`` form field of every call event sent, as JSON."""
    out = []
    for r in fake.requests:
        if r.url.path == EVENT:
            assert r.headers["content-type"].startswith("application/x-www-form-urlencoded")
            out.append(json.loads(parse_qs(r.content.decode())["event"][-1]))
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_780_000_000.0)


@pytest.fixture
def fake(no_unmocked_http) -> FakeRetailCRM:
    crm = FakeRetailCRM()
    no_unmocked_http.route(host=HOST).mock(side_effect=crm)
    return crm


@pytest.fixture
def open_harness(open_adapter, clock):
    def open_(**table: Any):
        table = {"base_url": BASE, "api_key": DEFAULT_KEY, "users": {"101": 7, "102": 9}, **table}
        return open_adapter("retailcrm", table, clock=clock)

    return open_


async def jobs_of(h) -> list[tuple[str, str, str, str | None]]:
    rows = await h.db.db.fetchall(
        "SELECT e.event, j.action, j.status, j.result FROM jobs j JOIN events e"
        " ON e.id = j.event_id ORDER BY j.id"
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_ring_group_popups_shown_closed_for_the_others_then_for_all(
    open_harness, fake, clock
):
    h = await open_harness()
    for ext in ("101", "102", "101"):  # 101 twice: onlinePBX repeated its webhook
        await h.store(inbound("call_user_start", ext, clock()))
    await h.attempt()
    # The module declares the events the bridge sends, and was registered before the first.
    telephony = fake.modules["onlinepbx-bridge"]["integrations"]["telephony"]
    assert telephony["inputEventSupported"] and telephony["hangupEventSupported"]
    ring = {
        "phone": CLIENT,
        "type": "in",
        "callExternalId": UUID,
        "externalPhone": LINE,
    }
    assert events(fake) == [{**ring, "userIds": [7]}, {**ring, "userIds": [9]}]
    assert fake.popups == {7: CLIENT, 9: CLIENT}

    await h.store(inbound("call_answered", "102", clock()))
    await h.attempt()
    closed = events(fake)[-1]
    assert closed["type"] == "hangup" and closed["userIds"] == [7]  # 102 answered: 9 keeps it
    assert closed["hangupStatus"] == "answered"
    assert fake.popups == {9: CLIENT}

    end = inbound("call_end", "102", clock(), call_duration="60", dialog_duration="50")
    await h.store(end)
    await h.attempt()
    last = events(fake)[-1]
    assert last["type"] == "hangup" and last["userIds"] == [9]
    assert last["hangupStatus"] == "answered"
    assert fake.popups == {}  # no popup left open after the call
    assert [c["externalId"] for c in fake.calls] == [UUID]  # the call log still follows
    assert len(events(fake)) == 4  # no second popup for the repeated ring


async def test_outbound_call_start_shows_the_callers_popup(open_harness, fake, clock):
    h = await open_harness(users={"505": 9})
    job = await h.deliver(sample("call_start", "rc-out", clock()))  # 505 dials 79111117960
    assert job.status == "done", job.last_error
    [event] = events(fake)
    assert event["type"] == "out" and event["userIds"] == [9]
    assert event["phone"] == "79111117960" and event["callExternalId"] == "rc-out"


async def test_unknown_caller_is_shown_without_a_lookup_or_a_new_customer(
    open_harness, fake, clock
):
    h = await open_harness(create_contacts="always")
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done" and job.result == "event:in:user 7", job.last_error
    # RetailCRM finds (or offers to create) the customer for its popup by the phone itself.
    assert not [r for r in fake.requests if "/customers" in r.url.path or "manager" in r.url.path]
    assert fake.customers == {}


async def test_missed_call_closes_the_popup_as_not_answered(open_harness, fake, clock):
    h = await open_harness(default_user=7)  # a task needs a performer
    await h.deliver(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_missed", now=clock()))
    await h.attempt()
    assert [e["type"] for e in events(fake)] == ["in", "hangup"]
    assert events(fake)[-1]["hangupStatus"] == "no answered"
    assert fake.popups == {}
    assert len(fake.tasks) == 1  # the missed-call task still follows


async def test_unmapped_extension_goes_as_its_code_unknown_codes_are_skipped(
    open_harness, fake, clock
):
    h = await open_harness(users={"101": 7})
    job = await h.deliver(inbound("call_user_start", "103", clock()))
    [event] = events(fake)
    assert event["codes"] == ["103"] and "userIds" not in event
    assert job.status == "done"
    assert job.result.startswith("skipped: RetailCRM knows no manager code 103")


async def test_telephony_not_enabled_is_put_aside_with_the_fix_never_dead(
    open_harness, fake, clock
):
    h = await open_harness(register_integration=False)  # and the admin registered none
    ring = await h.deliver(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_end", "101", clock()))
    over = next(j for j in await h.attempt() if j.action == "over")
    assert ring.status == "done" and "Telephony not enabled" in ring.result
    assert "register_integration = true" in ring.result
    assert over.status == "done" and over.result.startswith("skipped: no call popup")
    assert fake.popups == {}


async def test_a_refused_hangup_is_a_skip_not_a_dead_job(open_harness, fake, clock):
    h = await open_harness()
    await h.deliver(inbound("call_user_start", "101", clock()))
    fake.canned[EVENT] = httpx.Response(
        400, json={"success": False, "errorMsg": "Telephony not enabled"}
    )
    await h.store(inbound("call_missed", now=clock()))
    jobs = await h.attempt()
    over = next(j for j in jobs if j.action == "over")
    assert over.status == "done" and over.result.startswith("skipped: failed: ")
    assert "Telephony not enabled" in over.result


async def test_field_errors_of_a_call_event_are_named(open_harness, fake, clock):
    h = await open_harness()
    payload = inbound("call_user_start", "101", clock())
    fake.canned[EVENT] = httpx.Response(
        400,
        json={
            "success": False,
            "errorMsg": "Errors in the entity format",
            "errors": {"phone": "This value should not be blank."},
        },
    )
    job = await h.deliver(payload)
    assert job.status == "done"  # a card RetailCRM refuses is put aside, never dead
    assert "phone: This value should not be blank." in job.result


async def test_stale_and_ended_calls_show_nothing(open_harness, fake, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    clock.advance(61)  # the bridge was down: the phone stopped ringing long ago
    [job] = await h.attempt()
    assert job.result.startswith("skipped: stale: the event is 61 s old")
    other = dict(inbound("call_user_start", "102", clock()), uuid="rc-ended")
    await h.store(dict(inbound("call_missed", now=clock()), uuid="rc-ended"))
    await h.store(other)  # its ring arrives after its end
    await h.attempt()
    rows = await jobs_of(h)
    ring = next(r for r in rows if r[0].startswith("call_user_start:102"))
    assert ring[3].startswith("skipped: the call is already over")
    assert events(fake) == []  # nothing was ever shown, so no hangup either
    assert fake.popups == {}


async def test_without_live_events_the_module_declares_none(open_harness, fake, clock):
    h = await open_harness(events=["log_call", "create_task"])
    await h.store(inbound("call_user_start", "101", clock()))
    assert await jobs_of(h) == []
    await h.adapter.check()
    telephony = fake.modules["onlinepbx-bridge"]["integrations"]["telephony"]
    assert not telephony["inputEventSupported"] and not telephony["hangupEventSupported"]
