"""Bitrix24 live card (#14) and the #13 telephony fixes, against the portal of
``adapters.bitrix24.fake``: one call from the first ring to the hang-up, lines, redirects."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from adapters.bitrix24.fake import CODE, PORTAL, WEBHOOK, Portal
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

UUID = "b24-live-0001"
CLIENT, LINE = "79221111123", "73431111137"
USERS = {"101": 8, "102": 9, "145": 7}
RECORDING = "https://api2.onlinepbx.ru/calls-records/download/x/rec.mp3"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def portal(clock, no_unmocked_http):
    p = Portal(clock=clock, app_only=False)  # a portal that lets the webhook register calls
    no_unmocked_http.route().mock(side_effect=p)
    return p


@pytest.fixture
def open_harness(pbx_harness, clock):
    """The plugin's harness (closed after the test) with this suite's table defaults."""

    async def make(**table):
        table = {"webhook_url": WEBHOOK, "users": USERS, **table}
        return await pbx_harness("bitrix24", table, clock=clock)

    return make


def inbound(event: str, callee: str = "", now: float = 0.0, uuid: str = UUID, **kw: str):
    body = sample(event, uuid, now)
    body.update(direction="inbound", caller=CLIENT, callee=callee, gateway=LINE, **kw)
    if event == "call_missed":
        body.pop("direction")
    return body


def ended(callee: str, now: float, talk: int = 42, uuid: str = UUID, **kw: str):
    body = inbound("call_end", callee, now, uuid)
    body.update(call_duration=str(talk + 8), dialog_duration=str(talk))
    body.update({"hangup_cause": "NORMAL_CLEARING", **kw})
    return body


async def results(h: AdapterHarness) -> list[tuple[str, str, str]]:
    rows = await h.db.db.fetchall(
        "SELECT e.event, j.action, j.result FROM jobs j JOIN events e ON e.id = j.event_id"
        " ORDER BY j.id"
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_ring_group_is_one_call_from_first_ring_to_hang_up(open_harness, portal, clock):
    portal.add_record("CONTACT", "+7 922 111-11-23", owner=7, name="Anna Client")
    h = await open_harness()
    await h.store(inbound("call_start", LINE, clock()))  # to the line: nobody rings yet
    await h.store(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_user_start", "102", clock()))
    await h.store(inbound("call_user_start", "102", clock()))  # repeated by onlinePBX
    await h.attempt()

    (reg,) = portal.registrations.values()
    first = portal.calls("telephony.externalCall.register")
    assert len(first) == 1
    assert {k: first[0][k] for k in ("USER_ID", "SHOW", "TYPE", "LINE_NUMBER")} == {
        "USER_ID": 8,
        "SHOW": 1,
        "TYPE": 2,
        "LINE_NUMBER": LINE,
    }
    assert first[0]["EXTERNAL_CALL_ID"] == UUID and first[0]["PHONE_NUMBER"] == CLIENT
    assert portal.calls("telephony.externalCall.show") == [{"CALL_ID": reg.call_id, "USER_ID": [9]}]
    assert reg.shown == {8, 9} and reg.entity == ("CONTACT", 1001)  # found by the number

    await h.store(inbound("call_answered", "102", clock()))
    await h.attempt()
    assert portal.calls("telephony.externalCall.hide") == [{"CALL_ID": reg.call_id, "USER_ID": [8]}]
    assert reg.shown == {9}

    await h.store(ended("102", clock(), download_url=RECORDING))
    await h.attempt()
    (done,) = portal.calls("telephony.externalCall.finish")
    assert done["CALL_ID"] == reg.call_id  # the ring's CALL_ID, never a second register
    assert (done["USER_ID"], done["STATUS_CODE"], done["DURATION"]) == (9, "200", 42)
    assert len(portal.calls("telephony.externalCall.register")) == 1
    assert reg.finished is not None and reg.shown == set()  # finish closes every card
    (attached,) = portal.records_attached
    assert attached["CALL_ID"] == reg.call_id and attached["RECORD_URL"] == RECORDING
    rows = await results(h)
    assert rows[-2:] == [("call_end", "over", reg.call_id), ("call_end", "log_call", reg.call_id)]


async def test_missed_after_ringing_finishes_that_call_as_missed_and_adds_the_todo(
    open_harness, portal, clock
):
    lead = portal.add_record("LEAD", "+79221111123", owner=7)
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.attempt()
    await h.store(inbound("call_missed", now=clock()))
    await h.attempt()

    (reg,) = portal.registrations.values()
    (done,) = portal.calls("telephony.externalCall.finish")
    assert (done["CALL_ID"], done["STATUS_CODE"], done["USER_ID"]) == (reg.call_id, "304", 8)
    assert reg.finished is not None and reg.finished["CALL_STATUS"] == 0
    (todo,) = portal.todos
    assert (todo["ownerTypeId"], todo["ownerId"], todo["responsibleId"]) == (1, lead, 7)
    assert len(portal.calls("telephony.externalCall.register")) == 1


async def test_new_number_ringing_gets_bitrix24s_own_lead_once(open_harness, portal, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.attempt()
    await h.store(inbound("call_missed", now=clock()))
    await h.attempt()

    (reg,) = portal.registrations.values()
    assert portal.calls("telephony.externalCall.register")[0]["CRM_CREATE"] == 1
    leads = [r for r in portal.records.values() if r["entity"] == "LEAD"]
    assert len(leads) == 1 and reg.entity == ("LEAD", int(leads[0]["ID"]))
    assert portal.calls("crm.lead.add") == []
    assert portal.todos[0]["ownerId"] == int(leads[0]["ID"])


async def test_outbound_call_shows_the_card_to_the_caller_at_call_start(
    open_harness, portal, clock
):
    h = await open_harness()
    start = sample("call_start", UUID, clock())  # 505 calls 79111117960
    await h.store(dict(start, caller="145"))
    await h.attempt()
    (reg,) = portal.registrations.values()
    assert (reg.user_id, reg.type, reg.shown) == (7, 1, {7})
    end = sample("call_end", UUID, clock())
    end.update(caller="145", callee="79111117960")
    await h.store(end)
    await h.attempt()
    (done,) = portal.calls("telephony.externalCall.finish")
    assert done["CALL_ID"] == reg.call_id and done["STATUS_CODE"] == "200"
    assert len(portal.calls("telephony.externalCall.register")) == 1


async def test_end_before_the_ring_is_logged_once_and_shows_nothing(open_harness, portal, clock):
    h = await open_harness()
    await h.store(ended("101", clock()))
    await h.store(inbound("call_user_start", "101", clock()))  # arrives late
    await h.attempt()
    assert portal.calls("telephony.externalCall.show") == []
    (register,) = portal.calls("telephony.externalCall.register")
    assert register["SHOW"] == 0
    assert len(portal.finished()) == 1
    rows = await results(h)
    assert rows[-1][2].startswith("skipped: the call is already over")


async def test_a_lost_register_answer_is_retried_onto_the_same_call_id(
    open_harness, portal, clock, no_unmocked_http
):
    # Bitrix24 registered the call, the answer never came: the retry registers again with
    # the same USER_ID, line and EXTERNAL_CALL_ID and gets the same CALL_ID back.
    lost = {"once": True}

    def answer(request: httpx.Request) -> httpx.Response:
        response = portal(request)
        if lost["once"] and request.url.path.endswith("telephony.externalCall.register"):
            lost["once"] = False
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    no_unmocked_http.routes.clear()
    no_unmocked_http.route().mock(side_effect=answer)
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    (job,) = await h.attempt()
    assert job.status == "pending"
    clock.advance(job.due_at - clock())
    (job,) = await h.attempt()
    assert job.status == "done", job.last_error
    assert len(portal.calls("telephony.externalCall.register")) == 2
    (reg,) = portal.registrations.values()  # one call in Bitrix24
    assert job.result == reg.call_id


async def test_show_to_a_call_bitrix24_no_longer_knows_is_skipped(open_harness, portal, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.attempt()
    (reg,) = portal.registrations.values()
    reg.finished = {"ID": 1}  # e.g. finished in Bitrix24 by hand
    await h.store(inbound("call_user_start", "102", clock()))
    (job,) = await h.attempt()
    assert job.result == "skipped: telephony.externalCall.show: Bitrix24 no longer knows the call"


async def test_vanished_registration_is_refused_at_finish_and_logged_anew(
    open_harness, portal, clock
):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.attempt()
    (old,) = portal.registrations
    del portal.registrations[old]  # Bitrix24 lost it: finish answers "Call is not found"
    await h.store(ended("101", clock()))
    over, log = await h.attempt()
    assert over.result.startswith("skipped: the registered call vanished")
    assert portal.calls("voximplant.statistic.get") == [{"FILTER": {"CALL_ID": old}}]
    (new,) = portal.registrations.values()
    assert new.finished is not None and log.result == new.call_id != old


async def test_a_webhook_the_portal_refuses_telephony_gets_no_card_and_activities(
    open_harness, portal, clock
):
    portal.app_only = True  # as documented: register only in an application's context
    portal.add_record("CONTACT", "+79221111123", owner=7)
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.attempt()
    await h.store(ended("101", clock()))
    await h.attempt()
    rows = await results(h)
    assert rows[0][2].startswith("skipped: this portal refuses telephony.externalCall.*")
    assert rows[1][2].startswith("skipped: no card was shown")
    assert rows[2][2].startswith("activity:")
    assert portal.registrations == {} and len(portal.activities) == 1


async def test_a_webhook_without_telephony_scope_gets_no_card(
    open_harness, portal, clock, no_unmocked_http
):
    portal.webhook_scopes = {"crm", "user"}
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_user_start", "102", clock()))
    await h.attempt()
    rows = await results(h)
    assert all(r[2].startswith("skipped: no live card: ") for r in rows)
    assert "insufficient_scope" in rows[0][2]
    paths = [c.request.url.path for c in no_unmocked_http.calls]
    assert sum(p.endswith("telephony.externalCall.register") for p in paths) == 1  # once


# --- #13 §2 -----------------------------------------------------------------------------------


@pytest.fixture
async def post_call(open_harness, portal):
    return await open_harness(events=["log_call", "create_task"])


@pytest.mark.parametrize("cause", ["ORIGINATOR_CANCEL", "NORMAL_CLEARING", "USER_BUSY"])
async def test_abandoned_inbound_call_is_a_missed_call(post_call, portal, clock, cause):
    job = await post_call.deliver(ended("101", clock(), talk=0, hangup_cause=cause))
    assert job.status == "done", job.last_error
    (done,) = portal.calls("telephony.externalCall.finish")
    assert (done["STATUS_CODE"], done["FAILED_REASON"]) == ("304", cause)
    assert portal.calls("telephony.externalCall.register")[0]["CRM_CREATE"] == 1


async def test_lines_are_added_once_and_passed_on_register(post_call, portal, clock):
    portal.lines["74990000000"] = {"ID": 3, "NUMBER": "74990000000"}  # added by hand before
    for n, line in enumerate([LINE, LINE, "74990000000", "74990000000"]):
        job = await post_call.deliver(ended("101", clock(), uuid=f"line-{n}", gateway=line))
        assert job.status == "done", job.last_error
    adds = portal.calls("telephony.externalLine.add")
    assert adds == [
        {"NUMBER": LINE, "NAME": f"onlinePBX {LINE}", "CRM_AUTO_CREATE": "N"},
        {"NUMBER": "74990000000", "NAME": "onlinePBX 74990000000", "CRM_AUTO_CREATE": "N"},
    ]  # the second answered "Line already exists": remembered too
    lines = [r["LINE_NUMBER"] for r in portal.calls("telephony.externalCall.register")]
    assert lines == [LINE, LINE, "74990000000", "74990000000"]


async def test_a_moved_portal_is_followed_and_remembered(
    post_call, portal, clock, no_unmocked_http
):
    portal.moved_to = "https://new-name.bitrix24.ru"
    job = await post_call.deliver(ended("101", clock()))
    assert job.status == "done", job.last_error
    hosts = [c.request.url.host for c in no_unmocked_http.calls]
    assert hosts[:2] == ["example.bitrix24.ru", "new-name.bitrix24.ru"]  # one 302, followed
    assert hosts[2:] and set(hosts[2:]) == {"new-name.bitrix24.ru"}  # then straight there
    assert CODE in str(no_unmocked_http.calls[-1].request.url)  # same webhook path
    job = await post_call.deliver(ended("101", clock(), uuid="after-move"))
    assert job.status == "done" and no_unmocked_http.calls[-1].request.url.host == (
        "new-name.bitrix24.ru"
    )
    assert all(c.request.url.host != "example.bitrix24.ru" for c in no_unmocked_http.calls[-4:])


async def test_oauth_calls_go_to_the_token_answers_client_endpoint(
    tmp_path, clock, no_unmocked_http
):
    portal = Portal(clock=clock, url="https://old-name.bitrix24.ru")
    portal.moved_to = "https://new-name.bitrix24.ru"
    no_unmocked_http.route().mock(side_effect=portal)
    table = {
        "base_url": "https://old-name.bitrix24.ru",
        "oauth_url": "https://oauth.example.test/oauth/token/",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "refresh_token": portal.refresh_token,
        "default_user": 1,
        "events": ["log_call", "create_task"],
    }
    h = await AdapterHarness.open(tmp_path, "bitrix24", table, clock=clock)
    try:
        job = await h.deliver(ended("101", clock()))
    finally:
        await h.close()
    assert job.status == "done", job.last_error
    hosts = {c.request.url.host for c in no_unmocked_http.calls}
    assert hosts == {"oauth.example.test", "new-name.bitrix24.ru"}  # never the old name


@pytest.mark.parametrize(
    ("blocked", "words"),
    [
        ("OVERLOAD_LIMIT", "only Bitrix24 support lifts it"),
        ("PORTAL_DELETED", "the portal was deleted or its public part is closed"),
    ],
)
async def test_a_blocked_or_deleted_portal_is_dead_with_an_alert(
    post_call, portal, clock, blocked, words
):
    portal.blocked = blocked
    job = await post_call.deliver(ended("101", clock()))
    assert job.status == "dead"
    assert job.last_error.startswith("ALERT: ") and words in job.last_error
    assert blocked in job.last_error


async def test_statistics_recovery_without_its_permission_names_it(post_call, portal, clock):
    portal.stats_viewers = set()  # nobody has "Call statistics — View"
    portal.canned["telephony.externalcall.finish"] = [
        httpx.Response(400, json={"error": "ERROR_CORE", "error_description": "Call is not found"})
    ]
    job = await post_call.deliver(ended("101", clock()))
    assert job.status == "dead"
    assert 'telephony permission "Call statistics — View"' in job.last_error


def test_the_fake_reuses_a_call_id_for_30_minutes_while_unfinished(clock):
    portal = Portal(clock=clock, app_only=False)

    def register(**over):
        params = {"USER_ID": 8, "PHONE_NUMBER": CLIENT, "TYPE": 2, "EXTERNAL_CALL_ID": "x"}
        request = httpx.Request("POST", WEBHOOK + "telephony.externalCall.register",
                                json={**params, **over})  # fmt: skip
        return portal(request).json()["result"]["CALL_ID"]

    first = register()
    clock.advance(29 * 60)
    assert register() == first
    assert register(USER_ID=9) != first  # another user: another registration
    clock.advance(2 * 60)
    assert register() != first  # after 30 minutes: a new CALL_ID
    finish = httpx.Request(
        "POST",
        WEBHOOK + "telephony.externalCall.finish",
        json={"CALL_ID": "externalCall.unknown", "USER_ID": 8},
    )
    refused = portal(finish)
    assert refused.status_code == 400 and "Call is not found" in refused.json()["error_description"]
    assert PORTAL in WEBHOOK


async def test_a_ring_job_run_twice_registers_once(open_harness, portal, clock):
    # Its booking was lost (a crash after the CRM answered): the same job runs again.
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    (job,) = await h.attempt()
    await h.worker.process(job)
    rows = await results(h)
    assert len(portal.calls("telephony.externalCall.register")) == 1
    assert portal.calls("telephony.externalCall.show") == []
    assert rows == [("call_user_start:101", "ringing", job.result)]


async def test_answered_by_an_unmapped_extension_hides_every_card(open_harness, portal, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_user_start", "102", clock()))
    await h.attempt()
    await h.store(inbound("call_answered", "555", clock()))  # not in the users map
    await h.attempt()
    (reg,) = portal.registrations.values()
    assert portal.calls("telephony.externalCall.hide") == [
        {"CALL_ID": reg.call_id, "USER_ID": [8, 9]}
    ]
    assert reg.shown == set()


async def test_rings_of_one_call_running_at_once_register_one_call(open_harness, portal, clock):
    h = await open_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_user_start", "102", clock()))
    jobs = await h.outbox.claim(h.name, 10)
    assert len(jobs) == 1  # the claim runs a call's jobs one at a time (Storage.claim)...
    # ...so the second ring is run beside it by hand, to prove the adapter's own guard too.
    jobs += await h.outbox.list(status="pending", adapter=h.name)
    await asyncio.gather(*(h.worker.process(job) for job in jobs))  # two workers' slots
    (reg,) = portal.registrations.values()
    assert reg.shown == {8, 9}
