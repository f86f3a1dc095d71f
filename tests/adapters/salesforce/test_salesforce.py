"""Salesforce adapter against the fake org of ``adapters.salesforce.fake``: the client
credentials token and its instance URL, SOSL by phone, Task fields, Salesforce's error
arrays (session refresh, request limit, field errors)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from adapters.salesforce.adapter import SalesforceAdapter
from adapters.salesforce.fake import CLIENT_ID, CLIENT_SECRET, FakeSalesforce
from adapters.salesforce.settings import SalesforceSettings
from bridge.adapter import Permanent
from bridge.samples import sample
from bridge.settings import SettingsError
from tests.conftest import FakeClock

LOGIN = "https://acme.my.salesforce.com"
NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
ANNA = "005000000000001AAA"
IVAN = "005000000000002AAA"
TASKS = "/services/data/v62.0/sobjects/Task/"


def posted(org: FakeSalesforce, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in org.requests if r.url.path == path]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def org(no_unmocked_http) -> FakeSalesforce:
    fake = FakeSalesforce()
    no_unmocked_http.route(host="acme.my.salesforce.com").mock(side_effect=fake)
    return fake


@pytest.fixture
def open_harness(open_adapter, clock):
    def open_(**table: Any):
        return open_adapter(
            "salesforce",
            {"login_url": LOGIN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **table},
            clock=clock,
        )

    return open_


def test_settings_keys():
    s = SalesforceSettings(client_id="id", client_secret="s3cret")
    assert s.login_url == "https://login.salesforce.com" and s.api_version == "62.0"
    assert s.create_as == "Lead" and s.secrets() == ["s3cret"]
    with pytest.raises(ValueError, match="bare https URL"):
        SalesforceSettings(client_id="id", client_secret="s", login_url="acme.my.salesforce.com/x")


def test_registry_builds_the_adapter():
    from bridge.registry import configured

    [item] = configured({"salesforce": {"client_id": "id", "client_secret": "s"}})
    assert item.cls is SalesforceAdapter
    with pytest.raises(SettingsError, match="client_secret"):
        configured({"salesforce": {"client_id": "id"}})


async def test_known_contact_call_is_a_completed_call_task(open_harness, org, clock):
    lead = org.add("Lead", Name="Old Lead", Phone="+79502222919", OwnerId=IVAN)
    who = org.add("Contact", Name="Olga Ivanova", Phone="+7 (950) 222-29-19", OwnerId=ANNA)
    org.add("Contact", Name="Someone Else", Phone="+7 950 222-29-18", OwnerId=ANNA)
    h = await open_harness(users={"145": IVAN})
    payload = sample("call_end", uuid="u-known", now=clock())  # outbound from ext 145
    payload["download_url"] = "https://records.onpbx.ru/u-known.mp3"
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error

    [token] = [r for r in org.requests if r.url.path == "/services/oauth2/token"]
    assert parse_qs(token.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    [search] = [r for r in org.requests if r.url.path.endswith("/search/")]
    assert search.headers["authorization"].startswith("Bearer 00D")
    assert search.url.params["q"] == (
        "FIND {79502222919 OR 9502222919} IN PHONE FIELDS RETURNING"
        " Contact(Id, Name, OwnerId, Phone, MobilePhone, CreatedDate ORDER BY CreatedDate ASC"
        " LIMIT 20), Lead(Id, Name, OwnerId, Phone, MobilePhone, CreatedDate WHERE IsConverted"
        " = false ORDER BY CreatedDate ASC LIMIT 20)"
    )
    [task] = org.of("Task")
    assert job.result == f"task:{task['Id']}"
    assert {k: task[k] for k in posted(org, TASKS)[0]} == {
        "Subject": "Outbound call to +7 950 222-29-19",
        "Status": "Completed",
        "Priority": "Normal",
        "TaskSubtype": "Call",
        "CallType": "Outbound",
        "CallDurationInSeconds": 135,
        "CallObject": "u-known",
        "CallDisposition": "Talked",
        "ActivityDate": "2026-05-28",  # 23:24 in Moscow
        "Description": task["Description"],
        "WhoId": who,  # the Contact wins over the older Lead
        "OwnerId": IVAN,  # the extension's user
    }
    assert "https://records.onpbx.ru/u-known.mp3" in task["Description"]
    assert lead != who


async def test_a_retry_finds_the_task_it_already_made(open_harness, org, clock):
    org.add("Contact", Name="Olga", Phone="79502222919", OwnerId=ANNA)
    org.add("Task", CallObject="u-again", TaskSubtype="Call", Status="Completed")
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-again", now=clock()))
    assert job.status == "done"
    assert len(org.of("Task")) == 1 and not posted(org, TASKS)
    [query] = [r for r in org.requests if r.url.path.endswith("/query/")]
    assert query.url.params["q"] == (
        "SELECT Id FROM Task WHERE CallObject = 'u-again' AND TaskSubtype = 'Call' LIMIT 1"
    )


@pytest.mark.parametrize("create_as", ["Lead", "Contact"])
async def test_missed_call_from_a_new_number_creates_per_policy_and_an_open_task(
    open_harness, org, clock, create_as
):
    h = await open_harness(create_as=create_as, default_user=ANNA)
    job = await h.deliver(sample("call_missed", uuid="u-new", now=clock()))
    assert job.status == "done", job.last_error
    [created] = org.of(create_as)
    assert created["Phone"] == "+79221111123" and created["OwnerId"] == ANNA
    assert ("Company" in created) == (create_as == "Lead")
    [task] = org.of("Task")
    assert task["WhoId"] == created["Id"] and task["OwnerId"] == ANNA
    assert task["Status"] == "Not Started" and task["TaskSubtype"] == "Task"
    assert task["IsReminderSet"] is True and task["CallObject"] == "u-new"
    # due 15 min after the call, 23:41:40 Moscow: the date there, the reminder in UTC
    assert task["ActivityDate"] == "2026-05-28"
    assert task["ReminderDateTime"] == "2026-05-28T20:41:40.000Z"


async def test_expired_session_gets_one_new_token(open_harness, org, clock):
    org.add("Contact", Name="Olga", Phone="79502222919")
    h = await open_harness()
    assert (await h.deliver(sample("call_end", uuid="u-1", now=clock()))).status == "done"
    org.expire_tokens()  # the org's session timeout passed
    job = await h.deliver(sample("call_end", uuid="u-2", now=clock()))
    assert job.status == "done", job.last_error
    assert org.tokens_issued == 2


async def test_a_refused_session_twice_is_dead(open_harness, org, clock):
    org.canned["/services/data/v62.0/search/"] = httpx.Response(
        401, json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    )
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-401", now=clock()))
    assert job.status == "dead" and "HTTP 401 INVALID_SESSION_ID" in job.last_error
    assert org.tokens_issued == 2  # one new token, one resend, then the fix


async def test_request_limit_waits_long(open_harness, org, clock):
    org.requests_left = 0
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-limit", now=clock()))
    assert job.status == "pending" and "REQUEST_LIMIT_EXCEEDED" in job.last_error
    assert job.due_at >= clock() + 3600


async def test_bad_picklist_value_is_dead_naming_the_field(open_harness, org, clock):
    h = await open_harness(lead_source="Cold Call", create_contacts="always")
    job = await h.deliver(sample("call_end", uuid="u-pick", now=clock()))
    assert job.status == "dead"
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in job.last_error
    assert "(fields: LeadSource)" in job.last_error


async def test_an_orgs_own_required_field_is_dead_naming_it(open_harness, org, clock):
    # Orgs make their own fields required; Salesforce names them in the error array.
    org.canned["/services/data/v62.0/sobjects/Lead/"] = httpx.Response(
        400,
        json=[
            {
                "message": "Required fields are missing: [Region__c]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["Region__c"],
            }
        ],
    )
    h = await open_harness(create_contacts="always")
    job = await h.deliver(sample("call_end", uuid="u-req", now=clock()))
    assert job.status == "dead" and job.attempts == 1
    assert "REQUIRED_FIELD_MISSING: Required fields are missing: [Region__c]" in job.last_error
    assert "(fields: Region__c)" in job.last_error


async def test_bad_owner_is_dead_naming_the_field(open_harness, org, clock):
    org.add("Contact", Name="Olga", Phone="79502222919")
    h = await open_harness(users={"145": "005000000000999AAA"})
    job = await h.deliver(sample("call_end", uuid="u-owner", now=clock()))
    assert job.status == "dead" and "(fields: OwnerId)" in job.last_error


async def test_wrong_secret_is_dead_with_the_fix(open_harness, org, clock):
    h = await open_harness(client_secret="not-the-consumer-secret")
    job = await h.deliver(sample("call_end", uuid="u-secret", now=clock()))
    assert job.status == "dead" and job.attempts == 1
    assert "HTTP 400: Salesforce refused the client credentials" in job.last_error
    assert "(invalid_client; invalid client credentials): check client_id" in job.last_error
    assert "not-the-consumer-secret" not in job.last_error


async def test_login_salesforce_com_refusal_names_my_domain(open_harness, no_unmocked_http, clock):
    no_unmocked_http.post("https://login.salesforce.com/services/oauth2/token").mock(
        return_value=httpx.Response(
            400,
            json={
                "error": "unsupported_grant_type",
                "error_description": "request not supported on this domain",
            },
        )
    )
    h = await open_harness(login_url="https://login.salesforce.com")
    job = await h.deliver(sample("call_end", uuid="u-domain", now=clock()))
    assert job.status == "dead" and "My Domain" in job.last_error


async def test_check_lists_every_user_and_the_missing_call_fields(open_harness, org):
    org.users = [
        {"Id": f"005{i:012d}AAA", "Name": f"U{i:03d}", "Username": f"u{i}@a.io", "Email": None}
        for i in range(5)
    ]
    org.page_size = 2  # three batches: nextRecordsUrl followed
    org.hidden_task_fields = {"CallObject"}
    h = await open_harness()
    result = await h.adapter.check()
    assert [u[1] for u in result.users] == [f"U{i:03d} <u{i}@a.io>" for i in range(5)]
    assert "Acme" in result.account and "Enterprise Edition" in result.account
    assert any("CallObject" in n for n in result.notes)
    assert any("API requests left today" in n for n in result.notes)


async def test_check_fails_on_wrong_credentials(open_harness, org):
    h = await open_harness(client_id="someone-else")
    with pytest.raises(Permanent, match="invalid_client_id"):
        await h.adapter.check()
