"""Pipedrive adapter: behaviour with Pipedrive's real answers, and every request the suite
sends validated against Pipedrive's official OpenAPI files (tests/adapters/pipedrive/contract.py;
Pipedrive's answers from adapters/pipedrive/fake.py)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from adapters.pipedrive.adapter import PipedriveAdapter
from adapters.pipedrive.fake import (
    activity,
    call_log,
    error,
    ok,
    person,
    search_answer,
    search_item,
)
from adapters.pipedrive.settings import PipedriveSettings
from bridge.adapter import Permanent
from bridge.samples import sample
from bridge.settings import SettingsError
from bridge.testing import AdapterHarness
from tests.adapters.pipedrive.contract import SPEC_DIR, ContractViolation, PipedriveContract
from tests.conftest import FakeClock

API = "https://api.pipedrive.com"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
SEARCH = f"{API}/api/v2/persons/search"
PERSONS = f"{API}/api/v2/persons"
ACTIVITIES = f"{API}/api/v2/activities"
CALL_LOGS = f"{API}/v1/callLogs"
NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
SPECS_MISSING = (
    f"Pipedrive OpenAPI files not found at {SPEC_DIR} (shared/ beside the repo, or set"
    " PBX_BRIDGE_CRM_SPECS)"
)


def specs_missing() -> None:
    """Skip on a developer's machine without the specs; in CI (``CI`` set) that is a failure,
    so the contract test cannot silently stop running."""
    if os.environ.get("CI"):
        pytest.fail(SPECS_MISSING + "; CI must run the Pipedrive contract test")
    pytest.skip(SPECS_MISSING)


# -- the contract: every request any test here sends is validated -------------------------


@pytest.fixture(scope="module")
def contract() -> PipedriveContract | None:
    """Loaded once for the module (the two files are 2.8 MB of YAML)."""
    return PipedriveContract() if SPEC_DIR.is_dir() else None


@pytest.fixture(autouse=True)
def validate_sent_requests(no_unmocked_http, contract):
    """After each test: every request sent to Pipedrive's API must match the spec."""
    yield
    if contract is None:
        return
    for call in no_unmocked_http.calls:
        if PipedriveContract.applies_to(call.request):
            contract.validate(call.request)


@pytest.fixture
def specs(contract) -> PipedriveContract:
    if contract is None:
        specs_missing()
    return contract


def request(method: str, path: str, body: Any = None, **params: str) -> httpx.Request:
    return httpx.Request(
        method,
        f"{API}{path}",
        params=params or None,
        json=body,
        headers={"x-api-token": TOKEN},
    )


GOOD_CALL_LOG = {
    "outcome": "connected",
    "to_phone_number": "+79502222919",
    "start_time": "2026-05-28T20:24:11Z",
    "end_time": "2026-05-28T20:26:40Z",
}


def test_contract_accepts_a_valid_call_log(specs):
    assert specs.validate(request("POST", "/v1/callLogs", GOOD_CALL_LOG)) == "addCallLog"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        # The spec's prose format: its schema (format: date-time) rejects it.
        (
            request("POST", "/v1/callLogs", {**GOOD_CALL_LOG, "start_time": "2026-05-28 20:24:11"}),
            "date-time",
        ),
        (request("POST", "/v1/callLogs", {**GOOD_CALL_LOG, "outcome": "answered"}), "answered"),
        (request("POST", "/v1/callLogs", {**GOOD_CALL_LOG, "duration": 135}), "string"),
        (request("POST", "/v1/callLogs", {**GOOD_CALL_LOG, "recording": "x"}), "recording"),
        (request("POST", "/v1/callLogs", {"outcome": "busy"}), "required"),
        (request("POST", "/api/v2/activities", {"done": "no"}), "boolean"),
        (request("GET", "/api/v2/persons/search", term="99", fields="phone", exact="1"), "exact"),
        (request("GET", "/api/v2/persons/search", fields="phone"), "term"),
        (request("GET", "/api/v2/persons/search", term="99", fields="phones"), "phones"),
        (request("POST", "/api/v2/callLogs", GOOD_CALL_LOG), "no such operation"),
        (httpx.Request("GET", f"{API}/v1/users"), "x-api-token"),
    ],
)
def test_contract_rejects_mismatches(specs, bad, needle):
    with pytest.raises(ContractViolation, match=needle):
        specs.validate(bad)


def test_specs_are_present_for_the_contract_test(contract):
    if contract is None:
        specs_missing()
    # Each operation the adapter uses exists, with the token cost the docs quote.
    costs = {
        ("/api/v2", "/persons/search", "get"): 20,
        ("/api/v2", "/persons", "post"): 5,
        ("/api/v2", "/activities", "post"): 5,
        ("/v1", "/callLogs", "post"): 10,
        ("/v1", "/users", "get"): 20,
        ("/v1", "/users/me", "get"): 2,
    }
    for (prefix, path, method), cost in costs.items():
        assert contract.raw[prefix]["paths"][path][method]["x-token-cost"] == cost


# -- harness --------------------------------------------------------------------------------


@pytest.fixture
def clock(pbx_clock: FakeClock) -> FakeClock:
    assert pbx_clock() == NOW  # the plugin's clock starts where the samples' times are
    return pbx_clock


@pytest.fixture
def open_harness(pbx_harness):
    """The plugin's harness (closed after the test) with this suite's table defaults."""

    async def open_(**table: Any) -> AdapterHarness:
        return await pbx_harness(
            "pipedrive", {"api_token": TOKEN, "rate_limit": 0, **table}, schedule={"locale": "en"}
        )

    return open_


DEALS = f"{API}/api/v2/deals"
RECORDING = "https://records.onpbx.ru/p-known.mp3"
AUDIO = b"ID3\x03\x00fake-mp3-frames" * 64


@pytest.fixture(autouse=True)
def deals(no_unmocked_http):
    """A found person has no open deal unless a test says otherwise (the route is returned
    so a test can answer differently)."""
    # Any company domain (OAuth tokens work on their own api_domain).
    return no_unmocked_http.get(url__regex=r"^https://[^/]+/api/v2/deals").mock(
        return_value=ok([], additional_data={})
    )


@pytest.fixture(autouse=True)
def recordings(no_unmocked_http):
    """onlinePBX's recording host, and Pipedrive's call-log recording upload."""
    audio = no_unmocked_http.get(RECORDING).mock(
        return_value=httpx.Response(200, content=AUDIO, headers={"content-type": "audio/mpeg"})
    )
    upload = no_unmocked_http.post(url__regex=rf"{API}/v1/callLogs/[^/]+/recordings").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    return audio, upload


def body(route: Any, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)


ANNA = search_item(51, "Anna Petrova", ["+7 (950) 222-29-19"], owner=7001)


# -- settings -------------------------------------------------------------------------------


def test_settings_need_a_token_or_a_complete_oauth_app():
    with pytest.raises(ValueError, match="api_token"):
        PipedriveSettings(client_id="abc")
    s = PipedriveSettings(api_token=TOKEN)
    assert s.secrets() == [TOKEN] and s.base_url is None and s.activity_type == "call"


def test_registry_builds_the_adapter():
    from bridge.registry import configured

    [item] = configured({"crm": {"type": "pipedrive", "api_token": TOKEN}})
    assert item.cls is PipedriveAdapter


# -- find, create, log ----------------------------------------------------------------------


async def test_known_person_call_is_logged_with_owner(open_harness, no_unmocked_http, clock):
    search = no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    logs = no_unmocked_http.post(CALL_LOGS).mock(
        return_value=call_log("CAd92b224eb4a39b5ad8fea92ff0e", outcome="connected")
    )
    h = await open_harness()
    payload = sample("call_end", uuid="p-known", now=clock())
    payload["download_url"] = "https://records.onpbx.ru/p-known.mp3"
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error
    assert job.result == "callLog:CAd92b224eb4a39b5ad8fea92ff0e"

    sent = search.calls[0].request
    assert sent.headers["x-api-token"] == TOKEN
    assert "authorization" not in sent.headers
    assert dict(sent.url.params) == {"term": "9502222919", "fields": "phone"}

    log = body(logs)
    assert log == {
        "user_id": 7001,  # the person's owner
        "subject": "Outbound call to +7 950 222-29-19",
        "duration": "135",  # talk seconds
        "outcome": "connected",
        "from_phone_number": "74991111282",
        "to_phone_number": "+79502222919",
        "start_time": "2026-05-28T20:24:11Z",
        "end_time": "2026-05-28T20:26:40Z",
        "person_id": 51,
        "note": log["note"],
    }
    assert "Talked" in log["note"] and "NORMAL_CLEARING" in log["note"]
    assert 'href="https://records.onpbx.ru/p-known.mp3"' in log["note"]


async def test_users_map_routes_the_call(open_harness, no_unmocked_http, clock):
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA2"))
    h = await open_harness(users={"145": 8002})
    assert (await h.deliver(sample("call_end", uuid="p-map", now=clock()))).status == "done"
    assert body(logs)["user_id"] == 8002


async def test_unconfirmed_hits_are_ignored_and_outcomes_map(open_harness, no_unmocked_http, clock):
    other = search_item(77, "Other", ["+7 950 222 29 18"], owner=1)
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(other))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA3"))
    h = await open_harness()
    payload = sample("call_end", uuid="p-busy", now=clock())
    payload.update(dialog_duration="0", hangup_cause="USER_BUSY")
    assert (await h.deliver(payload)).status == "done"
    log = body(logs)
    assert "person_id" not in log and "user_id" not in log
    assert log["outcome"] == "busy" and log["duration"] == "0"
    payload = sample("call_end", uuid="p-wrong", now=clock())
    payload.update(dialog_duration="0", hangup_cause="UNALLOCATED_NUMBER")
    assert (await h.deliver(payload)).status == "done"
    assert body(logs)["outcome"] == "wrong_number"


async def test_multiple_persons_take_the_best_confirmed_match(
    open_harness, no_unmocked_http, clock
):
    noise = search_item(40, "Noise", ["+1 415 555 0100"], owner=1)
    dup = search_item(52, "Anna (dup)", ["89502222919"], owner=7002)
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(noise, ANNA, dup))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA4"))
    h = await open_harness()
    assert (await h.deliver(sample("call_end", uuid="p-multi", now=clock()))).status == "done"
    assert body(logs)["person_id"] == 51 and body(logs)["user_id"] == 7001


async def test_missed_call_from_unknown_caller_creates_person_then_activity(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer())
    persons = no_unmocked_http.post(PERSONS).mock(
        return_value=person(601, "Client +7 922 111-11-23", "+79221111123", owner=9000)
    )
    activities = no_unmocked_http.post(ACTIVITIES).mock(
        return_value=activity(7700, type="call", done=False)
    )
    h = await open_harness(default_user="9000", task_due_minutes=30)
    job = await h.deliver(sample("call_missed", uuid="p-missed", now=clock()))
    assert job.status == "done", job.last_error
    assert job.result == "activity:7700"
    assert body(persons) == {
        "name": "Client +7 922 111-11-23",
        "owner_id": 9000,
        "phones": [{"value": "+79221111123", "primary": True, "label": "work"}],
    }
    sent = body(activities)
    assert sent == {
        "subject": sent["subject"],
        "type": "call",
        "owner_id": 9000,  # the new person's owner
        "participants": [{"person_id": 601, "primary": True}],
        "due_date": "2026-05-28",  # now + 30 min, UTC
        "due_time": "20:56",
        "done": False,
        "note": sent["note"],
    }
    assert sent["subject"].startswith("Call back: missed call from +7 922 111-11-23")
    assert "73431111137" in sent["note"]


async def test_activity_goes_to_the_person_owner(open_harness, no_unmocked_http, clock):
    known = search_item(53, "Ivan", ["+7 922 111 11 23"], owner=7001)
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(known))
    activities = no_unmocked_http.post(ACTIVITIES).mock(return_value=activity(7701))
    h = await open_harness(default_user="9000", activity_type="callback")
    assert (await h.deliver(sample("call_missed", uuid="p-own", now=clock()))).status == "done"
    assert body(activities)["owner_id"] == 7001
    assert body(activities)["participants"] == [{"person_id": 53, "primary": True}]
    assert body(activities)["type"] == "callback"


async def test_a_non_numeric_user_id_is_a_config_error(open_harness, no_unmocked_http, clock):
    # Refused when the settings load (so `check` fails fast), not by every job later.
    with pytest.raises(SettingsError, match=r"not a number: default_user = 'anna@example\.com'"):
        await open_harness(default_user="anna@example.com")
    with pytest.raises(SettingsError, match=r"users\.101 = 'anna'"):
        await open_harness(users={"101": "anna"})


# -- idempotency (a redelivered call: the contract suite, tests/adapters/test_contract.py) --


async def test_retry_after_a_failed_activity_reuses_the_created_person(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer())
    persons = no_unmocked_http.post(PERSONS).mock(return_value=person(602, "C", "+7922", 1))
    activities = no_unmocked_http.post(ACTIVITIES)
    activities.side_effect = [
        error(500, "Internal server error"),
        activity(7702),
    ]
    h = await open_harness()
    job = await h.deliver(sample("call_missed", uuid="p-retry", now=clock()))
    assert job.status == "pending" and "Internal server error" in (job.last_error or "")
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "done" and job.result == "activity:7702"
    assert persons.call_count == 1 and activities.call_count == 2
    assert body(activities)["participants"] == [{"person_id": 602, "primary": True}]


# -- errors and limits ----------------------------------------------------------------------


async def test_429_honours_retry_after(open_harness, no_unmocked_http, clock):
    limited = error(429, "Request over limit", errorCode=429)
    limited.headers.update({"retry-after": "7", "x-ratelimit-remaining": "0"})
    search = no_unmocked_http.get(SEARCH)
    search.side_effect = [limited, search_answer(ANNA)]
    no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA6"))
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="p-429", now=clock()))
    assert job.status == "pending" and job.due_at - clock() == pytest.approx(7.0)
    assert "Request over limit" in (job.last_error or "")
    clock.advance(8)
    [job] = await h.attempt()
    assert job.status == "done"


async def test_429_without_retry_after_uses_the_window_reset(open_harness, no_unmocked_http, clock):
    limited = error(429, "Request over limit", errorCode=429)
    limited.headers.update({"x-ratelimit-limit": "40", "x-ratelimit-reset": "2"})
    no_unmocked_http.get(SEARCH).mock(return_value=limited)
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="p-429b", now=clock()))
    assert job.status == "pending" and job.due_at - clock() == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("response", "needle"),
    [
        (error(401, "unauthorized access", errorCode=401), "check api_token"),
        (error(403, "You don't have permission to change this resource."), "account-settings"),
        (error(400, '"outcome" is required.'), '"outcome" is required.'),
        (error(404, "A resource required for this operation was not found."), "HTTP 404"),
    ],
)
async def test_client_errors_are_dead_with_the_vendor_message(
    open_harness, no_unmocked_http, clock, response, needle
):
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    no_unmocked_http.post(CALL_LOGS).mock(return_value=response)
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid=f"p-{response.status_code}", now=clock()))
    assert job.status == "dead"
    assert needle in (job.last_error or "")
    assert TOKEN not in (job.last_error or "")


async def test_gateway_errors_without_envelope_are_retried(open_harness, no_unmocked_http, clock):
    no_unmocked_http.get(SEARCH).mock(
        return_value=httpx.Response(503, text="<html>Service Unavailable</html>")
    )
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="p-503", now=clock()))
    assert job.status == "pending" and "HTTP 503" in (job.last_error or "")


# -- OAuth ----------------------------------------------------------------------------------


async def test_oauth_uses_the_token_api_domain_and_refreshes(tmp_path, no_unmocked_http, clock):
    company = "https://acme.pipedrive.com"
    token = no_unmocked_http.post("https://oauth.pipedrive.com/oauth/token")
    token.side_effect = [
        httpx.Response(
            200,
            json={
                "access_token": "v1u:access-1",
                "token_type": "Bearer",
                "refresh_token": "refresh-2",
                "scope": "base,contacts:full,activities:full,phone-integration",
                "expires_in": 3599,
                "api_domain": company,
            },
        ),
        httpx.Response(
            200,
            json={
                "access_token": "v1u:access-2",
                "token_type": "Bearer",
                "refresh_token": "refresh-3",
                "scope": "base",
                "expires_in": 3599,
                "api_domain": company,
            },
        ),
    ]
    search = no_unmocked_http.get(f"{company}/api/v2/persons/search")
    search.side_effect = [
        search_answer(ANNA),
        error(401, "unauthorized access", errorCode=401),
        search_answer(ANNA),
    ]
    no_unmocked_http.post(f"{company}/v1/callLogs").mock(return_value=call_log("CA7"))
    table = {
        "client_id": "b4b4b4b4",
        "client_secret": "pd-secret-value",
        "refresh_token": "refresh-1",
        "rate_limit": 0,
    }
    h = await AdapterHarness.open(tmp_path, "pipedrive", table, clock=clock)
    try:
        assert (await h.deliver(sample("call_end", uuid="po-1", now=clock()))).status == "done"
        first = token.calls[0].request
        assert first.headers["authorization"] == "Basic YjRiNGI0YjQ6cGQtc2VjcmV0LXZhbHVl"
        assert first.content == b"grant_type=refresh_token&refresh_token=refresh-1"
        assert search.calls[0].request.headers["authorization"] == "Bearer v1u:access-1"
        assert "x-api-token" not in search.calls[0].request.headers
        # A revoked access token: one refresh, the request resent once.
        assert (await h.deliver(sample("call_end", uuid="po-2", now=clock()))).status == "done"
        assert token.call_count == 2
        assert search.calls[-1].request.headers["authorization"] == "Bearer v1u:access-2"
        stored = json.loads(await h.adapter.ctx.state.get("oauth") or "{}")
        assert stored["refresh_token"] == "refresh-3"
        assert stored["extra"] == {"api_domain": company}
    finally:
        await h.close()


# -- check ----------------------------------------------------------------------------------

USER = {
    "default_currency": "EUR",
    "locale": "et_EE",
    "lang": 1,
    "phone": "0000-0001",
    "activated": True,
    "last_login": "2019-11-21 08:45:56",
    "created": "2018-11-13 09:16:26",
    "modified": "2019-11-21 08:45:56",
    "has_created_company": True,
    "timezone_name": "Europe/Berlin",
    "timezone_offset": "+03:00",
    "role_id": 1,
    "icon_url": None,
    "is_you": False,
    "is_deleted": False,
}


async def test_check_names_the_company_and_lists_active_users(open_harness, no_unmocked_http):
    no_unmocked_http.get(f"{API}/v1/users/me").mock(
        return_value=ok(
            {
                **USER,
                "id": 1,
                "name": "Me",
                "email": "me@pipedrive.com",
                "active_flag": True,
                "is_you": True,
                "company_id": 54235233,
                "company_name": "Pipedrive",
                "company_domain": "pipedrive-12g53f",
                "company_country": "EE",
            }
        )
    )
    no_unmocked_http.get(f"{API}/v1/users").mock(
        return_value=ok(
            [
                {
                    **USER,
                    "id": 1,
                    "name": "John Doe",
                    "email": "john@pipedrive.com",
                    "active_flag": True,
                },
                {
                    **USER,
                    "id": 2,
                    "name": "Jane Doe",
                    "email": "jane@pipedrive.com",
                    "active_flag": True,
                },
                {
                    **USER,
                    "id": 3,
                    "name": "Gone",
                    "email": "gone@pipedrive.com",
                    "active_flag": False,
                },
            ]
        )
    )
    h = await open_harness()
    result = await h.adapter.check()
    assert (
        result.account == "Pipedrive company Pipedrive (pipedrive-12g53f.pipedrive.com, API token)"
    )
    assert result.users == [
        ("1", "John Doe <john@pipedrive.com>"),
        ("2", "Jane Doe <jane@pipedrive.com>"),
    ]


async def test_check_with_a_bad_token_fails_clearly(open_harness, no_unmocked_http):
    no_unmocked_http.get(f"{API}/v1/users/me").mock(
        return_value=error(401, "unauthorized access", errorCode=401)
    )
    h = await open_harness()
    with pytest.raises(Permanent, match="unauthorized access") as err:
        await h.adapter.check()
    assert TOKEN not in err.value.reason


# -- last: the whole module's traffic covered every operation the adapter uses ---------------


# -- what the live API refuses or would misfile (#13 §2) ---------------------------------------


def test_contract_refuses_person_id_on_a_v2_activity_as_pipedrive_does(specs):
    # The OpenAPI file lists person_id, the live API answers 400: the contract follows the API.
    refused = request("POST", "/api/v2/activities", {"subject": "x", "person_id": 51})
    with pytest.raises(ContractViolation, match=r"read-only field\. Add a primary participant"):
        specs.validate(refused)
    linked = {"subject": "x", "participants": [{"person_id": 51, "primary": True}]}
    assert specs.validate(request("POST", "/api/v2/activities", linked)) == "addActivity"


ACME_ANNA = search_item(51, "Anna Petrova", ["+7 (950) 222-29-19", "+7 922 111 11 23"], owner=7001)
ACME_ANNA["item"]["organization"] = {"id": 880, "name": "Acme"}


async def test_call_log_and_activity_land_on_the_open_deal_and_organisation(
    open_harness, no_unmocked_http, clock, deals
):
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ACME_ANNA))
    deals.mock(return_value=ok([{"id": 4401, "title": "Acme renewal", "status": "open"}]))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA-deal"))
    activities = no_unmocked_http.post(ACTIVITIES).mock(return_value=activity(7710))
    h = await open_harness(contact_cache_seconds=0)
    assert (await h.deliver(sample("call_end", uuid="p-deal", now=clock()))).status == "done"
    assert (await h.deliver(sample("call_missed", uuid="p-deal2", now=clock()))).status == "done"
    assert dict(deals.calls[0].request.url.params) == {
        "person_id": "51",
        "status": "open",
        "sort_by": "update_time",
        "sort_direction": "desc",
        "limit": "1",
    }
    log = body(logs)
    assert (log["person_id"], log["org_id"], log["deal_id"]) == (51, 880, 4401)
    act = body(activities)
    assert act["participants"] == [{"person_id": 51, "primary": True}]
    assert (act["org_id"], act["deal_id"]) == (880, 4401) and "person_id" not in act


async def test_a_short_national_number_is_searched_by_its_national_form(
    open_harness, no_unmocked_http, clock
):
    berlin = search_item(61, "Jonas", ["030 1234567"], owner=7001)
    search = no_unmocked_http.get(SEARCH)
    search.side_effect = lambda request: (
        search_answer(berlin) if request.url.params["term"] == "301234567" else search_answer()
    )
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA-de"))
    h = await open_harness()
    payload = sample("call_end", uuid="p-de", now=clock())
    payload["callee"] = "+49301234567"  # the sample is outbound: the client is the callee
    assert (await h.deliver(payload)).status == "done"
    assert search.calls[0].request.url.params["term"] == "301234567"
    assert body(logs)["person_id"] == 61


async def test_the_recording_is_uploaded_to_the_call_log(
    open_harness, no_unmocked_http, clock, recordings
):
    _, upload = recordings
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA-rec"))
    h = await open_harness()
    payload = sample("call_end", uuid="p-known", now=clock())
    payload["download_url"] = RECORDING
    assert (await h.deliver(payload)).status == "done"
    [sent] = upload.calls
    assert sent.request.url.path == "/v1/callLogs/CA-rec/recordings"
    content = sent.request.content
    assert b'name="file"; filename="p-known.mp3"' in content and AUDIO in content
    assert b"Content-Type: audio/mpeg" in content


async def test_an_upload_that_fails_is_retried_without_a_second_call_log(
    open_harness, no_unmocked_http, clock, recordings
):
    _, upload = recordings
    upload.side_effect = [error(502, "Bad gateway"), httpx.Response(200, json={"success": True})]
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA-up"))
    h = await open_harness()
    payload = sample("call_end", uuid="p-known", now=clock())
    payload["download_url"] = RECORDING
    job = await h.deliver(payload)
    assert job.status == "pending" and "attach recording" in (job.last_error or "")
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "done" and job.result == "callLog:CA-up"
    assert logs.call_count == 1 and upload.call_count == 2


async def test_a_vanished_recording_leaves_the_link_and_logs_the_call(
    open_harness, no_unmocked_http, clock, recordings
):
    audio, upload = recordings
    audio.mock(return_value=httpx.Response(404, text="Not Found"))
    no_unmocked_http.get(SEARCH).mock(return_value=search_answer(ANNA))
    logs = no_unmocked_http.post(CALL_LOGS).mock(return_value=call_log("CA-gone"))
    h = await open_harness()
    payload = sample("call_end", uuid="p-known", now=clock())
    payload["download_url"] = RECORDING
    assert (await h.deliver(payload)).status == "done"
    assert upload.call_count == 0 and RECORDING in body(logs)["note"]


def _daily_429() -> httpx.Response:
    # The burst window still has room: the 429 is the daily token budget.
    spent = error(429, "Request over limit", errorCode=429)
    spent.headers.update(
        {"retry-after": "2", "x-ratelimit-limit": "40", "x-ratelimit-remaining": "35"}
    )
    return spent


async def test_a_spent_daily_budget_waits_for_the_reset_and_holds_every_request(
    open_harness, no_unmocked_http, clock
):
    search = no_unmocked_http.get(SEARCH).mock(return_value=_daily_429())
    h = await open_harness()
    first = await h.deliver(sample("call_end", uuid="p-day1", now=clock()))
    midnight = 86_400 - NOW % 86_400  # NOW is 20:26:40 UTC
    assert first.status == "pending"
    assert first.due_at - clock() == pytest.approx(midnight + 300)
    assert "daily API token budget" in (first.last_error or "")
    # A second call in the meantime is not sent at all (asking again earns a block page).
    second = await h.deliver(sample("call_end", uuid="p-day2", now=clock()))
    assert second.status == "pending" and search.call_count == 1
    assert second.due_at - clock() == pytest.approx(midnight + 300, abs=1)


async def test_cloudflares_html_403_is_a_pause_not_a_refused_permission(
    open_harness, no_unmocked_http, clock
):
    page = httpx.Response(
        403,
        text="<html><head><title>Attention Required! | Cloudflare</title></head></html>",
        headers={"server": "cloudflare", "cf-ray": "8119ad303eab9555-DUB"},
    )
    no_unmocked_http.get(SEARCH).mock(return_value=page)
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="p-cf", now=clock()))
    assert job.status == "pending", job.last_error
    assert "Cloudflare" in (job.last_error or "") and "permission" not in (job.last_error or "")
    assert job.due_at - clock() == pytest.approx(900)


async def test_search_has_its_own_limit(tmp_path, no_unmocked_http, clock):
    import time

    from adapters.pipedrive.api import PipedriveAPI
    from bridge.testing import AdapterHarness as Harness

    no_unmocked_http.get(SEARCH).mock(return_value=search_answer())
    users = no_unmocked_http.get(f"{API}/v1/users").mock(return_value=ok([]))
    h = await Harness.open(
        tmp_path, "pipedrive", {"api_token": TOKEN, "rate_limit": 0, "search_rate_limit": 20}
    )
    try:
        api = PipedriveAPI(h.adapter.settings, h.adapter.ctx)
        started = time.monotonic()
        for _ in range(5):
            await api.call("GET", "/v1/users", "users")  # not a search: not spaced
        unspaced = time.monotonic() - started
        started = time.monotonic()
        for n in range(5):
            await api.call(
                "GET", "/api/v2/persons/search", "s", params={"term": f"9{n}", "fields": "phone"}
            )
        # 20/s evenly spaced: the 5th search leaves >= 4 × 50 ms after the first.
        assert time.monotonic() - started >= 0.19
        assert users.call_count == 5 and unspaced < 5  # (a bound only: CI machines are slow)
        await api.aclose()
    finally:
        await h.close()


def test_zz_every_operation_the_adapter_uses_was_validated(specs):
    # Runs last in this module: the per-test validation above has seen all of these.
    assert set(specs.validated) >= {
        "searchPersons",
        "addPerson",
        "addActivity",
        "addCallLog",
        "getUsers",
        "getCurrentUser",
    }
