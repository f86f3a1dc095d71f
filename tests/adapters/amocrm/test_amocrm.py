"""amoCRM / Kommo adapter: the real pipeline and SQLite file, amo answered by respx with the
shapes of the official API v4 reference (adapters/amocrm/fake.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.amocrm import fake as amo
from adapters.amocrm.adapter import AmoCRMAdapter
from adapters.amocrm.settings import AmoCRMSettings
from bridge.registry import adapter_class, configured
from bridge.samples import sample
from bridge.settings import SettingsError
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

TOKEN = "amo-long-lived-token-0123456789"
TABLE = {"base_url": amo.BASE, "access_token": TOKEN, "users": {"101": 777, "145": 778}}
CONTACTS = f"{amo.BASE}/api/v4/contacts"
CALLS = f"{amo.BASE}/api/v4/calls"
TASKS = f"{amo.BASE}/api/v4/tasks"
LEADS = f"{amo.BASE}/api/v4/leads"
COMPANIES = f"{amo.BASE}/api/v4/companies"
ACCOUNT = f"{amo.BASE}/api/v4/account"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_amo(tmp_path, clock):
    opened: list[AdapterHarness] = []

    async def open_(table: dict[str, Any] | None = None, **settings: Any) -> AdapterHarness:
        h = await AdapterHarness.open(
            tmp_path, "amocrm", {**TABLE, **(table or {})}, clock=clock, **settings
        )
        opened.append(h)
        return h

    yield open_
    for h in opened:
        await h.close()


def inbound_end(clock: FakeClock, caller: str = "89221111123", **extra: str) -> dict[str, str]:
    p = sample("call_end", now=clock())
    p.update(
        direction="inbound",
        caller=caller,
        callee="101",
        gateway="73431111137",
        call_duration="60",
        dialog_duration="42",
    )
    p.update(extra)
    return p


def body(route, i: int = -1) -> Any:
    return json.loads(route.calls[i].request.content)


# --- a known contact -----------------------------------------------------------------------


async def test_known_contact_call_is_logged_with_every_field(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    search = no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4001, ["+7 (950) 222-29-19"], owner=555))
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9001, 4001))
    payload = sample("call_end", now=clock())  # outbound from extension 145, talked 135 s
    payload["download_url"] = "https://api2.onlinepbx.ru/calls-records/download/x/rec.mp3"

    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    assert job.result == "call:9001"
    sent = search.calls[0].request
    assert sent.url.params["query"] == "9502222919"
    assert sent.url.params["with"] == "leads"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    [call] = body(calls)
    assert call == {
        "direction": "outbound",
        "uniq": payload["uuid"],
        "duration": 135,
        "source": "onlinepbx",
        "phone": "+79502222919",
        "link": payload["download_url"],
        "call_status": 4,
        "call_result": "Разговор состоялся",
        "call_responsible": 778,  # who made the call: extension 145's user
        "responsible_user_id": 778,  # the extension's user wins over the contact's owner
        "created_by": 778,
        "created_at": int(clock()) - 149,
        "request_id": payload["uuid"],
    }


@pytest.mark.parametrize(
    ("cause", "status"), [("USER_BUSY", 7), ("NO_ANSWER", 6), ("UNALLOCATED_NUMBER", 5)]
)
async def test_unanswered_outcomes_map_to_call_status(
    open_amo, clock, no_unmocked_http, cause, status
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4001, ["79502222919"]))
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9001, 4001))
    payload = sample("call_end", now=clock())
    payload.update(dialog_duration="0", hangup_cause=cause)

    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    [call] = body(calls)
    assert call["call_status"] == status and call["duration"] == 0
    assert "link" not in call


@pytest.mark.parametrize("caller", ["89221111123", "+79221111123", "79221111123"])
async def test_8_prefixed_and_plus7_numbers_find_the_same_contact(
    open_amo, clock, no_unmocked_http, caller
):
    h = await open_amo()
    # Stored the way a person typed it, with the trunk prefix 8.
    search = no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4002, ["8 (922) 111-11-23"], owner=555))
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9002, 4002))
    created = no_unmocked_http.post(CONTACTS)

    job = await h.deliver(inbound_end(clock, caller=caller))

    assert job.status == "done", job.last_error
    assert search.calls[0].request.url.params["query"] == "9221111123"
    assert body(calls)[0]["phone"] == "+79221111123"
    assert not created.called  # found, so nothing created


async def test_search_hit_on_another_field_is_not_a_match(open_amo, clock, no_unmocked_http):
    # The query matched something else (a note, another number containing the digits).
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4003, ["+7 922 111-11-24", "+7 495 000-00-00"]))
    )
    create = no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5001))
    no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9003, 5001))

    job = await h.deliver(inbound_end(clock))

    assert job.status == "done", job.last_error
    assert create.called  # the near miss was not taken for the caller


# --- unknown callers, per policy -----------------------------------------------------------


async def test_unknown_caller_contact_created_before_the_call(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    create = no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5001))
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9004, 5001))

    job = await h.deliver(inbound_end(clock))

    assert job.status == "done", job.last_error
    assert body(create) == [
        {
            "name": "Клиент +7 922 111-11-23",
            "responsible_user_id": 777,
            "custom_fields_values": [
                {
                    "field_code": "PHONE",
                    "values": [{"value": "+79221111123", "enum_code": "WORK"}],
                }
            ],
        }
    ]
    # amo drops a call whose number matches nothing: the contact must exist first.
    order = [c.request.method + " " + c.request.url.path for c in no_unmocked_http.calls]
    assert order == [
        "GET /api/v4/contacts",
        "GET /api/v4/companies",  # no company holds the number either
        "POST /api/v4/contacts",
        "POST /api/v4/calls",
    ]
    assert body(calls)[0]["responsible_user_id"] == 777


async def test_unknown_caller_lead_policy_creates_lead_with_contact(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo({"unknown_caller": "lead", "pipeline_id": 3177727})
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    complex_ = no_unmocked_http.post(f"{amo.BASE}/api/v4/leads/complex").mock(
        return_value=amo.complex_lead(7001, 5002)
    )
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8001))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert body(complex_) == [
        {
            "name": "Входящий звонок +7 922 111-11-23",
            "pipeline_id": 3177727,
            "_embedded": {
                "contacts": [
                    {
                        "name": "Клиент +7 922 111-11-23",
                        "custom_fields_values": [
                            {
                                "field_code": "PHONE",
                                "values": [{"value": "+79221111123", "enum_code": "WORK"}],
                            }
                        ],
                    }
                ]
            },
        }
    ]
    [task] = body(tasks)
    assert (task["entity_type"], task["entity_id"]) == ("leads", 7001)


async def test_unknown_caller_unsorted_policy_holds_the_call(open_amo, clock, no_unmocked_http):
    h = await open_amo({"unknown_caller": "unsorted", "pipeline_id": 3177727})
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    unsorted = no_unmocked_http.post(f"{amo.BASE}/api/v4/leads/unsorted/sip").mock(
        return_value=amo.unsorted_added("f03c796a5fca4f1a8b1e1a5d1e51a7c9", 7002, 5003)
    )
    calls = no_unmocked_http.post(CALLS)
    payload = inbound_end(clock, download_url="https://api2.onlinepbx.ru/r/rec.mp3")

    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    assert job.result == "unsorted:f03c796a5fca4f1a8b1e1a5d1e51a7c9"
    [item] = body(unsorted)
    started = int(clock()) - 60
    assert item["source_uid"] == payload["uuid"] and item["source_name"] == "onlinePBX"
    assert item["pipeline_id"] == 3177727 and item["created_at"] == started
    assert item["metadata"] == {
        "is_call_event_needed": True,
        "uniq": payload["uuid"],
        "duration": 42,
        "service_code": "onlinepbx",
        "link": "https://api2.onlinepbx.ru/r/rec.mp3",
        "phone": "73431111137",
        "from": "+79221111123",
        "called_at": started,
    }
    assert item["_embedded"]["contacts"][0]["custom_fields_values"][0]["values"] == [
        {"value": "+79221111123", "enum_code": "WORK"}
    ]
    assert item["_embedded"]["leads"] == [
        {"name": "Входящий звонок +7 922 111-11-23", "responsible_user_id": 777}
    ]
    assert not calls.called  # the Unsorted entry already carries this call


async def test_unsorted_missed_call_task_goes_to_the_unsorted_lead(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo({"unknown_caller": "unsorted"})
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    unsorted = no_unmocked_http.post(f"{amo.BASE}/api/v4/leads/unsorted/sip").mock(
        return_value=amo.unsorted_added("abc", 7003, 5004)
    )
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8002))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert body(unsorted)[0]["metadata"]["duration"] == 0
    [task] = body(tasks)
    assert (task["entity_type"], task["entity_id"]) == ("leads", 7003)


async def test_policy_never_task_without_entity_is_not_lost(open_amo, clock, no_unmocked_http):
    h = await open_amo({"create_contacts": "never", "default_user": 900})
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    create = no_unmocked_http.post(CONTACTS)
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8003))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert job.result == "task:8003"
    [task] = body(tasks)
    assert "entity_type" not in task and "entity_id" not in task
    assert task["responsible_user_id"] == 900
    assert not create.called


async def test_policy_never_call_amo_cannot_place_is_skipped_not_dead(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo({"create_contacts": "never"})
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_not_attached())

    job = await h.deliver(inbound_end(clock))

    assert job.status == "done"
    assert job.result.startswith("skipped: amoCRM has no contact or company with +79221111123")
    assert "Entity not found" in job.result
    assert calls.call_count == 1  # a company may still have the number: amo was asked


async def test_known_contact_but_call_not_attached_is_retried(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4004, ["+79221111123"]))
    )
    no_unmocked_http.post(CALLS).mock(return_value=amo.call_not_attached())

    job = await h.deliver(inbound_end(clock))

    assert job.status == "pending"
    assert "did not attach the call to contact 4004" in job.last_error


# --- several matches -----------------------------------------------------------------------


async def test_several_matches_prefer_open_lead_then_recent(
    open_amo, clock, no_unmocked_http, capsys
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(
            amo.contact(4010, ["+79221111123"], owner=561, updated_at=1_750_000_000, leads=[31]),
            amo.contact(4011, ["89221111123"], owner=562, updated_at=1_700_000_000, leads=[32]),
            amo.contact(4012, ["9221111123"], owner=563, updated_at=1_760_000_000),
        )
    )
    leads = no_unmocked_http.get(LEADS).mock(
        return_value=amo.leads_page(amo.lead(31, 143), amo.lead(32, 142000))
    )
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8004))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert sorted(leads.calls[0].request.url.params.get_list("filter[id][]")) == ["31", "32"]
    [task] = body(tasks)
    # 4011 has the only open lead (31 is lost: status 143) → its lead, its owner.
    assert (task["entity_type"], task["entity_id"]) == ("leads", 32)
    assert task["responsible_user_id"] == 562
    assert "several amoCRM contacts" in capsys.readouterr().err  # log lines go to stderr


async def test_several_matches_without_open_leads_take_the_most_recent(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(
            amo.contact(4021, ["+79221111123"], owner=561, updated_at=1_700_000_000),
            amo.contact(4020, ["+79221111123"], owner=562, updated_at=1_760_000_000),
        )
    )
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8005))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    [task] = body(tasks)
    assert (task["entity_type"], task["entity_id"]) == ("contacts", 4020)
    assert task["responsible_user_id"] == 562


# --- missed call tasks ---------------------------------------------------------------------


async def test_missed_call_task_due_inside_working_hours(open_amo, no_unmocked_http, tmp_path):
    tz = ZoneInfo("Europe/Moscow")
    saturday_night = datetime(2026, 6, 6, 23, 30, tzinfo=tz).timestamp()
    clock = FakeClock(saturday_night)
    h = await AdapterHarness.open(
        tmp_path,
        "amocrm",
        TABLE,
        clock=clock,
        schedule={"work_days": [1, 2, 3, 4, 5], "work_start": "09:00", "work_end": "18:00"},
    )
    try:
        no_unmocked_http.get(CONTACTS).mock(
            return_value=amo.contacts_page(
                amo.contact(4030, ["+79221111123"], owner=555, leads=[41])
            )
        )
        no_unmocked_http.get(LEADS).mock(return_value=amo.leads_page(amo.lead(41, 142)))
        tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8006))

        job = await h.deliver(sample("call_missed", now=clock()))

        assert job.status == "done", job.last_error
        [task] = body(tasks)
        assert task["task_type_id"] == 1
        assert task["complete_till"] == int(datetime(2026, 6, 8, 9, 0, tzinfo=tz).timestamp())
        assert task["text"].startswith("Перезвонить: пропущенный звонок с +7 922 111-11-23 в 23:30")
        assert "на линию 73431111137" in task["text"]
        assert task["responsible_user_id"] == 555  # the contact's owner calls back
        # Its only lead is won (142): the task goes on the contact.
        assert (task["entity_type"], task["entity_id"]) == ("contacts", 4030)
    finally:
        await h.close()


async def test_missed_call_task_on_the_single_open_lead(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4031, ["+79221111123"], leads=[51, 52]))
    )
    no_unmocked_http.get(LEADS).mock(
        return_value=amo.leads_page(amo.lead(51, 143), amo.lead(52, 4000123))
    )
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8007))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert (body(tasks)[0]["entity_type"], body(tasks)[0]["entity_id"]) == ("leads", 52)


# --- idempotency ---------------------------------------------------------------------------


async def test_same_webhook_twice_one_call(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4040, ["+79221111123"]))
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9040, 4040))
    payload = inbound_end(clock)

    job = await h.deliver(payload)
    await h.store(dict(payload))  # onlinePBX (or a proxy) sends it again
    again = await h.attempt()

    assert job.status == "done" and again == []
    assert calls.call_count == 1
    assert body(calls)[0]["uniq"] == payload["uuid"]  # amo's own dedup key, too


async def test_retry_after_a_failed_call_does_not_create_a_second_contact(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    create = no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5050))
    calls = no_unmocked_http.post(CALLS).mock(
        side_effect=[amo.problem(502, "Bad Gateway"), amo.call_added(9050, 5050)]
    )

    first = await h.deliver(inbound_end(clock))
    assert first.status == "pending"
    clock.advance(first.due_at - clock() + 1)
    [second] = await h.attempt()

    assert second.status == "done", second.last_error
    assert create.call_count == 1 and calls.call_count == 2


# --- errors --------------------------------------------------------------------------------


async def test_429_plain_body_is_retried_when_amo_says(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.too_many_requests(retry_after="7"))

    job = await h.deliver(inbound_end(clock))

    assert job.status == "pending"
    assert "rate limit" in job.last_error
    assert job.due_at - clock() == pytest.approx(7)


async def test_5xx_is_retried(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.problem(503, "Service Unavailable"))

    job = await h.deliver(inbound_end(clock))

    assert job.status == "pending" and "HTTP 503" in job.last_error


async def test_401_with_long_lived_token_is_dead(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    route = no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.problem(401, "Unauthorized", "Account not found")
    )

    job = await h.deliver(inbound_end(clock))

    assert job.status == "dead"
    assert "token revoked or expired" in job.last_error
    assert TOKEN not in job.last_error
    assert route.call_count == 1  # no refresh without OAuth


async def test_403_holds_the_adapter_and_the_job_is_retried_not_dead(
    open_amo, clock, no_unmocked_http, capsys
):
    h = await open_amo()
    route = no_unmocked_http.get(CONTACTS).mock(return_value=amo.problem(403, "Forbidden"))

    job = await h.deliver(inbound_end(clock))
    assert job.status == "pending", job.last_error  # never dead: the admin lifts the block
    assert "403" in job.last_error and "IP whitelist" in job.last_error
    assert job.due_at - clock() >= 900  # retried after the hold, not sooner
    err = capsys.readouterr().err  # log lines go to stderr
    assert "AMOCRM ANSWERED 403 FORBIDDEN" in err and '"level": "critical"' in err

    # While held, nothing leaves for amo: the next call waits out the same hold.
    later = await h.deliver(sample("call_missed", now=clock()))
    assert later.status == "pending"
    assert route.call_count == 1
    assert later.due_at - clock() == pytest.approx(900, abs=1)

    # The admin lifted the restriction: after the hold both jobs go through.
    route.mock(return_value=amo.contacts_page(amo.contact(4001, ["+79221111123"])))
    no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9001, 4001))
    no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8001))
    clock.advance(901)
    done = await h.attempt()
    assert sorted(j.status for j in done) == ["done", "done"], [j.last_error for j in done]


async def test_400_validation_errors_are_dead_with_the_vendor_message(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    no_unmocked_http.post(CONTACTS).mock(
        return_value=amo.validation_error(
            "custom_fields_values.0.field_id",
            "The value you selected is not a valid choice.",
            "NotSupportedChoice",
        )
    )

    job = await h.deliver(inbound_end(clock))

    assert job.status == "dead"
    assert job.last_error == (
        "POST /api/v4/contacts: HTTP 400: amoCRM rejected the data:"
        " custom_fields_values.0.field_id: The value you selected is not a valid choice."
        " (NotSupportedChoice)"
    )


async def test_400_validation_errors_on_calls_are_dead(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4060, ["+79221111123"]))
    )
    no_unmocked_http.post(CALLS).mock(
        return_value=amo.validation_error(
            "0.duration", "This value should not be blank.", "NotBlank"
        )
    )

    job = await h.deliver(inbound_end(clock))

    assert job.status == "dead"
    assert "0.duration: This value should not be blank. (NotBlank)" in job.last_error


async def test_402_unpaid_account_is_dead(open_amo, clock, no_unmocked_http):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.problem(402, "Payment Required"))

    job = await h.deliver(inbound_end(clock))

    assert job.status == "dead" and "not paid" in job.last_error


# --- check ---------------------------------------------------------------------------------


async def test_check_names_the_account_and_lists_users(open_amo, no_unmocked_http):
    h = await open_amo()
    account = no_unmocked_http.get(f"{amo.BASE}/api/v4/account").mock(return_value=amo.account())
    no_unmocked_http.get(f"{amo.BASE}/api/v4/users").mock(
        side_effect=[
            amo.users_page([(555, "Анна Петрова"), (777, "Иван Сидоров")], has_next=True),
            amo.users_page([(778, "Олег Ким")]),
        ]
    )

    result = await h.adapter.check()

    assert result.account == "ООО Ромашка"
    assert result.users == [("555", "Анна Петрова"), ("777", "Иван Сидоров"), ("778", "Олег Ким")]
    assert account.calls[0].request.headers["authorization"] == f"Bearer {TOKEN}"


# --- settings ------------------------------------------------------------------------------


def test_kommo_is_the_same_adapter():
    assert adapter_class("kommo") is adapter_class("amocrm") is AmoCRMAdapter
    [item] = configured({"kommo": {"base_url": "https://example.kommo.com", "access_token": "t"}})
    assert item.settings.rate_limit == 6.0 and item.settings.unknown_caller == "contact"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"base_url": amo.BASE}, "set access_token"),
        ({"base_url": amo.BASE, "access_token": "t", "client_id": "c"}, "not both"),
        ({"base_url": amo.BASE, "access_token": "t", "users": {"101": "anna"}}, "numbers"),
        ({"base_url": "example.amocrm.ru", "access_token": "t"}, "account's address"),
        ({"base_url": f"{amo.BASE}/api/v4", "access_token": "t"}, "without a path"),
        ({"base_url": amo.BASE, "access_token": "t", "unknown_caller": "ask"}, "unknown_caller"),
        (
            {
                "base_url": amo.BASE,
                "client_id": "c",
                "client_secret": "s",
                "redirect_uri": "https://x",
            },
            "refresh_token or authorization_code",
        ),
    ],
)
def test_settings_are_validated(table, message):
    with pytest.raises(SettingsError, match=message):
        configured({"amocrm": table})


def test_secrets_are_registered_for_redaction():
    s = AmoCRMSettings(
        base_url=amo.BASE,
        client_id="cid",
        client_secret="client-secret-value",
        redirect_uri="https://bridge.example/oauth",
        authorization_code="def50200-auth-code",
    )
    assert set(s.secrets()) == {"client-secret-value", "def50200-auth-code"}


# --- #13 §2: call status, companies, a responsible user for every task --------------------


@pytest.mark.parametrize(
    ("cause", "talked", "status"),
    [
        ("NORMAL_CLEARING", "135", 4),  # had a conversation
        ("USER_BUSY", "0", 7),  # busy
        ("UNALLOCATED_NUMBER", "0", 5),  # the number does not exist: invalid phone number
        ("INVALID_NUMBER_FORMAT", "0", 5),
        ("SUBSCRIBER_ABSENT", "0", 3),  # not available
        ("CALL_REJECTED", "0", 6),  # rejected is "didn't get through", not "wrong number"
        ("NO_ROUTE_DESTINATION", "0", 6),  # no route is ours to fix, not the number's fault
        ("NO_ANSWER", "0", 6),
    ],
)
async def test_hangup_causes_map_to_amos_call_status(
    open_amo, clock, no_unmocked_http, cause, talked, status
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(
        return_value=amo.contacts_page(amo.contact(4001, ["+79502222919"]))
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=amo.call_added(9001, 4001))
    no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8001))
    payload = sample("call_end", now=clock())  # outbound from extension 145
    payload.update(hangup_cause=cause, dialog_duration=talked)

    job = await h.deliver(payload)

    assert job.status == "done", job.last_error
    assert body(calls, 0)[0]["call_status"] == status


async def test_a_company_with_the_number_gets_the_call_not_a_duplicate_contact(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo()
    no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    companies = no_unmocked_http.get(COMPANIES, name="companies").mock(
        return_value=amo.companies_page(
            amo.company(6001, ["+7 912 000-00-01"]),  # found by substring, not this number
            amo.company(6002, ["8 (922) 111-11-23"], owner=556),
        )
    )
    created = no_unmocked_http.post(CONTACTS)
    tasks = no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8001))

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert companies.calls[0].request.url.params["query"] == "9221111123"
    assert not created.called  # no duplicate contact beside the company
    [task] = body(tasks)
    assert (task["entity_type"], task["entity_id"]) == ("companies", 6002)


def unowned_contact_and_tasks(http):
    """A known caller whose contact nobody owns, and amo's tasks endpoint."""
    page = amo.contacts_page(amo.contact(4001, ["+79221111123"], owner=0))
    http.get(CONTACTS).mock(return_value=page)
    return http.post(TASKS).mock(return_value=amo.created("tasks", 8001))


async def test_a_task_without_a_mapped_user_goes_to_the_accounts_user(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo({"users": {}})
    tasks = unowned_contact_and_tasks(no_unmocked_http)

    first = await h.deliver(sample("call_missed", now=clock()))
    second = await h.deliver(sample("call_missed", now=clock(), uuid="second-missed"))

    assert (first.status, second.status) == ("done", "done"), first.last_error
    assert [body(tasks, i)[0]["responsible_user_id"] for i in (0, 1)] == [555, 555]
    account = no_unmocked_http.routes["account"]
    assert account.call_count == 1  # asked once, then remembered


async def test_a_task_without_a_mapped_user_goes_to_default_user_first(
    open_amo, clock, no_unmocked_http
):
    h = await open_amo({"users": {}, "default_user": 901})
    tasks = unowned_contact_and_tasks(no_unmocked_http)

    job = await h.deliver(sample("call_missed", now=clock()))

    assert job.status == "done", job.last_error
    assert body(tasks)[0]["responsible_user_id"] == 901
    assert not no_unmocked_http.routes["account"].called
