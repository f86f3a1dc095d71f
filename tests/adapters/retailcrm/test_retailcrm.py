"""RetailCRM adapter against the fake account of ``adapters.retailcrm.fake``: request shapes
(form fields holding JSON strings), the telephony API, tasks, the integration module, and
RetailCRM's refusals."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from adapters.retailcrm.adapter import RetailCRMAdapter
from adapters.retailcrm.fake import DEFAULT_KEY, FakeRetailCRM
from adapters.retailcrm.settings import RetailCRMSettings
from bridge.samples import sample
from bridge.settings import SettingsError
from tests.conftest import FakeClock

HOST = "acme.retailcrm.ru"
BASE = f"https://{HOST}"
NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
POST_CALL = ["log_call", "create_task"]


def form_of(request: httpx.Request) -> dict[str, str]:
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    return {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}


def sent(fake: FakeRetailCRM, path: str) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.path == path]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(no_unmocked_http) -> FakeRetailCRM:
    crm = FakeRetailCRM(timezone="Asia/Yekaterinburg")  # UTC+5, unlike [schedule] (Moscow)
    no_unmocked_http.route(host=HOST).mock(side_effect=crm)
    return crm


@pytest.fixture
def open_harness(open_adapter, clock):
    def open_(**table: Any):
        # Post-call jobs only (one job per event): live call events are in test_retailcrm_live.
        table = {"base_url": BASE, "api_key": DEFAULT_KEY, "events": POST_CALL, **table}
        return open_adapter("retailcrm", table, clock=clock)

    return open_


# -- settings -------------------------------------------------------------------------------


def test_settings_keys_and_their_checks():
    s = RetailCRMSettings(base_url="https://acme.retailcrm.ru/api/v5/", api_key="k-123")
    assert s.base_url == BASE and s.site is None and s.rate_limit == 8.0
    assert s.secrets() == ["k-123"]
    with pytest.raises(ValueError, match="account's address"):
        RetailCRMSettings(base_url="acme.retailcrm.ru", api_key="k")
    with pytest.raises(ValueError, match=r"users\.101 = 'anna'"):
        RetailCRMSettings(base_url=BASE, api_key="k", users={"101": "anna"})
    with pytest.raises(ValueError, match="api_key"):
        RetailCRMSettings(base_url=BASE)


def test_registry_builds_the_adapter():
    from bridge.registry import configured

    [item] = configured({"retailcrm": {"base_url": BASE, "api_key": "k", "site": "shop"}})
    assert item.cls is RetailCRMAdapter and item.settings.site == "shop"
    with pytest.raises(SettingsError, match="api_key"):
        configured({"retailcrm": {"base_url": BASE}})


# -- calls ------------------------------------------------------------------------------------


async def test_known_customer_call_is_uploaded_in_the_account_time_zone(open_harness, fake, clock):
    anna = fake.add_customer("+7 (950) 222-29-19", manager=9, firstName="Olga")
    h = await open_harness(users={"145": "7"})
    payload = sample("call_end", uuid="u-known", now=clock())  # outbound, ext 145
    payload["download_url"] = "https://records.onpbx.ru/u-known.mp3"
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error
    assert job.result == "call:u-known"

    [lookup] = sent(fake, "/api/v5/telephony/manager")
    assert lookup.headers["x-api-key"] == DEFAULT_KEY
    assert dict(lookup.url.params) == {"phone": "79502222919", "details": "1", "ignoreStatus": "1"}
    [upload] = sent(fake, "/api/v5/telephony/calls/upload")
    [call] = json.loads(form_of(upload)["calls"])  # a form field whose value is JSON
    assert call == {
        # ended 20:26:40Z after 149 s: started 20:24:11Z = 01:24:11 in Yekaterinburg (UTC+5)
        "date": "2026-05-29 01:24:11",
        "type": "out",
        "phone": "79502222919",
        "result": "answered",
        "duration": 135,
        "durationWaiting": 14,
        "externalId": "u-known",
        "userId": 7,  # the extension's mapped user beats the customer's manager for calls
        "recordUrl": "https://records.onpbx.ru/u-known.mp3",
        "externalPhone": "74991111282",
        "site": "main-store",
    }
    assert fake.calls == [call] and anna in fake.customers
    # The telephony module was registered before the first upload, with the extension codes.
    module = fake.modules["onlinepbx-bridge"]
    assert module["integrations"]["telephony"]["additionalCodes"] == [{"userId": 7, "code": "145"}]
    assert module["active"] is True and module["clientId"]


async def test_unmapped_extension_is_sent_as_the_managers_code(open_harness, fake, clock):
    fake.add_customer("79502222919")
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-code", now=clock()))
    assert job.status == "done", job.last_error
    [call] = fake.calls
    assert call["code"] == "145" and "userId" not in call


async def test_integration_is_registered_once_and_again_when_it_changes(
    open_harness, fake, clock, tmp_path
):
    fake.add_customer("79502222919")
    h = await open_harness(users={"145": "7"})
    for uuid in ("u-1", "u-2"):
        assert (await h.deliver(sample("call_end", uuid=uuid, now=clock()))).status == "done"
    assert len(sent(fake, "/api/v5/integration-modules/onlinepbx-bridge/edit")) == 1
    await h.close()
    # A restart with the same settings sends nothing; a new extension code is re-registered.
    h2 = await open_harness(users={"145": "7", "146": "9"})
    assert (await h2.deliver(sample("call_end", uuid="u-3", now=clock()))).status == "done"
    edits = sent(fake, "/api/v5/integration-modules/onlinepbx-bridge/edit")
    assert len(edits) == 2
    module = json.loads(form_of(edits[-1])["integrationModule"])
    assert module["integrations"]["telephony"]["additionalCodes"] == [
        {"userId": 7, "code": "145"},
        {"userId": 9, "code": "146"},
    ]


async def test_a_call_retailcrm_already_has_is_done_not_duplicated(open_harness, fake, clock):
    # The crash window: RetailCRM took the upload, the bridge died before booking it.
    fake.add_customer("79502222919")
    fake.calls.append({"externalId": "u-twice", "type": "out"})
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-twice", now=clock()))
    assert job.status == "done" and "already in RetailCRM" in job.result
    assert fake.external_ids() == ["u-twice"]


async def test_customer_found_by_the_customers_filter(open_harness, fake, clock, no_unmocked_http):
    # telephony/manager names only the manager (no customer): the customers list finds it.
    fake.canned["/api/v5/telephony/manager"] = httpx.Response(
        200, json={"success": True, "manager": {"id": 9}}
    )
    older = fake.add_customer("+7 950 222 29 19", manager=7)
    fake.add_customer("8 (950) 222-29-19")
    fake.add_customer("+7 950 222 29 18")  # another number
    h = await open_harness(create_contacts="never")
    task_payload = sample("call_missed", uuid="u-miss", now=clock())
    task_payload["caller"] = "79502222919"
    job = await h.deliver(task_payload)
    assert job.status == "done", job.last_error
    [search] = sent(fake, "/api/v5/customers")
    assert search.url.params["filter[name]"] == "9502222919"
    [task] = fake.tasks.values()
    assert task["customer"] == {"id": older} and task["performerId"] == 7  # its manager


# -- missed calls -----------------------------------------------------------------------------


async def test_unknown_caller_becomes_a_customer_and_gets_a_task(open_harness, fake, clock):
    h = await open_harness(default_user="9", site="main-store")
    job = await h.deliver(sample("call_missed", uuid="u-new", now=clock()))
    assert job.status == "done", job.last_error
    [create] = sent(fake, "/api/v5/customers/create")
    body = form_of(create)
    assert body["site"] == "main-store"
    customer = json.loads(body["customer"])
    assert customer["phones"] == [{"number": "+79221111123"}] and customer["managerId"] == 9
    [(task_id, task)] = fake.tasks.items()
    assert job.result == f"task:{task_id}"
    cid = next(iter(fake.customers))
    assert task["customer"] == {"id": cid} and task["performerId"] == 9
    assert task["phone"] == "79221111123"
    # Due 15 min after the call (23:41:40 in Moscow, [schedule]'s zone: the core decides),
    # written in the account's zone (Yekaterinburg, 2 h ahead), to the minute.
    assert task["datetime"] == "2026-05-29 01:41"
    assert "79221111123" in task["text"].replace(" ", "").replace("-", "")


async def test_task_without_a_performer_is_dead_with_the_fix(open_harness, fake, clock):
    h = await open_harness(create_contacts="never")
    job = await h.deliver(sample("call_missed", uuid="u-nobody", now=clock()))
    assert job.status == "dead"
    assert "default_user" in job.last_error
    assert not sent(fake, "/api/v5/tasks/create")


# -- refusals ---------------------------------------------------------------------------------


async def test_wrong_key_is_dead_with_retailcrms_words_and_the_fix(open_harness, fake, clock):
    h = await open_harness(api_key="not-the-key")
    job = await h.deliver(sample("call_end", uuid="u-key", now=clock()))
    assert job.status == "dead" and job.attempts == 1
    assert 'HTTP 403 Wrong "apiKey" value.' in job.last_error and "check api_key" in job.last_error
    assert "not-the-key" not in job.last_error


@pytest.mark.parametrize(
    ("status", "message", "outcome", "fix"),
    [
        (503, "Service temporarily unavailable", "pending", "HTTP 503"),  # the rate limit
        (200, "Access denied.", "dead", "API access keys"),  # a refusal in a 2xx answer
    ],
)
async def test_refusals_retried_or_dead(open_harness, fake, clock, status, message, outcome, fix):
    fake.canned["/api/v5/telephony/manager"] = httpx.Response(
        status, json={"success": False, "errorMsg": message}
    )
    h = await open_harness()
    job = await h.deliver(sample("call_end", uuid="u-refused", now=clock()))
    assert job.status == outcome and message in job.last_error and fix in job.last_error


async def test_field_errors_are_dead_naming_the_field(open_harness, fake, clock):
    fake.add_customer("79502222919")
    fake.users = [u for u in fake.users if u["id"] != 7]  # user 7 was deleted
    h = await open_harness(users={"146": "7"}, register_integration=False)
    fake.modules["x"] = {"active": True, "integrations": {"telephony": {}}}
    payload = sample("call_end", uuid="u-field", now=clock())
    payload["caller"] = "146"
    job = await h.deliver(payload)
    assert job.status == "dead"
    assert "Errors in the entity format" in job.last_error
    assert "calls[0][userId]: User not found" in job.last_error


async def test_a_key_for_several_stores_needs_site(open_harness, fake, clock):
    fake.sites = ["shop-a", "shop-b"]
    h = await open_harness(default_user="9")
    job = await h.deliver(sample("call_missed", uuid="u-site", now=clock()))
    assert job.status == "dead"
    assert "Parameter 'site' is missing" in job.last_error and "set site" in job.last_error


# -- check ------------------------------------------------------------------------------------


async def test_check_lists_every_user_and_registers_the_integration(open_harness, fake):
    fake.users = [{"id": i, "firstName": f"U{i}", "email": f"u{i}@x.io"} for i in range(1, 151)]
    h = await open_harness(users={"101": "3"})
    result = await h.adapter.check()
    assert len(result.users) == 150 and result.users[0] == ("1", "U1 <u1@x.io>")
    assert len(sent(fake, "/api/v5/users")) == 2  # two pages of 100
    assert any("registered (1 extension codes)" in n for n in result.notes)
    assert any("Asia/Yekaterinburg differs" in n for n in result.notes)
    assert fake.modules["onlinepbx-bridge"]["integrations"]["telephony"]["additionalCodes"] == [
        {"userId": 3, "code": "101"}
    ]


async def test_check_fails_on_a_wrong_key(open_harness, fake):
    from bridge.adapter import Permanent

    h = await open_harness(api_key="retailcrm-wrong-key-1234")
    with pytest.raises(Permanent, match="Wrong"):
        await h.adapter.check()
