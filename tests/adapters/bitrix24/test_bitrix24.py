"""Bitrix24 adapter through the real pipeline: telephony call log, leads, to-dos and tasks."""

from __future__ import annotations

import httpx
import pytest

from adapters.bitrix24.fake import (
    CODE,
    FINISHED,
    REGISTERED,
    WEBHOOK,
    body,
    crm_entity,
    error,
    ok,
)
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

CALL_ID = REGISTERED["CALL_ID"]


def route(mock, method: str):
    return mock.post(WEBHOOK + method)


@pytest.fixture
def clock():
    return FakeClock()


def telephony(mock, call_id: str = CALL_ID):
    """register and finish answering as for any call (missed calls are registered too)."""
    register = route(mock, "telephony.externalCall.register")
    register.return_value = ok({**REGISTERED, "CALL_ID": call_id})
    finish = route(mock, "telephony.externalCall.finish")
    finish.return_value = ok({**FINISHED, "CALL_ID": call_id})
    return register, finish


@pytest.fixture
async def open_harness(tmp_path, clock, no_unmocked_http):
    made = []
    # Lines are added once per adapter: every test's first register adds its line.
    route(no_unmocked_http, "telephony.externalLine.add").return_value = ok({"ID": 7})

    async def make(**table):
        # The post-call jobs (live actions are tested in test_bitrix24_live.py).
        table = {"webhook_url": WEBHOOK, "users": {"145": 7, "101": 8}, **table}
        table.setdefault("events", ["log_call", "create_task"])
        h = await AdapterHarness.open(tmp_path, "bitrix24", table, clock=clock)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


def inbound_end(clock, **over):
    """An answered inbound call: client 79221111123 reached extension 101."""
    payload = sample("call_end", now=clock())
    payload.update(
        {
            "direction": "inbound",
            "caller": "79221111123",
            "callee": "101",
            "gateway": "73431111137",
            **over,
        }
    )
    return payload


async def test_known_record_registers_finishes_and_attaches_record(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness()
    search = route(no_unmocked_http, "telephony.externalCall.searchCrmEntities")
    search.return_value = ok([crm_entity("LEAD", 17, 5), crm_entity("CONTACT", 651, 99)])
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok(REGISTERED)
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.return_value = ok(FINISHED)
    attach = route(no_unmocked_http, "telephony.externalCall.attachRecord")
    attach.return_value = ok({"FILE_ID": 9079})

    payload = sample("call_end", now=clock())
    payload["download_url"] = "https://api2.onlinepbx.ru/calls-records/download/x/rec.mp3"
    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    assert job.result == CALL_ID
    assert body(search) == {"PHONE_NUMBER": "79502222919"}
    reg = body(register)
    assert reg == {
        "USER_ID": 7,  # extension 145 in the users map wins for the call log
        "PHONE_NUMBER": "79502222919",
        "TYPE": 1,  # outbound
        "CALL_START_DATE": reg["CALL_START_DATE"],
        "CRM_CREATE": 0,
        "SHOW": 0,
        "ADD_TO_CHAT": 0,
        "EXTERNAL_CALL_ID": payload["uuid"],
        "LINE_NUMBER": "74991111282",
        "CRM_ENTITY_TYPE": "CONTACT",  # a contact is preferred over a lead
        "CRM_ENTITY_ID": 651,
    }
    assert reg["CALL_START_DATE"].endswith("+03:00")  # ISO-8601 with the offset
    assert body(finish) == {
        "CALL_ID": CALL_ID,
        "USER_ID": 7,
        "DURATION": 135,
        "STATUS_CODE": "200",
        "ADD_TO_CHAT": 0,
    }
    assert body(attach) == {
        "CALL_ID": CALL_ID,
        "RECORD_URL": payload["download_url"],
        "FILENAME": payload["uuid"] + ".mp3",
    }
    # The webhook code travels only in the URL path, never in bodies.
    assert all(CODE not in c.request.content.decode() for c in no_unmocked_http.calls)


async def test_unknown_inbound_number_lets_register_create_the_lead(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    dup = route(no_unmocked_http, "crm.duplicate.findbycomm")
    dup.return_value = ok([])
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok(
        {
            **REGISTERED,
            "CRM_CREATED_LEAD": 3465,
            "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": 3465}],
            "CRM_ENTITY_TYPE": "LEAD",
            "CRM_ENTITY_ID": 3465,
        }
    )
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.return_value = ok(FINISHED)
    lead_add = route(no_unmocked_http, "crm.lead.add")

    job = await h.deliver(inbound_end(clock))

    assert job.status == "done", job.last_error
    assert body(dup) == {
        "type": "PHONE",
        "values": ["+79221111123", "79221111123", "89221111123", "9221111123"],
    }
    reg = body(register)
    assert reg["CRM_CREATE"] == 1 and reg["CRM_SOURCE"] == "CALL"
    assert reg["TYPE"] == 2 and reg["USER_ID"] == 8 and reg["PHONE_NUMBER"] == "79221111123"
    assert "CRM_ENTITY_ID" not in reg
    # One registration: log_call finishes the call create_contact registered.
    assert register.call_count == 1 and not lead_add.called
    assert body(finish)["CALL_ID"] == CALL_ID and body(finish)["USER_ID"] == 8


async def test_unknown_number_without_create_policy_registers_with_crm_create_0(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness(create_contacts="never")
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok([])
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok({**REGISTERED, "CRM_ENTITY_TYPE": None, "CRM_ENTITY_ID": None})
    route(no_unmocked_http, "telephony.externalCall.finish").return_value = ok(FINISHED)
    lead_add = route(no_unmocked_http, "crm.lead.add")

    job = await h.deliver(inbound_end(clock))

    assert job.status == "done", job.last_error
    reg = body(register)
    assert reg["CRM_CREATE"] == 0 and "CRM_SOURCE" not in reg and "CRM_ENTITY_TYPE" not in reg
    assert not lead_add.called


async def test_lead_add_policy_creates_lead_with_work_phone_then_binds_the_call(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness(lead_creation="lead_add", default_user=3)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok([])
    lead_add = route(no_unmocked_http, "crm.lead.add")
    lead_add.return_value = ok(3465)
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok({**REGISTERED, "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 3465})
    route(no_unmocked_http, "telephony.externalCall.finish").return_value = ok(FINISHED)

    job = await h.deliver(inbound_end(clock, callee="555"))  # 555: not in the users map

    assert job.status == "done", job.last_error
    fields = body(lead_add)["fields"]
    assert fields["PHONE"] == [{"VALUE": "+79221111123", "VALUE_TYPE": "WORK"}]
    assert fields["ASSIGNED_BY_ID"] == 3 and fields["SOURCE_ID"] == "CALL"
    assert fields["TITLE"] == "Клиент +7 922 111-11-23"
    reg = body(register)
    assert (reg["CRM_ENTITY_TYPE"], reg["CRM_ENTITY_ID"], reg["CRM_CREATE"]) == ("LEAD", 3465, 0)
    assert reg["USER_ID"] == 3


async def test_finish_failed_then_retry_finishes_the_same_call(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok(REGISTERED)
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.side_effect = [
        error(500, "INTERNAL_SERVER_ERROR", "Internal server error"),
        ok(FINISHED),
    ]

    job = await h.deliver(sample("call_end", now=clock()))
    assert job.status == "pending" and "INTERNAL_SERVER_ERROR" in job.last_error
    clock.advance(job.due_at - clock())
    (job,) = await h.attempt()

    assert job.status == "done", job.last_error
    assert register.call_count == 1  # one call in the CRM
    assert [body(finish, i)["CALL_ID"] for i in (0, 1)] == [CALL_ID, CALL_ID]


async def test_finish_whose_answer_was_lost_is_found_in_statistics(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = ok(REGISTERED)
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.side_effect = [
        httpx.ReadTimeout("read timed out"),  # Bitrix24 finished it; we never heard
        error(
            400,
            "ERROR_CORE",
            "Call is not found (call should be registered prior to finishing)",
        ),
    ]
    stats = route(no_unmocked_http, "voximplant.statistic.get")
    stats.return_value = ok([{"ID": 77, "CALL_ID": CALL_ID}], total=1)

    job = await h.deliver(sample("call_end", now=clock()))
    assert job.status == "pending"
    clock.advance(job.due_at - clock())
    (job,) = await h.attempt()

    assert job.status == "done", job.last_error
    assert register.call_count == 1 and finish.call_count == 2
    assert body(stats) == {"FILTER": {"CALL_ID": CALL_ID}}


async def test_vanished_registration_is_registered_again(open_harness, clock, no_unmocked_http):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.side_effect = [ok(REGISTERED), ok({**REGISTERED, "CALL_ID": "externalCall.2"})]
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.side_effect = [
        error(
            400, "ERROR_CORE", "Call is not found (call should be registered prior to finishing)"
        ),
        ok(FINISHED),
    ]
    route(no_unmocked_http, "voximplant.statistic.get").return_value = ok([], total=0)

    job = await h.deliver(sample("call_end", now=clock()))

    assert job.status == "done", job.last_error
    assert job.result == "externalCall.2"
    assert body(finish, 1)["CALL_ID"] == "externalCall.2"


async def test_expired_recording_link_keeps_the_call(open_harness, clock, no_unmocked_http):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    route(no_unmocked_http, "telephony.externalCall.register").return_value = ok(REGISTERED)
    route(no_unmocked_http, "telephony.externalCall.finish").return_value = ok(FINISHED)
    attach = route(no_unmocked_http, "telephony.externalCall.attachRecord")
    attach.return_value = error(400, "ERROR_CORE", "Server returns HTTP error code 404")
    payload = sample("call_end", now=clock())
    payload["download_url"] = "https://api2.onlinepbx.ru/calls-records/download/x/rec.mp3"

    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    assert attach.call_count == 1


async def test_webhook_refused_telephony_falls_back_to_call_activity(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness()
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    register = route(no_unmocked_http, "telephony.externalCall.register")
    register.return_value = error(
        403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"
    )
    activity = route(no_unmocked_http, "crm.activity.add")
    activity.side_effect = [ok(999), ok(1000)]

    job = await h.deliver(sample("call_end", now=clock()))

    assert job.status == "done", job.last_error
    assert job.result == "activity:999"
    fields = body(activity)["fields"]
    assert {k: fields[k] for k in ("OWNER_TYPE_ID", "OWNER_ID", "TYPE_ID", "DIRECTION")} == {
        "OWNER_TYPE_ID": 3,
        "OWNER_ID": 651,
        "TYPE_ID": 2,
        "DIRECTION": 2,
    }
    assert fields["COMMUNICATIONS"] == [
        {"VALUE": "+79502222919", "ENTITY_ID": 651, "ENTITY_TYPE_ID": 3}
    ]
    assert fields["RESPONSIBLE_ID"] == 7 and fields["COMPLETED"] == "Y"
    assert fields["SUBJECT"] == "Исходящий звонок +7 950 222-29-19"
    assert fields["START_TIME"].endswith("+03:00") and fields["ORIGIN_ID"] == job.uuid

    # Remembered: the next call goes straight to the activity, even after a restart.
    await h.close()
    h2 = await open_harness()
    job = await h2.deliver(sample("call_end", now=clock()))
    assert job.result == "activity:1000" and register.call_count == 1


async def test_call_log_telephony_only_makes_refusal_dead_with_a_fix(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness(call_log="telephony")
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    route(no_unmocked_http, "telephony.externalCall.register").return_value = error(
        403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"
    )
    job = await h.deliver(sample("call_end", now=clock()))
    assert job.status == "dead"
    assert "OAuth app" in job.last_error and 'call_log = "activity"' in job.last_error


async def test_missed_call_todo_on_the_record_for_its_owner(open_harness, clock, no_unmocked_http):
    h = await open_harness()
    telephony(no_unmocked_http)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity("COMPANY", 643, 99)]
    )
    todo = route(no_unmocked_http, "crm.activity.todo.add")
    todo.return_value = ok({"id": 999})

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert job.result == "todo:999"
    sent = body(todo)
    assert sent == {
        "ownerTypeId": 4,
        "ownerId": 643,
        "deadline": "2026-05-28T23:41:40+03:00",  # now + 15 min, Moscow time
        "title": sent["title"],
        "description": sent["description"],
        "responsibleId": 99,  # the record's owner takes the follow-up
        "pingOffsets": [0, 15],
    }
    assert sent["title"].startswith("Перезвонить: пропущенный звонок с +7 922 111-11-23")


async def test_missed_call_is_a_missed_call_whose_register_creates_the_lead(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness(default_user=3)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok([])
    register, finish = telephony(no_unmocked_http)
    created = {"CRM_CREATED_LEAD": 3465, "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 3465}
    register.return_value = ok({**REGISTERED, **created})
    lead_add = route(no_unmocked_http, "crm.lead.add")
    todo = route(no_unmocked_http, "crm.activity.todo.add")
    todo.return_value = ok({"id": 1001})

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    reg = body(register)
    assert (reg["TYPE"], reg["CRM_CREATE"], reg["PHONE_NUMBER"]) == (2, 1, "79221111123")
    assert body(finish)["STATUS_CODE"] == "304" and body(finish)["DURATION"] == 0
    assert not lead_add.called  # Bitrix24's own missed-call lead
    assert (body(todo)["ownerTypeId"], body(todo)["ownerId"]) == (1, 3465)
    assert body(todo)["responsibleId"] == 3


async def test_task_kind_task_links_the_crm_record(open_harness, clock, no_unmocked_http):
    h = await open_harness(task_kind="task")
    telephony(no_unmocked_http)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok(
        [crm_entity()]
    )
    add = route(no_unmocked_http, "tasks.task.add")
    add.return_value = ok({"task": {"id": "3711", "title": "x"}})

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert job.result == "task:3711"
    fields = body(add)["fields"]
    assert fields["UF_CRM_TASK"] == ["C_651"]
    assert fields["RESPONSIBLE_ID"] == 99
    assert fields["DEADLINE"] == "2026-05-28T23:41:40+03:00"
    assert fields["TITLE"].startswith("Перезвонить")


async def test_findbycomm_hit_is_confirmed_against_the_stored_phone(
    open_harness, clock, no_unmocked_http
):
    h = await open_harness(create_contacts="never")
    telephony(no_unmocked_http)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = error(
        401, "insufficient_scope", "The request requires higher privileges than provided"
    )
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok({"CONTACT": [275, 2297]})
    get = route(no_unmocked_http, "crm.contact.get")
    get.side_effect = [
        ok({"ID": "275", "NAME": "Wrong", "PHONE": [{"VALUE": "+7 922 000-00-00"}]}),
        ok(
            {
                "ID": "2297",
                "NAME": "Anna",
                "LAST_NAME": "Petrova",
                "ASSIGNED_BY_ID": "12",
                "PHONE": [{"ID": "5", "VALUE_TYPE": "WORK", "VALUE": "8 (922) 111-11-23"}],
            }
        ),
    ]
    todo = route(no_unmocked_http, "crm.activity.todo.add")
    todo.return_value = ok({"id": 5})

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert [body(get, i) for i in (0, 1)] == [{"id": 275}, {"id": 2297}]
    assert (body(todo)["ownerId"], body(todo)["responsibleId"]) == (2297, 12)


async def test_todo_without_a_record_becomes_a_plain_task(open_harness, clock, no_unmocked_http):
    h = await open_harness(create_contacts="never", default_user=3)
    telephony(no_unmocked_http)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok([])
    todo = route(no_unmocked_http, "crm.activity.todo.add")
    add = route(no_unmocked_http, "tasks.task.add")
    add.return_value = ok({"task": {"id": "12"}})

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert not todo.called
    fields = body(add)["fields"]
    assert "UF_CRM_TASK" not in fields and fields["RESPONSIBLE_ID"] == 3


async def test_next_call_from_a_created_lead_registers_its_own_call(
    open_harness, clock, no_unmocked_http
):
    # The contact cache hands the lead created by the first call's register to the second
    # call: the second call must still be registered (and finished) as a call of its own.
    h = await open_harness(contact_cache_seconds=60)
    route(no_unmocked_http, "telephony.externalCall.searchCrmEntities").return_value = ok([])
    route(no_unmocked_http, "crm.duplicate.findbycomm").return_value = ok([])
    register = route(no_unmocked_http, "telephony.externalCall.register")
    lead = {"CRM_CREATED_LEAD": 3465, "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 3465}
    register.side_effect = [
        ok({**REGISTERED, **lead}),
        ok({**REGISTERED, "CALL_ID": "externalCall.2", "CRM_ENTITY_TYPE": "LEAD"}),
    ]
    finish = route(no_unmocked_http, "telephony.externalCall.finish")
    finish.return_value = ok(FINISHED)

    first = await h.deliver(inbound_end(clock, uuid="b24-first"))
    second = await h.deliver(inbound_end(clock, uuid="b24-second"))

    assert (first.status, second.status) == ("done", "done"), second.last_error
    assert [body(register, i)["EXTERNAL_CALL_ID"] for i in (0, 1)] == ["b24-first", "b24-second"]
    assert body(register, 1)["CRM_ENTITY_ID"] == 3465  # the cached lead, no second lead
    assert [body(finish, i)["CALL_ID"] for i in (0, 1)] == [CALL_ID, "externalCall.2"]
    assert second.result == "externalCall.2"
