"""amoCRM's incoming-call notification (``POST /api/v2/events``, type ``phone_call``) to the
ringing users, against the in-memory account of ``adapters.amocrm.fake``: the request, the
users it goes to, amo's refusals, and the core's filters and stale / ended skips."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from adapters.amocrm import fake as amo
from bridge.samples import sample
from tests.conftest import FakeClock

HOST = "example.amocrm.ru"
EVENTS = f"{amo.BASE}/api/v2/events"
UUID = "amo-live-0001"
CLIENT = "+79221111123"
ANNA, IVAN = 5550001, 5550002


def inbound(event: str, callee: str = "", now: float = 0.0, **extra: str) -> dict[str, str]:
    body = sample(event, UUID, now)
    body.update(direction="inbound", caller=CLIENT[1:], callee=callee, **extra)
    if event == "call_missed":
        body.pop("direction")
    return body


def sent(account: amo.AmoAccount) -> list[Any]:
    return [json.loads(r.content) for r in account.requests if r.url.path == "/api/v2/events"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def account(no_unmocked_http) -> amo.AmoAccount:
    crm = amo.AmoAccount(users=[(ANNA, "Anna"), (IVAN, "Ivan"), (5550003, "Olga")])
    no_unmocked_http.route(host=HOST).mock(side_effect=crm)
    return crm


@pytest.fixture
def open_harness(open_adapter, clock, account):
    def open_(**table: Any):
        table = {
            "base_url": amo.BASE,
            "access_token": account.token,
            "users": {"101": ANNA, "102": IVAN},
            **table,
        }
        return open_adapter("amocrm", table, clock=clock)

    return open_


async def test_each_ringing_user_is_notified_never_everyone(open_harness, account, clock):
    h = await open_harness()
    for ext in ("101", "102", "103", "101"):  # 103 has no amo user; 101's webhook repeated
        await h.store(inbound("call_user_start", ext, clock()))
    jobs = await h.attempt()
    assert sent(account) == [
        {"add": [{"type": "phone_call", "phone_number": CLIENT, "users": [ANNA]}]},
        {"add": [{"type": "phone_call", "phone_number": CLIENT, "users": [IVAN]}]},
    ]
    assert account.notifications == [(CLIENT, [ANNA]), (CLIENT, [IVAN])]  # Olga was not
    assert [j.result for j in jobs][:2] == [f"notified:{ANNA}", f"notified:{IVAN}"]
    unmapped = jobs[2].result
    assert unmapped.startswith("skipped: extension 103 has no amoCRM user")
    assert "would go to everyone" in unmapped
    request = next(r for r in account.requests if r.url.path == "/api/v2/events")
    assert request.headers["authorization"] == f"Bearer {account.token}"
    # amo finds the card by the number itself: no contact search before the notification.
    assert [r.url.path for r in account.requests] == ["/api/v2/events"] * 2


async def test_two_extensions_of_one_user_notify_it_once(open_harness, account, clock):
    h = await open_harness(users={}, default_user=ANNA)
    for ext in ("101", "102"):
        await h.store(inbound("call_user_start", ext, clock()))
    first, second = await h.attempt()
    assert first.result == f"notified:{ANNA}"
    assert second.result == f"skipped: amoCRM user {ANNA} was already notified of this call"
    assert account.notifications == [(CLIENT, [ANNA])]


async def test_outbound_call_start_notifies_the_user_who_dials(open_harness, account, clock):
    h = await open_harness(users={"505": IVAN})
    job = await h.deliver(sample("call_start", "amo-out", clock()))  # 505 dials 79111117960
    assert job.status == "done" and job.result == f"notified:{IVAN}", job.last_error
    assert account.notifications == [("+79111117960", [IVAN])]


async def test_unknown_caller_is_notified_and_nothing_is_created(open_harness, account, clock):
    h = await open_harness(create_contacts="always")
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done", job.last_error
    # amo offers to create the contact in the notification; the bridge creates nothing live.
    assert account.contacts == {} and account.notifications == [(CLIENT, [ANNA])]


async def test_answered_and_over_send_nothing_amo_has_no_hide(open_harness, account, clock):
    h = await open_harness()
    await h.store(inbound("call_answered", "101", clock()))
    await h.store(inbound("call_end", "101", clock(), call_duration="60", dialog_duration="50"))
    jobs = await h.attempt()
    assert [j.action for j in jobs] == ["log_call"]  # no live job at all for amo here
    assert sent(account) == []


async def test_a_wrong_token_puts_the_card_aside_with_the_fix(open_harness, account, clock):
    h = await open_harness(access_token="amo-revoked-token")
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done"  # a card is never a dead job
    assert job.result.startswith("skipped: failed: ") and "token revoked or expired" in job.result
    assert "amo-revoked-token" not in job.result
    assert account.notifications == []


async def test_amos_refusal_is_put_aside_in_amos_words(open_harness, account, clock):
    account.canned["/api/v2/events"] = amo.validation_error(
        "add.0.phone_number", "This value should not be blank.", "NotBlank"
    )
    h = await open_harness()
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done"
    assert "add.0.phone_number: This value should not be blank. (NotBlank)" in job.result


async def test_403_holds_the_adapter_and_the_card_is_put_aside(open_harness, account, clock):
    account.canned["/api/v2/events"] = amo.problem(403, "Forbidden")
    h = await open_harness()
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done"  # not retried after the 15-minute hold: the call is long over
    assert job.result.startswith("skipped: not retried: the card would come too late")
    assert "403" in job.result and len(sent(account)) == 1


async def test_stale_and_ended_calls_are_not_notified(open_harness, account, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    clock.advance(61)
    [job] = await h.attempt()
    assert job.result == "skipped: stale: the event is 61 s old (live_max_age_seconds 60)"
    ended = "amo-live-ended"
    await h.store(dict(inbound("call_missed", now=clock()), uuid=ended))
    await h.store(dict(inbound("call_user_start", "101", clock()), uuid=ended))
    jobs = await h.attempt()
    ring = next(j for j in jobs if j.action == "ringing")
    assert ring.result.startswith("skipped: the call is already over (call_missed received)")
    assert account.notifications == []


async def test_filters_and_the_users_map_apply(open_harness, account, clock):
    h = await open_harness(extensions=["101"])
    await h.store(inbound("call_user_start", "102", clock()))
    [job] = await h.attempt()
    assert job.result == "skipped: extension 102 not in extensions"
    assert account.notifications == []


# --- the fake refuses what amo refuses ------------------------------------------------------


def _post(account: amo.AmoAccount, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token or account.token}"}
    return account(httpx.Request("POST", EVENTS, json=body, headers=headers))


def test_the_fake_refuses_what_amo_refuses():
    account = amo.AmoAccount(users=[(ANNA, "Anna"), (IVAN, "Ivan")])
    ok = {"type": "phone_call", "phone_number": CLIENT, "users": [ANNA]}
    assert _post(account, {"add": [ok]}).status_code == 202
    assert _post(account, {"add": [ok]}, token="wrong").status_code == 401
    wrong_type = _post(account, {"add": [{**ok, "type": "call"}]})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["validation-errors"][0]["errors"][0]["path"] == "add.0.type"
    no_phone = _post(account, {"add": [{**ok, "phone_number": ""}]})
    assert no_phone.json()["validation-errors"][0]["errors"][0]["code"] == "NotBlank"
    assert _post(account, {"add": [{**ok, "users": "5550001"}]}).status_code == 400
    assert _post(account, [ok]).status_code == 400  # not under "add"
    # As amo documents, a notification without users goes to every user of the account.
    assert _post(account, {"add": [{"type": "phone_call", "phone_number": CLIENT}]}).is_success
    assert account.notifications == [(CLIENT, [ANNA]), (CLIENT, [ANNA, IVAN])]
