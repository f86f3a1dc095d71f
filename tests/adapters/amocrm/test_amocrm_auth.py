"""amoCRM OAuth 2.0: code exchanged once, pair persisted in the bridge database, refreshed
before expiry and once after a 401, kept across a restart."""

from __future__ import annotations

import json

import httpx

from adapters.amocrm import fake as amo
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

OAUTH = {
    "base_url": amo.BASE,
    "client_id": "0b5e6f6c-1111-2222-3333-444455556666",
    "client_secret": "client-secret-abcdefghijklmnop",
    "redirect_uri": "https://bridge.example.ru/amocrm/oauth",
    "authorization_code": "def50200-authorization-code-xyz",
}
TOKEN_URL = f"{amo.BASE}/oauth2/access_token"
CONTACTS = f"{amo.BASE}/api/v4/contacts"
TASKS = f"{amo.BASE}/api/v4/tasks"


def form(route, i: int) -> dict:
    return json.loads(route.calls[i].request.content)


async def test_code_exchanged_once_pair_persisted_across_restart(tmp_path, no_unmocked_http):
    clock = FakeClock()
    token = no_unmocked_http.post(TOKEN_URL).mock(
        side_effect=[
            amo.token_pair("access-1", "refresh-1"),
            amo.token_pair("access-2", "refresh-2"),
        ]
    )
    search = no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8100))
    no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5100))

    h = await AdapterHarness.open(tmp_path, "amocrm", OAUTH, clock=clock)
    try:
        job = await h.deliver(sample("call_missed", now=clock()))
    finally:
        await h.close()
    assert job.status == "done", job.last_error
    assert form(token, 0) == {
        "client_id": OAUTH["client_id"],
        "client_secret": OAUTH["client_secret"],
        "redirect_uri": OAUTH["redirect_uri"],
        "grant_type": "authorization_code",
        "code": OAUTH["authorization_code"],
    }
    assert search.calls[0].request.headers["authorization"] == "Bearer access-1"

    # A restart: the stored pair is used; the (spent) code is not sent again.
    h = await AdapterHarness.open(tmp_path, "amocrm", OAUTH, clock=clock)
    try:
        await _after_restart(h, clock, token, search)
    finally:
        await h.close()


async def _after_restart(h, clock, token, search) -> None:
    job = await h.deliver(sample("call_missed", now=clock()))
    assert job.status == "done", job.last_error
    assert token.call_count == 1
    assert search.calls[-1].request.headers["authorization"] == "Bearer access-1"

    # Close to expiry: refreshed with the stored refresh token, and persisted.
    clock.advance(86400 - 60)
    job = await h.deliver(sample("call_missed", now=clock()))
    assert job.status == "done", job.last_error
    assert form(token, 1)["grant_type"] == "refresh_token"
    assert form(token, 1)["refresh_token"] == "refresh-1"
    assert search.calls[-1].request.headers["authorization"] == "Bearer access-2"
    stored = await h.db.adapter_value("amocrm", "oauth")
    assert json.loads(stored)["refresh_token"] == "refresh-2"


async def test_401_refreshes_once_and_resends(tmp_path, no_unmocked_http):
    clock = FakeClock()
    table = {**OAUTH, "authorization_code": None, "refresh_token": "refresh-0"}
    token = no_unmocked_http.post(TOKEN_URL).mock(
        side_effect=[
            amo.token_pair("access-1", "refresh-1"),
            amo.token_pair("access-2", "refresh-2"),
        ]
    )
    search = no_unmocked_http.get(CONTACTS).mock(
        side_effect=[amo.problem(401, "Unauthorized"), amo.empty_search()]
    )
    no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8101))
    no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5101))
    h = await AdapterHarness.open(tmp_path, "amocrm", table, clock=clock)
    try:
        job = await h.deliver(sample("call_missed", now=clock()))

        assert job.status == "done", job.last_error
        assert [form(token, i)["refresh_token"] for i in range(2)] == ["refresh-0", "refresh-1"]
        assert [c.request.headers["authorization"] for c in search.calls] == [
            "Bearer access-1",
            "Bearer access-2",
        ]
    finally:
        await h.close()


async def test_token_still_refused_after_refresh_is_dead(tmp_path, no_unmocked_http):
    clock = FakeClock()
    table = {**OAUTH, "authorization_code": None, "refresh_token": "refresh-0"}
    no_unmocked_http.post(TOKEN_URL).mock(
        side_effect=[
            amo.token_pair("access-1", "refresh-1"),
            amo.token_pair("access-2", "refresh-2"),
        ]
    )
    search = no_unmocked_http.get(CONTACTS).mock(return_value=amo.problem(401, "Unauthorized"))
    h = await AdapterHarness.open(tmp_path, "amocrm", table, clock=clock)
    try:
        job = await h.deliver(sample("call_missed", now=clock()))

        assert job.status == "dead"
        assert "token revoked or expired" in job.last_error
        assert search.call_count == 2  # one resend after one refresh, no loop
    finally:
        await h.close()


async def test_refused_grant_is_dead_with_what_to_do(tmp_path, no_unmocked_http):
    clock = FakeClock()
    no_unmocked_http.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            400,
            headers=amo.PROBLEM,
            json={
                "hint": "Authorization code has been revoked",
                "title": "Некорректный запрос",
                "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                "status": 400,
                "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
            },
        )
    )
    h = await AdapterHarness.open(tmp_path, "amocrm", OAUTH, clock=clock)
    try:
        job = await h.deliver(sample("call_missed", now=clock()))

        assert job.status == "dead"
        assert "refused the authorization_code" in job.last_error
        assert "Authorization code has been revoked" in job.last_error
        assert "set a new authorization_code" in job.last_error
        assert OAUTH["client_secret"] not in job.last_error
        assert OAUTH["authorization_code"] not in job.last_error
    finally:
        await h.close()


async def test_new_grant_in_settings_replaces_the_stored_pair(tmp_path, no_unmocked_http):
    clock = FakeClock()
    token = no_unmocked_http.post(TOKEN_URL).mock(
        side_effect=[
            amo.token_pair("access-1", "refresh-1"),
            amo.token_pair("access-9", "refresh-9"),
        ]
    )
    search = no_unmocked_http.get(CONTACTS).mock(return_value=amo.empty_search())
    no_unmocked_http.post(TASKS).mock(return_value=amo.created("tasks", 8102))
    no_unmocked_http.post(CONTACTS).mock(return_value=amo.created("contacts", 5102))

    h = await AdapterHarness.open(tmp_path, "amocrm", OAUTH, clock=clock)
    try:
        assert (await h.deliver(sample("call_missed", now=clock()))).status == "done"
    finally:
        await h.close()

    # The admin re-authorized the integration and pasted a new code.
    h = await AdapterHarness.open(
        tmp_path, "amocrm", {**OAUTH, "authorization_code": "def50200-new-code"}, clock=clock
    )
    try:
        assert (await h.deliver(sample("call_missed", now=clock()))).status == "done"
        assert form(token, 1)["code"] == "def50200-new-code"
        assert search.calls[-1].request.headers["authorization"] == "Bearer access-9"
    finally:
        await h.close()
