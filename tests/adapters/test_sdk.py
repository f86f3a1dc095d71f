"""The adapter SDK itself: declared auth, the JSON-API base's one hook and common rules,
typed outcomes, capabilities by presence. Run through a small plugin adapter ("demo")."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from bridge import registry
from bridge.adapter import (
    Answer,
    Auth,
    BearerToken,
    CheckResult,
    CredentialSettings,
    JsonAdapter,
    JsonAPI,
    KeyLocks,
    OAuth2,
    Skipped,
    capabilities,
)
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

API = "https://demo.example"


class DemoSettings(CredentialSettings):
    CRM: ClassVar[str] = "Demo"
    TOKEN_KEY: ClassVar[str] = "api_key"
    api_key: SecretStr | None = None


class DemoAPI(JsonAPI):
    VENDOR = "Demo"
    DEFAULT_BASE_URL = API
    AUTH = Auth(
        token=BearerToken(prefix="Key "),
        oauth=OAuth2(token_url="/oauth/token", default_expires_in=600),
    )
    HINTS: ClassVar[dict[int, str]] = {401: " (set a new api_key)"}

    def refusal(self, answer: Answer, what: str) -> str | None:
        # Demo's envelope: {"ok": false, "why": "..."}, even inside a 200.
        return answer.object.get("why") if answer.object.get("ok") is False else None


class DemoAdapter(JsonAdapter[DemoSettings, DemoAPI]):
    """Only the three required methods: no contact support at all."""

    async def log_call(self, log):
        if log.call.talk_seconds == 0:
            return Skipped("Demo keeps answered calls only")
        data = await self.api.call("POST", "/calls", json={"n": log.call.client_number})
        return f"call:{data['id']}"

    async def create_task(self, task):
        return "task:1"

    async def check(self):
        return CheckResult(account="demo")


@pytest.fixture
def demo(monkeypatch):
    ep = EntryPoint("demo", f"{__name__}:DemoAdapter", registry.ENTRY_POINT_GROUP)
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), ep])


@pytest.fixture
async def harness(tmp_path, demo):
    made: list[AdapterHarness] = []

    async def open_(**table: Any) -> AdapterHarness:
        h = await AdapterHarness.open(tmp_path, "demo", table, clock=FakeClock())
        made.append(h)
        return h

    yield open_
    for h in made:
        await h.close()


def test_capabilities_are_read_from_the_methods_a_class_defines():
    assert capabilities(DemoAdapter) == {"log_call", "create_task", "check"}
    from adapters.local.adapter import LocalAdapter

    assert {"find_contact", "create_contact"} <= capabilities(LocalAdapter)


def test_settings_take_a_token_or_an_oauth_app_not_both():
    with pytest.raises(ValueError, match="give either api_key or the OAuth keys"):
        DemoSettings(api_key="k", client_id="c")
    with pytest.raises(ValueError, match=r"missing: client_secret, refresh_token"):
        DemoSettings(client_id="c")
    with pytest.raises(ValueError, match="redirect_uri"):
        DemoSettings(client_id="c", client_secret="s", authorization_code="code")
    assert DemoSettings(api_key="k").auth_kind == "token"
    assert DemoSettings(client_id="c", client_secret="s", refresh_token="r").auth_kind == "oauth"


async def test_a_json_adapter_header_declares_its_settings_and_builds_and_closes_its_api(
    harness,
):
    assert DemoAdapter.Settings is DemoSettings and DemoAdapter.API is DemoAPI
    h = await harness(api_key="k-123")
    api = h.adapter.api
    assert isinstance(api, DemoAPI) and h.adapter.settings.api_key.get_secret_value() == "k-123"
    closed: list[bool] = []
    real = api.aclose

    async def spy() -> None:
        closed.append(True)
        await real()

    api.aclose = spy
    await h.adapter.aclose()
    assert closed == [True]


async def test_a_static_token_goes_in_the_declared_header(harness, no_unmocked_http):
    calls = no_unmocked_http.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"ok": True, "id": 7})
    )
    h = await harness(api_key="k-123")
    job = await h.deliver(sample("call_end", uuid="sdk-1"))
    assert job.status == "done" and job.result == "call:7"
    assert calls.calls[0].request.headers["authorization"] == "Key k-123"


async def test_the_vendor_refusal_inside_a_200_is_permanent(harness, no_unmocked_http):
    no_unmocked_http.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"ok": False, "why": "number is blocked"})
    )
    h = await harness(api_key="k")
    job = await h.deliver(sample("call_end", uuid="sdk-2"))
    assert job.status == "dead" and job.last_error == "POST /calls: HTTP 200 number is blocked"


@pytest.mark.parametrize(
    ("answer", "status", "needle"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), "pending", "not JSON"),
        (httpx.Response(503, json={"ok": False, "why": "down"}), "pending", "HTTP 503 down"),
        (httpx.Response(401, json={"ok": False, "why": "bad key"}), "dead", "set a new api_key"),
        (httpx.Response(422, text="nope"), "dead", "HTTP 422 nope"),
    ],
)
async def test_common_status_rules_follow_the_hook(
    harness, no_unmocked_http, answer, status, needle
):
    no_unmocked_http.post(f"{API}/calls").mock(return_value=answer)
    h = await harness(api_key="k")
    job = await h.deliver(sample("call_end", uuid=f"sdk-{answer.status_code}"))
    assert job.status == status and needle in (job.last_error or "")


async def test_oauth_refreshes_and_resends_once_after_a_refused_token(harness, no_unmocked_http):
    tokens = iter(range(1, 10))
    token = no_unmocked_http.post(f"{API}/oauth/token").mock(
        side_effect=lambda request: httpx.Response(
            200, json={"access_token": f"a-{next(tokens)}", "refresh_token": "r-next"}
        )
    )
    calls = no_unmocked_http.post(f"{API}/calls")
    calls.side_effect = [
        httpx.Response(401, json={"ok": False, "why": "expired"}),
        httpx.Response(200, json={"ok": True, "id": 1}),
        httpx.Response(401, json={"ok": False, "why": "expired"}),
        httpx.Response(401, json={"ok": False, "why": "expired"}),
    ]
    h = await harness(client_id="c", client_secret="s", refresh_token="r-0")
    job = await h.deliver(sample("call_end", uuid="sdk-o1"))
    assert job.status == "done"
    assert [c.request.headers["authorization"] for c in calls.calls] == [
        "Bearer a-1",
        "Bearer a-2",
    ]
    sent = dict(httpx.QueryParams(token.calls[0].request.content.decode()))
    assert sent == {
        "client_id": "c",
        "client_secret": "s",
        "grant_type": "refresh_token",
        "refresh_token": "r-0",
    }
    # A token the vendor keeps refusing is not refreshed in a loop: one resend, then dead.
    job = await h.deliver(sample("call_end", uuid="sdk-o2"))
    assert job.status == "dead" and calls.call_count == 4 and token.call_count == 3


async def test_a_refused_refresh_is_permanent_with_the_vendor_words(harness, no_unmocked_http):
    no_unmocked_http.post(f"{API}/oauth/token").mock(
        return_value=httpx.Response(
            400, json={"error": "invalid_grant", "error_description": "token was used"}
        )
    )
    h = await harness(client_id="c", client_secret="s3cr3t", refresh_token="r-0")
    job = await h.deliver(sample("call_end", uuid="sdk-o3"))
    assert job.status == "dead"
    assert "Demo refused the refresh_token (invalid_grant; token was used)" in job.last_error
    assert "s3cr3t" not in job.last_error and "r-0" not in job.last_error


async def test_skipped_is_booked_done_with_its_label_and_never_remembered(
    harness, no_unmocked_http
):
    h = await harness(api_key="k")
    payload = sample("call_end", uuid="sdk-skip")
    payload["dialog_duration"] = "0"
    job = await h.deliver(payload)
    assert job.status == "done" and job.result == "skipped: Demo keeps answered calls only"
    # Not stored as a CRM id: nothing of this call is in crm_objects.
    rows = await h.db.db.fetchall("SELECT name FROM crm_objects")
    assert rows == []
    # The worker's metric counts it as skipped, not done.
    metrics = h.worker._metrics.jobs
    assert metrics.labels("demo", "skipped")._value.get() == 1
    assert metrics.labels("demo", "done")._value.get() == 0


async def test_an_adapter_without_contact_methods_logs_inbound_calls(harness, no_unmocked_http):
    calls = no_unmocked_http.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"ok": True, "id": 9})
    )
    h = await harness(api_key="k")  # create_contacts = "inbound" by default
    payload = sample("call_end", uuid="sdk-in")
    payload.update(direction="inbound", caller=payload["callee"], callee=payload["caller"])
    job = await h.deliver(payload)
    assert job.status == "done", job.last_error
    assert json.loads(calls.calls[0].request.content)["n"].startswith("+")
    missed = await h.deliver(sample("call_missed", uuid="sdk-missed"))
    assert missed.status == "done" and missed.result == "task:1"


async def test_key_locks_run_one_body_per_key_and_forget_idle_keys():
    locks = KeyLocks()
    inside: list[str] = []
    release = asyncio.Event()

    async def body(key: str, name: str) -> None:
        async with locks.hold(key):
            inside.append(name)
            await release.wait()

    tasks = [asyncio.create_task(body(k, n)) for k, n in (("a", "a1"), ("a", "a2"), ("b", "b1"))]
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == ["a1", "b1"]  # a2 waits for a1; b1 runs beside it
    assert len(locks) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert inside == ["a1", "b1", "a2"]
    assert len(locks) == 0  # nobody holds or waits: no lock kept per key ever seen
