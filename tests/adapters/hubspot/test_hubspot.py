"""HubSpot adapter: request bodies field by field, HubSpot's real answers and error shapes
(adapters/hubspot/fake.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.hubspot import fake as hs
from adapters.hubspot.adapter import HubSpotAdapter
from adapters.hubspot.fake import RATE_LIMITED, created, hs_object, search_answer
from adapters.hubspot.fake import error as hs_error
from adapters.hubspot.settings import HubSpotSettings
from bridge.samples import sample
from bridge.settings import SettingsError
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

API = "https://api.hubapi.com"
TOKEN = "pat-eu1-11111111-2222-3333-4444-555555555555"
SEARCH = f"{API}/crm/v3/objects/contacts/search"
CONTACTS = f"{API}/crm/v3/objects/contacts"
CALLS = f"{API}/crm/v3/objects/calls"
TASKS = f"{API}/crm/v3/objects/tasks"
NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


# A client the search finds: stored in a person's own format; owner 7001.
ANNA = hs_object(
    "51",
    firstname="Anna",
    lastname="Petrova",
    phone="+7 (950) 222-29-19",
    mobilephone=None,
    hubspot_owner_id="7001",
    hs_searchable_calculated_phone_number="9502222919",
)


@pytest.fixture(autouse=True)
def contact_links(no_unmocked_http):
    """A found contact has no company and no deal unless a test says otherwise."""
    return no_unmocked_http.get(url__regex=rf"^{API}/crm/v3/objects/contacts/[0-9]+\?").mock(
        return_value=httpx.Response(200, json=hs.no_links("1"))
    )


def body(route: Any, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)


@pytest.fixture
def clock(pbx_clock: FakeClock) -> FakeClock:
    assert pbx_clock() == NOW  # the plugin's clock starts where the samples' times are
    return pbx_clock


@pytest.fixture
def open_harness(pbx_harness):
    """The plugin's harness (closed after the test) with this suite's table defaults."""

    async def open_(**table: Any) -> AdapterHarness:
        return await pbx_harness(
            "hubspot",
            {"access_token": TOKEN, "rate_limit": 0, "search_rate_limit": 0, **table},
            schedule={"locale": "en"},
        )

    return open_


# -- settings -------------------------------------------------------------------------------


def test_settings_need_a_token_or_a_complete_oauth_app():
    with pytest.raises(ValueError, match="access_token"):
        HubSpotSettings(client_id="abc", refresh_token="r")
    oauth = HubSpotSettings(client_id="abc", client_secret="s3cr3t-value", refresh_token="r-123")
    assert oauth.base_url is None and oauth.rate_limit == 9.0 and oauth.search_rate_limit == 4.0
    assert set(oauth.secrets()) == {"s3cr3t-value", "r-123"}


def test_registry_builds_the_adapter(tmp_path):
    from bridge.registry import configured

    [item] = configured({"hubspot": {"access_token": TOKEN}})
    assert item.cls is HubSpotAdapter
    with pytest.raises(SettingsError, match="access_token"):
        configured({"hubspot": {}})


# -- find, create, log ----------------------------------------------------------------------


async def test_known_contact_call_is_logged_with_owner_and_association(
    open_harness, no_unmocked_http, clock
):
    search = no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9001"))
    h = await open_harness()
    payload = sample("call_end", uuid="u-known", now=clock())
    payload["download_url"] = "https://records.onpbx.ru/u-known.mp3"
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error
    assert job.result == "call:9001"

    request = search.calls[0].request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    groups = body(search)["filterGroups"]
    forms = ["+79502222919", "79502222919", "89502222919", "9502222919"]
    assert groups == [
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
        {
            "filters": [
                {
                    "propertyName": "hs_searchable_calculated_phone_number",
                    "operator": "EQ",
                    "value": "9502222919",
                }
            ]
        },
        {
            "filters": [
                {
                    "propertyName": "hs_searchable_calculated_mobile_number",
                    "operator": "EQ",
                    "value": "9502222919",
                }
            ]
        },
    ]
    assert "hubspot_owner_id" in body(search)["properties"]

    sent = body(calls)
    props = sent["properties"]
    assert props == {
        "hs_timestamp": "2026-05-28T20:24:11.000Z",  # start = end - call_duration (149 s)
        "hs_call_title": "Outbound call to +7 950 222-29-19",
        "hs_call_body": props["hs_call_body"],
        "hs_call_direction": "OUTBOUND",
        "hs_call_duration": "135000",  # talk time, milliseconds
        "hs_call_status": "COMPLETED",
        "hs_call_from_number": "74991111282",  # the line
        "hs_call_to_number": "+79502222919",
        "hubspot_owner_id": "7001",  # the contact's owner (no `users` map)
        "hs_call_recording_url": "https://records.onpbx.ru/u-known.mp3",
        "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7",  # Connected
    }
    assert "Talked" in props["hs_call_body"] and "NORMAL_CLEARING" in props["hs_call_body"]
    assert "74991111282" in props["hs_call_body"]  # the line
    assert sent["associations"] == [
        {
            "to": {"id": "51"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}],
        }
    ]


async def test_extension_mapping_wins_over_contact_owner_for_calls(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9002"))
    h = await open_harness(users={"145": "8002"})
    job = await h.deliver(sample("call_end", uuid="u-mapped", now=clock()))
    assert job.status == "done", job.last_error
    assert body(calls)["properties"]["hubspot_owner_id"] == "8002"


async def test_search_hits_that_do_not_match_the_number_are_ignored(
    open_harness, no_unmocked_http, clock
):
    other = hs_object("77", firstname="Other", phone="+7 950 222-29-18", hubspot_owner_id="1")
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(other))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9003"))
    # Outbound + default policy "inbound": no contact is created, the call is logged alone.
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-nomatch", now=clock()))
    assert job.status == "done", job.last_error
    assert body(calls)["associations"] == []
    assert "hubspot_owner_id" not in body(calls)["properties"]


async def test_multiple_contacts_take_the_oldest_confirmed_one(
    open_harness, no_unmocked_http, clock
):
    second = hs_object("52", firstname="Anna (dup)", mobilephone="89502222919")
    second["properties"]["hubspot_owner_id"] = "7002"
    # HubSpot sorted them by createdate ASCENDING as asked; an unconfirmed hit comes first.
    noise = hs_object("50", firstname="Noise", phone="+1 415 555 0100")
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(noise, ANNA, second))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9004"))
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-multi", now=clock()))
    assert job.status == "done", job.last_error
    assert body(calls)["associations"][0]["to"] == {"id": "51"}
    assert body(calls)["properties"]["hubspot_owner_id"] == "7001"
    search_sent = json.loads(no_unmocked_http.calls[0].request.content)
    assert search_sent["sorts"] == [{"propertyName": "createdate", "direction": "ASCENDING"}]


async def test_missed_call_from_unknown_caller_creates_contact_then_task(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer())
    contacts = no_unmocked_http.post(CONTACTS).mock(return_value=created("601"))
    tasks = no_unmocked_http.post(TASKS).mock(return_value=created("7700"))
    h = await open_harness(default_user="9000", task_due_minutes=30)
    job = await h.deliver(sample("call_missed", uuid="u-missed", now=clock()))
    assert job.status == "done", job.last_error
    assert job.result == "task:7700"

    assert body(contacts) == {
        "properties": {
            "firstname": "Client +7 922 111-11-23",
            "phone": "+79221111123",
            "hubspot_owner_id": "9000",
        }
    }
    sent = body(tasks)
    assert sent["properties"] == {
        "hs_timestamp": "2026-05-28T20:56:40.000Z",  # due: now + 30 min, in UTC
        "hs_task_subject": sent["properties"]["hs_task_subject"],
        "hs_task_body": sent["properties"]["hs_task_body"],
        "hs_task_type": "CALL",
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hubspot_owner_id": "9000",
    }
    assert sent["properties"]["hs_task_subject"].startswith("Call back: missed call from +7 922")
    assert "73431111137" in sent["properties"]["hs_task_body"]
    assert sent["associations"] == [
        {
            "to": {"id": "601"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
        }
    ]


async def test_task_goes_to_the_contact_owner(open_harness, no_unmocked_http, clock):
    anna = hs_object(
        "53", phone="+7 922 111 11 23", hubspot_owner_id="7001", firstname="A", lastname="B"
    )
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(anna))
    tasks = no_unmocked_http.post(TASKS).mock(return_value=created("7701"))
    h = await open_harness(default_user="9000")
    job = await h.deliver(sample("call_missed", uuid="u-owner", now=clock()))
    assert job.status == "done", job.last_error
    assert body(tasks)["properties"]["hubspot_owner_id"] == "7001"
    assert body(tasks)["associations"][0]["to"] == {"id": "53"}


# -- idempotency (a redelivered call: the contract suite, tests/adapters/test_contract.py) --


async def test_retry_after_a_failed_call_reuses_the_created_contact(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer())
    contacts = no_unmocked_http.post(CONTACTS).mock(return_value=created("602"))
    calls = no_unmocked_http.post(CALLS)
    calls.side_effect = [
        httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>"),
        created("9200"),
    ]
    h = await open_harness(create_contacts="always")
    job = await h.deliver(sample("call_end", uuid="u-retry", now=clock()))
    assert job.status == "pending" and "HTTP 502" in (job.last_error or "")
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "done" and job.result == "call:9200"
    assert contacts.call_count == 1 and calls.call_count == 2
    assert body(calls)["associations"][0]["to"] == {"id": "602"}


# -- errors and limits ----------------------------------------------------------------------


async def test_429_without_retry_after_waits_for_the_policy_window(
    open_harness, no_unmocked_http, clock
):
    search = no_unmocked_http.post(SEARCH)
    search.side_effect = [httpx.Response(429, json=RATE_LIMITED), search_answer(ANNA)]
    no_unmocked_http.post(CALLS).mock(return_value=created("9300"))
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-429", now=clock()))
    assert job.status == "pending"
    assert job.due_at - clock() == pytest.approx(10.0)
    assert "ten_secondly_rolling" in (job.last_error or "")
    clock.advance(10.5)
    [job] = await h.attempt()
    assert job.status == "done"


async def test_429_retry_after_is_honoured(open_harness, no_unmocked_http, clock):
    daily = {**RATE_LIMITED, "policyName": "DAILY", "message": "You have reached your daily limit."}
    no_unmocked_http.post(SEARCH).mock(
        return_value=httpx.Response(429, json=daily, headers={"Retry-After": "42"})
    )
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-429b", now=clock()))
    assert job.status == "pending" and job.due_at - clock() == pytest.approx(42.0)
    assert "DAILY" in (job.last_error or "")


@pytest.mark.parametrize(
    ("response", "needle"),
    [
        (
            hs_error(
                401,
                "Authentication credentials not found.",
                "INVALID_AUTHENTICATION",
            ),
            "check access_token",
        ),
        (
            hs_error(
                403,
                "This app hasn't been granted all required scopes to make this call.",
                "MISSING_SCOPES",
                errors=[{"message": "One or more of the following scopes are required."}],
            ),
            "crm.objects.contacts.write",
        ),
        (
            hs_error(
                400,
                'Property values were not valid: [{"isValid":false,"message":"8002 is not a'
                ' valid owner id","error":"INVALID_OWNER_ID","name":"hubspot_owner_id"}]',
                "VALIDATION_ERROR",
            ),
            "INVALID_OWNER_ID",
        ),
    ],
)
async def test_client_errors_are_dead_with_the_vendor_message(
    open_harness, no_unmocked_http, clock, response, needle
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    no_unmocked_http.post(CALLS).mock(return_value=response)
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid=f"u-{response.status_code}", now=clock()))
    assert job.status == "dead"
    assert needle in (job.last_error or "")
    assert f"HTTP {response.status_code}" in (job.last_error or "")
    assert TOKEN not in (job.last_error or "")


async def test_server_errors_and_network_trouble_are_retried(open_harness, no_unmocked_http, clock):
    search = no_unmocked_http.post(SEARCH)
    search.side_effect = [
        hs_error(500, "internal error", "INTERNAL_ERROR"),
        httpx.ConnectError("connection refused"),
    ]
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-5xx", now=clock()))
    assert job.status == "pending" and "INTERNAL_ERROR" in (job.last_error or "")
    clock.advance(job.due_at - clock() + 1)
    [job] = await h.attempt()
    assert job.status == "pending" and "network error" in (job.last_error or "")


# -- OAuth ----------------------------------------------------------------------------------


async def test_oauth_refreshes_on_schedule_and_persists_the_pair(tmp_path, no_unmocked_http, clock):
    token = no_unmocked_http.post(f"{API}/oauth/2026-03/token")
    token.side_effect = [
        httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "refresh_token": "refresh-2",
                "access_token": "access-1",
                "expires_in": 1800,
            },
        ),
        httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "refresh_token": "refresh-3",
                "access_token": "access-2",
                "expires_in": 1800,
            },
        ),
    ]
    search = no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    no_unmocked_http.post(CALLS).mock(return_value=created("9400"))
    table = {
        "client_id": "app-1",
        "client_secret": "client-secret-xyz",
        "refresh_token": "refresh-1",
        "rate_limit": 0,
        "search_rate_limit": 0,
    }
    h = await AdapterHarness.open(tmp_path, "hubspot", table, clock=clock)
    try:
        assert (await h.deliver(sample("call_end", uuid="o-1", now=clock()))).status == "done"
        form = dict(x.split("=") for x in token.calls[0].request.content.decode().split("&"))
        assert form == {
            "grant_type": "refresh_token",
            "client_id": "app-1",
            "client_secret": "client-secret-xyz",
            "refresh_token": "refresh-1",
        }
        assert search.calls[0].request.headers["authorization"] == "Bearer access-1"
        # Within the lifetime: no refresh; near its end (expires_in schedule): one refresh.
        clock.advance(600)
        assert (await h.deliver(sample("call_end", uuid="o-2", now=clock()))).status == "done"
        assert token.call_count == 1
        clock.advance(1800 - 600 - 60)
        assert (await h.deliver(sample("call_end", uuid="o-3", now=clock()))).status == "done"
        assert token.call_count == 2 and "refresh_token=refresh-2" in (
            token.calls[1].request.content.decode()
        )
        assert search.calls[-1].request.headers["authorization"] == "Bearer access-2"
        stored = json.loads(await h.adapter.ctx.state.get("oauth") or "{}")
        assert stored["refresh_token"] == "refresh-3"
    finally:
        await h.close()


async def test_refused_refresh_token_is_dead_with_a_fix(tmp_path, no_unmocked_http, clock):
    no_unmocked_http.post(f"{API}/oauth/2026-03/token").mock(
        return_value=httpx.Response(
            400,
            json={"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"},
        )
    )
    table = {"client_id": "app-1", "client_secret": "client-secret-xyz", "refresh_token": "r-1"}
    h = await AdapterHarness.open(tmp_path, "hubspot", table, clock=clock)
    try:
        job = await h.deliver(sample("call_end", uuid="o-bad", now=clock()))
        assert job.status == "dead" and "BAD_REFRESH_TOKEN" in (job.last_error or "")
        assert "new refresh_token" in (job.last_error or "")
    finally:
        await h.close()


# -- check ----------------------------------------------------------------------------------


async def test_check_names_the_portal_and_lists_every_owner(open_harness, no_unmocked_http):
    no_unmocked_http.get(f"{API}/account-info/v3/details").mock(
        return_value=httpx.Response(
            200,
            json={
                "portalId": 62515,
                "accountType": "STANDARD",
                "timeZone": "Europe/Moscow",
                "companyCurrency": "RUB",
                "additionalCurrencies": [],
                "utcOffset": "+03:00",
                "utcOffsetMilliseconds": 10800000,
                "uiDomain": "app-eu1.hubspot.com",
                "dataHostingLocation": "eu1",
            },
        )
    )
    owners = no_unmocked_http.get(f"{API}/crm/v3/owners")
    owner = {"type": "PERSON", "archived": False, "createdAt": "2025-01-01T00:00:00Z"}
    owners.side_effect = [
        httpx.Response(
            200,
            json={
                "results": [
                    {
                        **owner,
                        "id": "7001",
                        "email": "anna@example.com",
                        "firstName": "Anna",
                        "lastName": "Ivanova",
                        "userId": 101,
                    }
                ],
                "paging": {"next": {"after": "1", "link": "?after=1"}},
            },
        ),
        httpx.Response(
            200, json={"results": [{**owner, "id": "7002", "email": "bot@example.com"}]}
        ),
    ]
    no_unmocked_http.get(f"{API}/calling/v1/dispositions").mock(
        return_value=httpx.Response(200, json=DISPOSITIONS)
    )
    h = await open_harness()
    result = await h.adapter.check()
    assert result.account == "HubSpot portal 62515 (STANDARD, private app token)"
    assert "connected → Connected" in " ".join(result.notes)
    assert result.users == [
        ("7001", "Anna Ivanova <anna@example.com>"),
        ("7002", "bot@example.com"),
    ]
    assert owners.calls[0].request.url.params["limit"] == "100"
    assert owners.calls[1].request.url.params["after"] == "1"


async def test_check_with_a_bad_token_fails_clearly(open_harness, no_unmocked_http):
    no_unmocked_http.get(f"{API}/account-info/v3/details").mock(
        return_value=hs_error(
            401, "Authentication credentials not found.", "INVALID_AUTHENTICATION"
        )
    )
    h = await open_harness()
    from bridge.adapter import Permanent

    with pytest.raises(Permanent, match="INVALID_AUTHENTICATION") as err:
        await h.adapter.check()
    assert TOKEN not in err.value.reason


# -- what HubSpot refuses or would misfile (#13 §2) --------------------------------------------

# GET /calling/v1/dispositions, as HubSpot answers it for a portal with one custom outcome.
DISPOSITIONS = [
    *hs.DISPOSITIONS,
    {"id": "0c9b7b9e-2f1e-4d8a-9e57-6a3f2c1d0b11", "label": "Call back requested"},
]


@pytest.mark.parametrize(
    ("changes", "guid"),
    [
        (
            {"dialog_duration": "0", "hangup_cause": "USER_BUSY"},
            "9d9162e7-6cf3-4944-bf63-4dff82258764",
        ),
        (
            {"dialog_duration": "0", "hangup_cause": "NO_ANSWER"},
            "73a0d17f-1163-4015-bdd5-ec830791da20",
        ),
        (
            {"dialog_duration": "0", "hangup_cause": "UNALLOCATED_NUMBER"},
            "17b47fee-58de-441e-a44c-c6300d46f273",
        ),
    ],
)
async def test_the_call_outcome_is_hubspots_disposition(
    open_harness, no_unmocked_http, clock, changes, guid
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9101"))
    h = await open_harness()
    payload = sample("call_end", uuid="u-disp", now=clock())
    payload.update(changes)
    assert (await h.deliver(payload)).status == "done"
    assert body(calls)["properties"]["hs_call_disposition"] == guid


async def test_a_portals_own_outcome_overrides_and_check_flags_unknown_ones(
    open_harness, no_unmocked_http, clock
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9102"))
    custom = "0c9b7b9e-2f1e-4d8a-9e57-6a3f2c1d0b11"
    h = await open_harness(dispositions={"no_answer": custom, "busy": "not-a-guid-of-this-portal"})
    payload = sample("call_end", uuid="u-own", now=clock())
    payload.update(dialog_duration="0", hangup_cause="NO_ANSWER")
    assert (await h.deliver(payload)).status == "done"
    assert body(calls)["properties"]["hs_call_disposition"] == custom
    no_unmocked_http.get(f"{API}/account-info/v3/details").mock(
        return_value=httpx.Response(200, json={"portalId": 1, "accountType": "STANDARD"})
    )
    no_unmocked_http.get(f"{API}/crm/v3/owners").mock(
        return_value=httpx.Response(200, json={"results": []})
    )
    no_unmocked_http.get(f"{API}/calling/v1/dispositions").mock(
        return_value=httpx.Response(200, json=DISPOSITIONS)
    )
    notes = " ".join((await h.adapter.check()).notes)
    assert "no_answer → Call back requested" in notes
    assert "dispositions.busy = 'not-a-guid-of-this-portal'" in notes


@pytest.mark.parametrize(
    "url",
    ["http://records.onpbx.ru/u-1.mp3", "https://bridge.example.com/recordings/u-1?exp=1&sig=x"],
)
async def test_a_recording_hubspot_cannot_play_stays_a_link_in_the_body(
    open_harness, no_unmocked_http, clock, url
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9103"))
    h = await open_harness()
    payload = sample("call_end", uuid="u-link", now=clock())
    payload["download_url"] = url
    assert (await h.deliver(payload)).status == "done"
    props = body(calls)["properties"]
    assert "hs_call_recording_url" not in props
    assert url.replace("&", "&amp;") in props["hs_call_body"]


@pytest.mark.parametrize(
    ("answer", "wait"),
    [
        (hs_error(423, "Resource is locked", "LOCKED"), 2.0),
        (
            httpx.Response(
                477,
                json={
                    "status": "error",
                    "message": "Migration in progress",
                    "category": "MIGRATION",
                },
                headers={"retry-after": "120"},
            ),
            120.0,
        ),
    ],
)
async def test_locked_and_migrating_are_retried_not_dead(
    open_harness, no_unmocked_http, clock, answer, wait
):
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(ANNA))
    calls = no_unmocked_http.post(CALLS)
    calls.side_effect = [answer, created("9104")]
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid=f"u-{answer.status_code}", now=clock()))
    assert job.status == "pending", job.last_error
    assert job.due_at - clock() == pytest.approx(wait)
    clock.advance(wait + 1)
    [job] = await h.attempt()
    assert job.status == "done"


async def test_italian_numbers_keep_their_leading_zero_in_the_search(
    open_harness, no_unmocked_http, clock
):
    search = no_unmocked_http.post(SEARCH).mock(return_value=search_answer())
    no_unmocked_http.post(CALLS).mock(return_value=created("9105"))
    h = await open_harness(create_contacts="never")
    payload = sample("call_end", uuid="u-it", now=clock())
    payload["callee"] = "+390612345678"  # Rome: 06 1234 5678
    assert (await h.deliver(payload)).status == "done"
    groups = body(search)["filterGroups"]
    assert groups[2]["filters"][0]["value"] == "0612345678"
    assert "0612345678" in groups[0]["filters"][0]["values"]


async def test_calls_and_tasks_go_to_the_contacts_company_and_open_deal(
    open_harness, no_unmocked_http, clock, contact_links
):
    known = hs_object("51", phone="+7 922 111 11 23", firstname="Ivan", hubspot_owner_id="7001")
    no_unmocked_http.post(SEARCH).mock(return_value=search_answer(known))
    contact_links.mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "51",
                "properties": {},
                "associations": {
                    "companies": {
                        "results": [
                            {"id": "300", "type": "contact_to_company_unlabeled"},
                            {"id": "301", "type": "contact_to_company"},
                        ]
                    },
                    "deals": {
                        "results": [
                            {"id": "800", "type": "contact_to_deal"},
                            {"id": "801", "type": "contact_to_deal"},
                            {"id": "802", "type": "contact_to_deal"},
                        ]
                    },
                },
            },
        )
    )
    deals = no_unmocked_http.post(f"{API}/crm/v3/objects/deals/batch/read").mock(
        return_value=httpx.Response(
            200,
            json={
                "status": "COMPLETE",
                "results": [
                    {
                        "id": "800",
                        "properties": {
                            "hs_is_closed": "true",
                            "hs_lastmodifieddate": "2026-05-20T00:00:00Z",
                        },
                    },
                    {
                        "id": "801",
                        "properties": {
                            "hs_is_closed": "false",
                            "hs_lastmodifieddate": "2026-05-01T00:00:00Z",
                        },
                    },
                    {
                        "id": "802",
                        "properties": {
                            "hs_is_closed": "false",
                            "hs_lastmodifieddate": "2026-05-25T00:00:00Z",
                        },
                    },
                ],
            },
        )
    )
    calls = no_unmocked_http.post(CALLS).mock(return_value=created("9106"))
    tasks = no_unmocked_http.post(TASKS).mock(return_value=created("9107"))
    h = await open_harness()
    assert (await h.deliver(sample("call_missed", uuid="u-co", now=clock()))).status == "done"
    payload = sample("call_end", uuid="u-co2", now=clock())
    payload["callee"] = "+79221111123"
    assert (await h.deliver(payload)).status == "done"
    assert body(deals)["properties"] == ["hs_is_closed", "hs_lastmodifieddate"]

    def linked(route):
        return {
            (a["to"]["id"], a["types"][0]["associationTypeId"]) for a in body(route)["associations"]
        }

    assert linked(tasks) == {("51", 204), ("301", 192), ("802", 216)}
    assert linked(calls) == {("51", 194), ("301", 182), ("802", 206)}
