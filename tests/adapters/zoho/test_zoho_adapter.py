"""Zoho CRM adapter against a fake Zoho org (adapters/zoho/fake.py) that answers and refuses as
Zoho does; every record request and answer is validated against Zoho's OpenAPI files."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.zoho import fake as zf
from adapters.zoho.adapter import ZohoAdapter
from adapters.zoho.settings import DAY, ZohoSettings
from bridge.adapter import Permanent, make_limiter
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.adapters.zoho.contract import (
    SPECS_MISSING,
    ZohoContract,
    required_in_ci,
)
from tests.conftest import FakeClock

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
ZOHO_HOSTS = r"^(accounts\.zoho(cloud)?|www\.zohoapis)\.[a-z.]+$"
TABLE = {
    "client_id": zf.CLIENT_ID,
    "client_secret": zf.CLIENT_SECRET,
    "refresh_token": zf.REFRESH_TOKEN,
    "accounts_url": zf.ACCOUNTS,
}


# -- the contract: every record request and answer of this module is validated ----------------


@pytest.fixture(scope="module")
def contract() -> ZohoContract | None:
    from tests.adapters.zoho.contract import SPEC_DIR

    if not SPEC_DIR.is_dir():
        if required_in_ci():
            pytest.fail(SPECS_MISSING)
        return None
    return ZohoContract()


@pytest.fixture(autouse=True)
def validate_zoho_traffic(no_unmocked_http, contract):
    yield
    if contract is None:
        return
    for call in no_unmocked_http.calls:
        if ZohoContract.applies_to(call.request):
            contract.validate(call.request)
            contract.validate_answer(call.request, call.response)


# -- harness --------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def org(no_unmocked_http, clock) -> zf.ZohoOrg:
    zoho = zf.ZohoOrg(clock=clock)
    no_unmocked_http.route(host__regex=ZOHO_HOSTS).mock(side_effect=zoho.respx)
    return zoho


@pytest.fixture
async def open_harness(tmp_path, clock):
    made: list[AdapterHarness] = []

    async def open_(**table: Any) -> AdapterHarness:
        h = await AdapterHarness.open(
            tmp_path,
            "zoho",
            {**TABLE, **table},
            clock=clock,
            schedule={"locale": "en", "timezone": "Europe/Berlin"},
        )
        made.append(h)
        return h

    yield open_
    for h in made:
        await h.close()


def sent(org: zf.ZohoOrg, method: str, path: str) -> list[httpx.Request]:
    return [r for r in org.requests if r.method == method and r.url.path == path]


def body(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


ANNA_PHONE = "+7 (950) 222-29-19"


# -- settings -------------------------------------------------------------------------------


def test_settings_keys_defaults_and_credit_budget():
    with pytest.raises(ValueError, match="refresh_token"):
        ZohoSettings(client_id="x", client_secret="y")
    s = ZohoSettings(client_id="1000.X", client_secret="s", refresh_token="r")
    assert s.accounts_url == "https://accounts.zoho.com"
    assert s.default_api_domain == "https://www.zohoapis.com"
    assert sorted(s.secrets()) == ["r", "s"]
    # Standard edition, 1 licence: 50,000 + 250 credits per rolling 24 h, as a 24 h window.
    assert s.rate_window == 86400 and s.rate_limit * 86400 == pytest.approx(50_250)
    # ... a budget, not a pace: the whole day's credits may go at once (not 1.7 s apart).
    assert s.rate_burst == 50_250 and make_limiter(s.rate_limit, s.rate_burst, DAY).burst > 50_000
    eu = ZohoSettings(
        client_id="1",
        client_secret="s",
        refresh_token="r",
        accounts_url="https://accounts.zoho.eu/",
    )
    assert eu.accounts_url == "https://accounts.zoho.eu"
    assert eu.default_api_domain == "https://www.zohoapis.eu"
    big = ZohoSettings(
        client_id="1", client_secret="s", refresh_token="r", edition="standard", user_licenses=999
    )
    assert big.daily_credits == 100_000  # the edition's maximum
    free = ZohoSettings(client_id="1", client_secret="s", refresh_token="r", edition="free")
    assert free.rate_limit * 86400 == pytest.approx(5000)
    mine = ZohoSettings(client_id="1", client_secret="s", refresh_token="r", rate_limit=2)
    assert mine.rate_limit == 2 and mine.rate_window == 0
    with pytest.raises(ValueError, match="https"):
        ZohoSettings(
            client_id="1", client_secret="s", refresh_token="r", accounts_url="http://zoho.eu"
        )


def test_registry_builds_the_adapter():
    from bridge.registry import configured

    [item] = configured({"crm": {"type": "zoho", **TABLE}})
    assert item.cls is ZohoAdapter


# -- find, log ------------------------------------------------------------------------------


async def test_known_contact_outbound_call_is_logged(open_harness, org, clock):
    contact = org.add("Contacts", Last_Name="Petrova", First_Name="Anna", Mobile=ANNA_PHONE)
    org.records["Contacts"][contact]["Owner"] = {"id": zf.AGENT_ID, "name": "Anna Petrova"}
    h = await open_harness()
    payload = sample("call_end", uuid="z-known", now=clock())
    payload["download_url"] = "https://records.onpbx.ru/z-known.mp3"
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error
    [call] = org.created("Calls")
    assert job.result == f"call:{call['id']}"

    [token] = sent(org, "POST", "/oauth/v2/token")
    assert token.url.host == "accounts.zoho.eu" and not token.url.query
    assert dict(httpx.QueryParams(token.content.decode())) == {
        "refresh_token": zf.REFRESH_TOKEN,
        "client_id": zf.CLIENT_ID,
        "client_secret": zf.CLIENT_SECRET,
        "grant_type": "refresh_token",
    }
    [search] = sent(org, "GET", "/crm/v8/Contacts/search")
    assert search.url.host == "www.zohoapis.eu"  # the token answer's api_domain
    assert search.headers["authorization"].startswith("Zoho-oauthtoken 1000.")
    assert dict(search.url.params) == {"phone": "+79502222919"}

    [write] = sent(org, "POST", "/crm/v8/Calls")
    record = body(write)["data"][0]
    assert record == {
        "Subject": "Outbound call to +7 950 222-29-19",
        "Call_Type": "Outbound",
        "Call_Start_Time": "2026-05-28T20:24:11+00:00",
        "Call_Duration": "02:15",  # talk time, mm:ss
        "Dialled_Number": "+79502222919",
        "Voice_Recording__s": "https://records.onpbx.ru/z-known.mp3",
        "Owner": {"id": zf.AGENT_ID},  # the contact's owner
        "Who_Id": {"id": contact},
        "Description": record["Description"],
    }
    assert "Talked" in record["Description"] and "NORMAL_CLEARING" in record["Description"]
    assert "Recording: https://records.onpbx.ru/z-known.mp3" in record["Description"]


async def test_a_lead_is_the_related_record_not_who_id(open_harness, org, clock):
    lead = org.add("Leads", Last_Name="Lead", Company="Acme", Phone="89502222919")
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="z-lead", now=clock()))
    assert job.status == "done", job.last_error
    # Contacts searched by both forms first, then Leads.
    assert [r.url.params["phone"] for r in sent(org, "GET", "/crm/v8/Contacts/search")] == [
        "+79502222919",
        "89502222919",
    ]
    record = body(sent(org, "POST", "/crm/v8/Calls")[0])["data"][0]
    assert record["What_Id"] == {"id": lead} and record["$se_module"] == "Leads"
    assert "Who_Id" not in record


async def test_unconfirmed_hits_are_ignored(open_harness, org, clock):
    # Same digits in another country's number is not this caller.
    org.add("Contacts", Last_Name="Other", Phone="+79502222918")
    h = await open_harness(search_leads=False, create_contacts="never")
    job = await h.deliver(sample("call_end", uuid="z-none", now=clock()))
    assert job.status == "done", job.last_error
    record = body(sent(org, "POST", "/crm/v8/Calls")[0])["data"][0]
    assert "Who_Id" not in record and "What_Id" not in record


async def test_field_metadata_is_read_once_and_missing_fields_are_left_out(
    open_harness, org, clock
):
    org.drop_field("Calls", "Voice_Recording__s")
    org.drop_field("Calls", "Dialled_Number")
    h = await open_harness(create_contacts="never")
    for n in range(3):
        payload = sample("call_end", uuid=f"z-meta{n}", now=clock())
        payload["download_url"] = f"https://records.onpbx.ru/{n}.mp3"
        assert (await h.deliver(payload)).status == "done"
    metadata = sent(org, "GET", "/crm/v8/settings/fields")
    assert [r.url.params["module"] for r in metadata] == ["Calls"]
    record = body(sent(org, "POST", "/crm/v8/Calls")[-1])["data"][0]
    assert "Voice_Recording__s" not in record and "Dialled_Number" not in record
    assert "Recording: https://records.onpbx.ru/2.mp3" in record["Description"]


async def unanswered_inbound(h: AdapterHarness, org: zf.ZohoOrg, clock: FakeClock) -> Any:
    """An inbound call nobody took, delivered; the Calls record written for it."""
    payload = sample("call_end", uuid="z-unanswered", now=clock())
    payload.update(direction="inbound", dialog_duration="0", hangup_cause="NO_ANSWER")
    payload.update(caller=payload["callee"], callee="145")
    assert (await h.deliver(payload)).status == "done"
    return body(sent(org, "POST", "/crm/v8/Calls")[-1])["data"][0]


async def test_inbound_unanswered_call_is_missed_when_the_org_has_that_type(
    open_harness, org, clock
):
    record = await unanswered_inbound(await open_harness(create_contacts="never"), org, clock)
    assert record["Call_Type"] == "Missed" and record["Call_Duration"] == "00:00"
    assert record["Call_Result"] == "No response/Busy"
    assert record["Caller_ID"] == "+79502222919"


async def test_without_missed_in_the_picklist_it_is_inbound(open_harness, org, clock):
    spec = org.field_of("Calls", "Call_Type")
    spec["pick_list_values"] = zf.picklist("Outbound", "Inbound")
    org.field_of("Calls", "Call_Result")["pick_list_values"] = zf.picklist("Interested")
    record = await unanswered_inbound(await open_harness(create_contacts="never"), org, clock)
    assert record["Call_Type"] == "Inbound"
    assert "Call_Result" not in record  # the org's picklist has no such value


# -- create, tasks ---------------------------------------------------------------------------


async def test_missed_call_from_unknown_caller_creates_lead_then_task(open_harness, org, clock):
    h = await open_harness(default_user=zf.AGENT_ID, task_due_minutes=30)
    job = await h.deliver(sample("call_missed", uuid="z-missed", now=clock()))
    assert job.status == "done", job.last_error
    [lead] = org.created("Leads")
    [task] = org.created("Tasks")
    assert job.result == f"task:{task['id']}"
    assert body(sent(org, "POST", "/crm/v8/Leads")[0])["data"][0] == {
        "Last_Name": "Client +7 922 111-11-23",
        "Phone": "+79221111123",
        "Company": "Client +7 922 111-11-23",
        "Owner": {"id": zf.AGENT_ID},
    }
    record = body(sent(org, "POST", "/crm/v8/Tasks")[0])["data"][0]
    assert record == {
        "Subject": record["Subject"],
        "Due_Date": "2026-05-28",
        "Description": record["Description"],
        "Status": "Not Started",
        "Priority": "High",
        # now + 30 min, in the schedule's zone (Berlin, +02:00 in May)
        "Remind_At": {
            "ALARM": "FREQ=NONE;ACTION=EMAILANDPOPUP;TRIGGER=DATE-TIME:2026-05-28T22:56:40+02:00"
        },
        "Owner": {"id": zf.AGENT_ID},
        "What_Id": {"id": lead["id"]},
        "$se_module": "Leads",
    }
    assert record["Subject"].startswith("Call back: missed call from +7 922 111-11-23")


async def test_new_record_module_contacts(open_harness, org, clock):
    h = await open_harness(new_record_module="Contacts", search_leads=False)
    job = await h.deliver(sample("call_missed", uuid="z-newc", now=clock()))
    assert job.status == "done", job.last_error
    [contact] = org.created("Contacts")
    assert "Company" not in contact and contact["Phone"] == "+79221111123"
    record = body(sent(org, "POST", "/crm/v8/Tasks")[0])["data"][0]
    assert record["Who_Id"] == {"id": contact["id"]} and "$se_module" not in record


async def test_duplicate_data_on_create_reuses_the_record_zoho_names(open_harness, org, clock):
    # Leads are not searched here; the org keeps lead phones unique: the create is refused
    # with the existing lead, which the task is then linked to.
    existing = org.add("Leads", Last_Name="Known", Company="X", Phone="+79221111123")
    org.unique["Leads"] = {"Phone"}
    h = await open_harness(search_leads=False)
    job = await h.deliver(sample("call_missed", uuid="z-dup", now=clock()))
    assert job.status == "done", job.last_error
    assert len(org.created("Leads")) == 1
    record = body(sent(org, "POST", "/crm/v8/Tasks")[0])["data"][0]
    assert record["What_Id"] == {"id": existing}


async def test_retry_after_a_failed_task_reuses_the_created_lead(open_harness, org, clock):
    h = await open_harness()
    org.throttle(0)
    first = True
    original = org.handle

    def flaky(method: str, url: str, headers: dict[str, str], content: bytes) -> zf.Answer:
        nonlocal first
        if first and url.endswith("/crm/v8/Tasks"):
            first = False
            return zf.error("INTERNAL_ERROR", "Internal server error occurred.", 500)
        return original(method, url, headers, content)

    org.handle = flaky  # type: ignore[method-assign]
    job = await h.deliver(sample("call_missed", uuid="z-retry", now=clock()))
    assert job.status == "pending" and "INTERNAL_ERROR" in (job.last_error or "")
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "done", job.last_error
    assert len(org.created("Leads")) == 1 and len(org.created("Tasks")) == 1


async def test_the_same_call_delivered_twice_creates_one_call(open_harness, org, clock):
    h = await open_harness(create_contacts="never")
    payload = sample("call_end", uuid="z-twice", now=clock())
    job = await h.deliver(payload)
    assert job.status == "done"
    await h.store(payload)
    assert await h.attempt() == []
    await h.worker.process(job)
    assert len(org.created("Calls")) == 1


async def test_call_id_field_makes_writes_upserts(open_harness, org, clock):
    # A custom unique field in Calls and Tasks holding the PBX call id: a write the bridge
    # could not book (crash) and sends again updates the same record.
    for module in ("Calls", "Tasks"):
        org.fields[module].append(zf._f("PBX_Call_ID", custom_field=True))
        org.unique[module] = {"PBX_Call_ID"}
    h = await open_harness(create_contacts="never", call_id_field="PBX_Call_ID")
    log = await _call_log(h, "z-upsert", clock)
    first = await h.adapter.log_call(log)
    again = await h.adapter.log_call(log)
    assert first == again and len(org.created("Calls")) == 1
    [upsert, _] = sent(org, "POST", "/crm/v8/Calls/upsert")
    assert body(upsert)["duplicate_check_fields"] == ["PBX_Call_ID"]
    assert body(upsert)["data"][0]["PBX_Call_ID"] == "onlinepbx.ru/z-upsert"


async def _call_log(h: AdapterHarness, uuid: str, clock: FakeClock) -> Any:
    from bridge.adapter import CallLog
    from bridge.call import build_call
    from bridge.phones import NumberParser
    from bridge.store.state import CallState

    call = build_call(sample("call_end", uuid=uuid, now=clock()), NumberParser("RU"))
    state = CallState(h.db, "zoho", f"{call.domain}/{call.uuid}")
    return CallLog(call, None, None, "title", "Talked", state)


# -- what the org refuses ----------------------------------------------------------------------


async def test_an_org_mandatory_field_the_bridge_cannot_fill_is_dead_with_the_field(
    open_harness, org, clock
):
    org.fields["Calls"].append(zf._f("Region__c", system_mandatory=True, custom_field=True))
    h = await open_harness(create_contacts="never")
    job = await h.deliver(sample("call_end", uuid="z-mand", now=clock()))
    assert job.status == "dead"
    assert "MANDATORY_NOT_FOUND" in job.last_error and "Region__c" in job.last_error
    assert "make it optional" in job.last_error
    notes = (await h.adapter.check()).notes
    assert any("Calls: mandatory field(s) Region__c" in n for n in notes)


async def test_invalid_data_names_the_field(open_harness, org, clock):
    h = await open_harness(create_contacts="never", users={"145": "4150868000000999999"})
    job = await h.deliver(sample("call_end", uuid="z-owner", now=clock()))
    assert job.status == "dead"
    assert "INVALID_DATA" in job.last_error and "field Owner" in job.last_error
    assert zf.CLIENT_SECRET not in job.last_error and zf.REFRESH_TOKEN not in job.last_error


async def test_an_expired_access_token_is_refreshed_once(open_harness, org, clock):
    h = await open_harness(create_contacts="never")
    assert (await h.deliver(sample("call_end", uuid="z-t1", now=clock()))).status == "done"
    org.expire_tokens()  # revoked early: the stored pair still looks valid
    assert (await h.deliver(sample("call_end", uuid="z-t2", now=clock()))).status == "done"
    assert len(sent(org, "POST", "/oauth/v2/token")) == 2
    stored = json.loads(await h.adapter.ctx.state.get("oauth") or "{}")
    assert stored["extra"] == {"api_domain": zf.API_DOMAIN}
    assert stored["refresh_token"] == zf.REFRESH_TOKEN  # Zoho does not rotate it


async def test_a_revoked_refresh_token_is_dead_with_a_fix(open_harness, org, clock):
    org.refresh_tokens.clear()
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="z-revoked", now=clock()))
    assert job.status == "dead" and "invalid_code" in job.last_error
    assert "accounts_url" in job.last_error and zf.REFRESH_TOKEN not in job.last_error


async def test_the_wrong_data_centre_is_named(open_harness, org, clock):
    # The org lives in the EU; the default accounts server is the US one.
    h = await open_harness(accounts_url="https://accounts.zoho.com")
    job = await h.deliver(sample("call_end", uuid="z-dc", now=clock()))
    assert job.status == "dead"
    assert "https://accounts.zoho.com (US data centre)" in job.last_error
    [token] = sent(org, "POST", "/oauth/v2/token")
    assert token.url.host == "accounts.zoho.com"


async def test_a_token_on_another_data_centres_api_is_refused(open_harness, org, clock):
    h = await open_harness(api_domain="https://www.zohoapis.com", create_contacts="never")
    job = await h.deliver(sample("call_end", uuid="z-apidc", now=clock()))
    assert job.status == "dead" and "INVALID_TOKEN" in job.last_error
    assert "data centre" in job.last_error


async def test_too_many_token_refreshes_wait_ten_minutes(open_harness, org, clock):
    for _ in range(zf.TOKENS_PER_TEN_MINUTES):
        org._issued.append((zf.REFRESH_TOKEN, clock()))
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="z-blocked", now=clock()))
    assert job.status == "pending" and "10 token refreshes per 10 minutes" in job.last_error
    assert job.due_at - clock() == pytest.approx(600.0)


async def test_429_is_retried_later(open_harness, org, clock):
    h = await open_harness(create_contacts="never")
    org.throttle(1)
    job = await h.deliver(sample("call_end", uuid="z-429", now=clock()))
    assert job.status == "pending" and "TOO_MANY_REQUESTS" in job.last_error
    assert job.due_at - clock() >= 30
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "done"


async def test_daily_credits_exhausted_is_retried_not_dead(open_harness, org, clock):
    org.credits = 2
    h = await open_harness(create_contacts="never")
    job = await h.deliver(sample("call_end", uuid="z-credits", now=clock()))
    assert job.status == "pending" and "HTTP 429" in job.last_error


async def test_scope_mismatch_is_dead_with_the_scopes_to_add(open_harness, org, clock):
    org.missing_scopes = {"ZohoCRM.settings.fields.READ"}
    h = await open_harness(create_contacts="never")
    job = await h.deliver(sample("call_end", uuid="z-scope", now=clock()))
    assert job.status == "dead" and "OAUTH_SCOPE_MISMATCH" in job.last_error
    assert "ZohoCRM.settings.fields.READ" in job.last_error


async def test_gateway_errors_without_envelope_are_retried(open_harness, org, clock):
    h = await open_harness(create_contacts="never")
    original = org.handle

    def gateway(method: str, url: str, headers: dict[str, str], content: bytes) -> zf.Answer:
        if "/crm/v8/" in url:
            return zf.Answer(503, text="<html>Service Unavailable</html>")
        return original(method, url, headers, content)

    org.handle = gateway  # type: ignore[method-assign]
    job = await h.deliver(sample("call_end", uuid="z-503", now=clock()))
    assert job.status == "pending" and "HTTP 503" in job.last_error


# -- check ----------------------------------------------------------------------------------


async def test_check_names_the_org_lists_users_and_what_is_missing(open_harness, org):
    org.drop_field("Calls", "Voice_Recording__s")
    org.users.append({"id": "4150868000000225100", "full_name": "Gone", "status": "disabled"})
    h = await open_harness()
    result = await h.adapter.check()
    assert result.account == "Zoho CRM org Zylker (id 20099999999, enterprise)"
    assert result.users == [
        (zf.ADMIN_ID, "Patricia Boyle <patricia@zylker.com>"),
        (zf.AGENT_ID, "Anna Petrova <anna@zylker.com>"),
    ]
    assert "API at https://www.zohoapis.eu (EU data centre)" in result.notes
    assert "Calls has no field Voice_Recording__s: it is left out" in result.notes
    assert "recording links go into the call's Description" in result.notes
    [users] = sent(org, "GET", "/crm/v8/users")
    assert users.url.params["type"] == "ActiveUsers"


async def test_check_with_a_bad_client_fails_clearly(open_harness, org):
    h = await open_harness(client_secret="wrong-secret")
    with pytest.raises(Permanent, match="invalid_client") as err:
        await h.adapter.check()
    assert "wrong-secret" not in err.value.reason


# -- last: the module's traffic covered every record operation the adapter uses --------------


def test_zz_every_record_operation_was_validated(contract):
    if contract is None:
        pytest.skip(SPECS_MISSING)
    assert set(contract.validated) >= {
        "Search Records request",
        "Search Records answer",
        "Create Records request",
        "Create Records answer",
        "Upsert Records request",
        "Upsert Records answer",
    }
