"""Bitrix24 error envelopes, OAuth refresh, `check`, and settings validation."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import ValidationError

from adapters.bitrix24.fake import (
    CODE,
    FINISHED,
    OAUTH_URL,
    PORTAL,
    REGISTERED,
    WEBHOOK,
    body,
    crm_entity,
    error,
    ok,
    timing,
)
from adapters.bitrix24.settings import Bitrix24Settings
from bridge.registry import configured
from bridge.samples import sample
from bridge.settings import SettingsError
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def telephony_ok(mock, base: str) -> None:
    """Lines, register and finish answer as for any call (missed calls are registered too)."""
    mock.post(base + "telephony.externalLine.add").return_value = ok({"ID": 7})
    mock.post(base + "telephony.externalCall.register").return_value = ok(REGISTERED)
    mock.post(base + "telephony.externalCall.finish").return_value = ok(FINISHED)


@pytest.fixture
async def harness(tmp_path, clock, no_unmocked_http):
    telephony_ok(no_unmocked_http, WEBHOOK)
    table = {"webhook_url": WEBHOOK, "users": {"145": 7}, "events": ["log_call", "create_task"]}
    h = await AdapterHarness.open(tmp_path, "bitrix24", table, clock=clock)
    yield h
    await h.close()


def search(mock):
    return mock.post(WEBHOOK + "telephony.externalCall.searchCrmEntities")


@pytest.mark.parametrize(
    ("status", "code", "description"),
    [
        (503, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
        (500, "INTERNAL_SERVER_ERROR", "Internal server error"),
        (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response"),
        (502, "", "Bad gateway"),
    ],
)
async def test_transient_errors_are_retried(
    harness, clock, no_unmocked_http, status, code, description
):
    search(no_unmocked_http).return_value = error(status, code, description)
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.status == "pending"
    assert f"HTTP {status}" in job.last_error or code in job.last_error


async def test_operation_time_limit_waits_for_the_reset_time(harness, clock, no_unmocked_http):
    search(no_unmocked_http).return_value = error(
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit",
        time=timing(clock(), reset_in=420),
    )
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.status == "pending" and "OPERATION_TIME_LIMIT" in job.last_error
    assert job.due_at - clock() == pytest.approx(420, abs=1)


async def test_operation_time_limit_without_time_uses_retry_after(harness, clock, no_unmocked_http):
    search(no_unmocked_http).return_value = httpx.Response(
        429,
        headers={"Retry-After": "90"},
        json={"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"},
    )
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.due_at - clock() == pytest.approx(90, abs=1)


@pytest.mark.parametrize("status", [429, 503])
async def test_other_retryable_errors_wait_for_retry_after(
    harness, clock, no_unmocked_http, status
):
    # No Bitrix24 code of its own (a proxy's or a new code): the common status rules decide,
    # Retry-After included, and the vendor's words stay in the reason.
    search(no_unmocked_http).return_value = httpx.Response(
        status,
        headers={"Retry-After": "75"},
        json={"error": "SOME_NEW_LIMIT", "error_description": "slow down"},
    )
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.status == "pending"
    assert f"HTTP {status} SOME_NEW_LIMIT (slow down)" in job.last_error
    assert job.due_at - clock() == pytest.approx(75, abs=1)


@pytest.mark.parametrize(
    ("status", "code", "description", "advice"),
    [
        (401, "NO_AUTH_FOUND", "Wrong authorization data", "create one in Developer resources"),
        (403, "INVALID_CREDENTIALS", "Invalid request credentials", "give that user those rights"),
        (
            401,
            "insufficient_scope",
            "The request requires higher privileges than provided by the webhook token",
            "scopes crm, telephony, user",
        ),
        (
            403,
            "ACCESS_DENIED",
            "REST API is available only on commercial plans",
            "renew or upgrade the plan",
        ),
        (403, "", "Access denied.", "lacks CRM permission"),
    ],
)
async def test_auth_and_permission_errors_are_dead_with_a_fix(
    harness, clock, no_unmocked_http, status, code, description, advice
):
    # The to-do step meets the error (search and the lead are fine).
    search(no_unmocked_http).return_value = ok([crm_entity()])
    no_unmocked_http.post(WEBHOOK + "crm.activity.todo.add").return_value = error(
        status, code, description
    )
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.status == "dead"
    assert advice in job.last_error
    assert CODE not in job.last_error


async def test_unknown_user_id_is_dead_naming_the_users_map(harness, clock, no_unmocked_http):
    search(no_unmocked_http).return_value = ok([crm_entity()])
    no_unmocked_http.post(WEBHOOK + "telephony.externalCall.register").return_value = error(
        400, "ERROR_CORE", "User is not found or is not active"
    )
    job = await harness.deliver(sample("call_end", now=clock()))
    assert job.status == "dead" and "users map" in job.last_error


async def test_network_error_reason_never_shows_the_webhook_code(harness, clock, no_unmocked_http):
    search(no_unmocked_http).side_effect = httpx.ConnectError(
        f"cannot reach {WEBHOOK}telephony.externalCall.searchCrmEntities"
    )
    job = await harness.deliver(sample("call_missed", now=clock()))
    assert job.status == "pending"
    assert CODE not in job.last_error


# --- OAuth ------------------------------------------------------------------------------

OAUTH_TABLE = {
    "base_url": PORTAL + "/",
    "client_id": "local.5fa95159e99329.13335518",
    "client_secret": "app-secret-0123456789",
    "refresh_token": "first-refresh-token",
    "oauth_url": OAUTH_URL,
    "default_user": 1,
    "events": ["log_call", "create_task"],
}


def token_answer(n: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": f"access-{n}",
            "client_endpoint": f"{PORTAL}/rest/",
            "domain": "oauth.bitrix.info",
            "expires_in": 3600,
            "member_id": "a223c6b3710f85df22e9377d6c4f7553",
            "refresh_token": f"refresh-{n}",
            "scope": "app",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "L",
        },
    )


async def test_oauth_refreshes_once_on_expired_token(tmp_path, clock, no_unmocked_http):
    telephony_ok(no_unmocked_http, PORTAL + "/rest/")
    h = await AdapterHarness.open(tmp_path, "bitrix24", OAUTH_TABLE, clock=clock)
    token = no_unmocked_http.get(OAUTH_URL)
    token.side_effect = [token_answer(1), token_answer(2)]
    found = no_unmocked_http.post(PORTAL + "/rest/telephony.externalCall.searchCrmEntities")
    found.side_effect = [
        ok([crm_entity()]),
        error(401, "expired_token", "The access token provided has expired."),
        ok([crm_entity()]),
    ]
    todo = no_unmocked_http.post(PORTAL + "/rest/crm.activity.todo.add")
    todo.return_value = ok({"id": 1})
    try:
        assert (await h.deliver(sample("call_missed", now=clock()))).status == "done"
        job = await h.deliver(sample("call_missed", now=clock()))
        assert job.status == "done", job.last_error
    finally:
        await h.close()

    first = token.calls[0].request.url.params
    assert dict(first) == {
        "grant_type": "refresh_token",
        "client_id": "local.5fa95159e99329.13335518",
        "client_secret": "app-secret-0123456789",
        "refresh_token": "first-refresh-token",
    }
    assert token.calls[1].request.url.params["refresh_token"] == "refresh-1"
    assert [body(found, i)["auth"] for i in range(3)] == ["access-1", "access-1", "access-2"]
    assert body(todo)["auth"] == "access-2"
    assert body(found, 2)["PHONE_NUMBER"] == "79221111123"


async def test_oauth_invalid_grant_is_dead_with_reauthorize_advice(
    tmp_path, clock, no_unmocked_http
):
    h = await AdapterHarness.open(tmp_path, "bitrix24", OAUTH_TABLE, clock=clock)
    no_unmocked_http.get(OAUTH_URL).return_value = httpx.Response(
        400, json={"error": "invalid_grant", "error_description": "Invalid grant"}
    )
    try:
        job = await h.deliver(sample("call_missed", now=clock()))
    finally:
        await h.close()
    assert job.status == "dead"
    assert "re-authorize the app" in job.last_error
    assert "first-refresh-token" not in job.last_error
    assert "app-secret-0123456789" not in job.last_error


async def test_oauth_app_gets_telephony_log(tmp_path, clock, no_unmocked_http):
    no_unmocked_http.post(PORTAL + "/rest/telephony.externalLine.add").return_value = ok({"ID": 1})
    h = await AdapterHarness.open(tmp_path, "bitrix24", OAUTH_TABLE, clock=clock)
    no_unmocked_http.get(OAUTH_URL).return_value = token_answer(1)
    no_unmocked_http.post(
        PORTAL + "/rest/telephony.externalCall.searchCrmEntities"
    ).return_value = ok([crm_entity()])
    register = no_unmocked_http.post(PORTAL + "/rest/telephony.externalCall.register")
    register.return_value = ok(REGISTERED)
    finish = no_unmocked_http.post(PORTAL + "/rest/telephony.externalCall.finish")
    finish.return_value = ok(FINISHED)
    try:
        job = await h.deliver(sample("call_end", now=clock()))
    finally:
        await h.close()
    assert job.status == "done", job.last_error
    # Extension 145 is not mapped here: the record's owner takes the call.
    assert body(register)["auth"] == "access-1" and body(register)["USER_ID"] == 99
    assert body(finish)["auth"] == "access-1"


# --- check ------------------------------------------------------------------------------


async def test_check_proves_credentials_and_lists_users(harness, no_unmocked_http):
    no_unmocked_http.post(WEBHOOK + "profile").return_value = ok(
        {"ID": "1", "ADMIN": True, "NAME": "Vadim", "LAST_NAME": "Valeev"}
    )
    users = no_unmocked_http.post(WEBHOOK + "user.get")
    users.side_effect = [
        ok(
            [{"ID": "1", "NAME": "Vadim", "LAST_NAME": "Valeev", "UF_PHONE_INNER": "101"}],
            total=2,
            next=50,
        ),
        ok([{"ID": "3", "NAME": "John", "LAST_NAME": "Doe"}], total=2),
    ]
    result = await harness.adapter.check()
    assert result.account == "example.bitrix24.ru (as Vadim Valeev #1, admin)"
    assert result.users == [("1", "Vadim Valeev (ext. 101)"), ("3", "John Doe")]
    assert [body(users, i)["start"] for i in (0, 1)] == [0, 50]
    assert body(users, 0)["filter"] == {"ACTIVE": True}
    assert CODE not in json.dumps([result.account, *result.notes])


async def test_check_with_a_dead_webhook_fails(harness, no_unmocked_http):
    no_unmocked_http.post(WEBHOOK + "profile").return_value = error(
        401, "NO_AUTH_FOUND", "Wrong authorization data"
    )
    with pytest.raises(Exception, match="inbound webhook was deleted"):
        await harness.adapter.check()


# --- settings ---------------------------------------------------------------------------


def test_settings_need_exactly_one_kind_of_credentials():
    with pytest.raises(ValidationError, match="either webhook_url or the OAuth keys"):
        Bitrix24Settings(webhook_url=WEBHOOK, client_id="x")
    with pytest.raises(ValidationError, match="missing: client_secret, refresh_token"):
        Bitrix24Settings(base_url=PORTAL, client_id="x")


def test_bad_webhook_url_error_does_not_echo_it():
    bad = f"https://example.bitrix24.ru/rest/{CODE}/"
    with pytest.raises(SettingsError) as info:
        configured({"bitrix24": {"webhook_url": bad}})
    assert "webhook_url must look like" in str(info.value)
    assert CODE not in str(info.value)


def test_webhook_code_is_a_secret_and_user_is_parsed():
    s = Bitrix24Settings(webhook_url=WEBHOOK.rstrip("/"))
    assert s.webhook_url is not None and s.webhook_url.get_secret_value() == WEBHOOK
    assert CODE in s.secrets() and WEBHOOK in s.secrets()
    assert s.webhook_parts == ("1", CODE)
    assert s.rate_limit == 2.0 and s.task_kind == "todo"
    assert CODE not in repr(s)
