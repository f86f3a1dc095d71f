"""Loopback fakes still waiting to move into their adapter folders (amoCRM, Bitrix24,
RetailCRM), and the names of ``bridge.fakecrm`` they use. Every other adapter's fake is its
``adapters/<crm>/fake.py``, named by its manifest; this file goes once these three have moved.

amo's and Bitrix24's answers are built by the respx helpers in ``tests/fakes``. amoCRM carries
the call uuid itself (``uniq`` of a call, ``request_id`` of a task), Bitrix24 in a
registration's ``EXTERNAL_CALL_ID``; Bitrix24's to-dos have no field for it (``TEMPLATES``).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import parse_qs

from adapters.amocrm import fake as amo
from bridge import fakecrm as fakes
from bridge.fakecrm import (
    CALL,
    CRM_COMMON,
    DOMAIN,
    TASK,
    TEMPLATES,
    FakeCRM,
    Recorded,
    as_httpx,
    key,
    marked,
    relay,
)
from tests.fakes import bitrix24 as b24

__all__ = ["DOMAIN", "TEMPLATES", "key", "marked"]

AMO_TOKEN = "amo-long-lived-token-6b0f1e2d3c4a5968"
B24_SECRET = "b24-client-secret-5a4b3c2d1e0f"
B24_REFRESH = "b24-refresh-token-0f9e8d7c6b5a"
B24_ACCESS = "b24-access-token-1a2b3c4d5e6f"  # what the fake's OAuth server issues

# The shared base moved to bridge.fakecrm (adapters' own fakes import it from there).
_Fake = FakeCRM
_as_httpx = as_httpx
_CRM_COMMON = CRM_COMMON


class FakeAmo(_Fake):
    """amoCRM API v4 with a private integration's long-lived token."""

    def answer(self, seen: Recorded) -> Any:
        path, body = seen.path, self.json(seen)
        if path == "/api/v4/contacts" and seen.method == "GET":
            found = self.records.find(seen.query.get("query", ""))
            if found is None:
                return relay(amo.empty_search())  # 204, no body
            return relay(amo.contacts_page(amo.contact(found, ["+7" + seen.query["query"]])))
        if path == "/api/v4/companies" and seen.method == "GET":
            return relay(amo.empty_search())  # the harness's callers are never companies
        if path == "/api/v4/contacts":
            phone = body[0]["custom_fields_values"][0]["values"][0]["value"]
            return relay(amo.created("contacts", self.records.new(phone)))
        if path == "/api/v4/calls":
            return relay(amo.call_added(self.records.new(), body[0].get("entity_id") or 1))
        if path == "/api/v4/tasks":
            if not body[0].get("responsible_user_id"):
                return relay(amo.task_without_responsible())  # required by amo
            return relay(amo.created("tasks", self.records.new(), body[0]["request_id"]))
        if path == "/api/v4/account":
            return {
                "id": 28805383,
                "name": "Reliability",
                "subdomain": "reliability",
                "current_user_id": 5550001,
            }
        if path == "/api/v4/users":
            return {"_embedded": {"users": [{"id": 5550001, "name": "Manager"}]}, "_links": {}}
        return relay(amo.problem(404, "Not Found"))

    def error_json(self, status: int) -> Any:
        titles = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}
        return amo.problem(status, titles.get(status, "Internal Server Error")).json()

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or seen.path not in ("/api/v4/calls", "/api/v4/tasks"):
            return None
        item = self.json(seen)[0]
        if seen.path == "/api/v4/calls":
            return key(item["uniq"], CALL)
        return key(item["request_id"], TASK)


class FakeBitrix24(_Fake):
    """A Bitrix24 portal reached by an OAuth app (``/rest/<method>``) and its OAuth server
    (``/oauth/token/``). A repeated ``register`` of an unfinished call returns the same
    ``CALL_ID``, as Bitrix24 documents for 30 minutes."""

    causes: ClassVar[dict[str, str]] = {
        fakes.RATE_LIMIT_SECONDS: "OPERATION_TIME_LIMIT",
        fakes.RATE_LIMIT_DATE: "OPERATION_TIME_LIMIT",
        fakes.UNAUTHORIZED: "NO_AUTH_FOUND",
        fakes.FORBIDDEN: "ACCESS_DENIED",
    }

    @cached_property
    def open_calls(self) -> dict[str, dict[str, Any]]:
        return {}  # EXTERNAL_CALL_ID → its registration, until finished

    def answer(self, seen: Recorded) -> Any:
        if seen.path.startswith("/oauth/token"):
            return {
                "access_token": B24_ACCESS,
                "refresh_token": B24_REFRESH,
                "expires_in": 3600,
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "client_endpoint": f"{self.base_url}/rest/",
            }
        method = seen.path.removeprefix("/rest/")
        return relay(b24.ok(self._result(method, self.json(seen) or {})))

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "telephony.externalCall.searchCrmEntities":
            found = self.records.find(params["PHONE_NUMBER"])
            return [] if found is None else [b24.crm_entity("LEAD", found)]
        if method == "crm.duplicate.findbycomm":
            return []  # what Bitrix24 answers when nothing matches
        if method == "crm.lead.add":
            return self.records.new(params["fields"]["PHONE"][0]["VALUE"])
        if method == "telephony.externalCall.register":
            return self._register(params)
        if method == "telephony.externalCall.finish":
            for ext, reg in list(self.open_calls.items()):
                if reg["CALL_ID"] == params["CALL_ID"]:
                    del self.open_calls[ext]
            return {**b24.FINISHED, "CALL_ID": params["CALL_ID"], "ID": self.records.new()}
        if method == "crm.activity.todo.add":
            return {"id": self.records.new()}
        if method == "tasks.task.add":
            return {"task": {"id": self.records.new()}}
        if method == "profile":
            return {"ID": "1", "ADMIN": True, "NAME": "Admin", "LAST_NAME": ""}
        if method == "user.get":
            return [{"ID": "1", "NAME": "Admin", "LAST_NAME": "", "ACTIVE": True}]
        return {}

    def _register(self, params: dict[str, Any]) -> dict[str, Any]:
        ext = str(params["EXTERNAL_CALL_ID"])
        if ext not in self.open_calls:
            lead = self.records.new(params["PHONE_NUMBER"]) if params.get("CRM_CREATE") else None
            self.open_calls[ext] = {
                **b24.REGISTERED,
                "CALL_ID": f"externalCall.{self.records.new()}.{ext}",
                "CRM_CREATED_LEAD": lead,
                "CRM_ENTITY_TYPE": "LEAD" if lead else params.get("CRM_ENTITY_TYPE"),
                "CRM_ENTITY_ID": lead or params.get("CRM_ENTITY_ID"),
            }
        return self.open_calls[ext]

    def error_json(self, status: int) -> Any:
        code, text = {
            401: ("NO_AUTH_FOUND", "Wrong authorization data"),
            403: ("ACCESS_DENIED", "REST API is available only on commercial plans"),
            429: ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
            500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
        }[status]
        return b24.error(status, code, text).json()

    def call_key(self, seen: Recorded) -> str | None:
        method = seen.path.removeprefix("/rest/")
        params = self.json(seen) or {}
        if method == "telephony.externalCall.register":
            return key(params["EXTERNAL_CALL_ID"], CALL)
        if method == "crm.activity.add":
            return key(params["fields"]["ORIGIN_ID"], CALL)
        if method == "crm.activity.todo.add":
            return marked(params.get("description"), TASK)
        if method == "tasks.task.add":
            return marked(params["fields"].get("DESCRIPTION"), TASK)
        return None


RETAILCRM_KEY = "retailcrm-reliability-key-9f8e7d6c5b4a"


class FakeRetailCRM(_Fake):
    """RetailCRM API v5: the account of ``adapters.retailcrm.fake`` behind aiohttp. A call
    carries its uuid as ``externalId``; a task names it in its ``commentary``."""

    @cached_property
    def account(self) -> Any:
        from adapters.retailcrm.fake import FakeRetailCRM as Account

        return Account(api_key=RETAILCRM_KEY, users=[{"id": 1, "firstName": "Manager"}])

    def answer(self, seen: Recorded) -> Any:
        return relay(self.account(_as_httpx(self.base_url, seen)))

    def error_json(self, status: int) -> Any:
        message = {
            401: 'Wrong "apiKey" value.',
            403: "Access denied.",
            429: "Too many requests",
            500: "Internal Server Error",
        }[status]
        return {"success": False, "errorMsg": message}

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or not seen.body:
            return None
        params = {k: v[-1] for k, v in parse_qs(seen.body.decode()).items()}
        if seen.path == "/api/v5/telephony/calls/upload" and "calls" in params:
            return key(json.loads(params["calls"])[0]["externalId"], CALL)
        if seen.path == "/api/v5/tasks/create" and "task" in params:
            return marked(json.loads(params["task"]).get("commentary"), TASK)
        return None


# --- [adapters.<name>] tables pointed at the fakes (named by each manifest's fake_table) ---

# Shared by the CRM tables: no client-side rate limit and 4 requests at a time (the fakes are
# on loopback; the big crash run drains 4000 calls through each), and unknown numbers always
# get a record, so searching, creating and then finding are all exercised.
_CRM_COMMON = {"rate_limit": 0, "concurrency": 4, "create_contacts": "always"}


def amocrm_table(base_url: str) -> dict[str, Any]:
    return {"type": "amocrm", "base_url": base_url, "access_token": AMO_TOKEN, **_CRM_COMMON}


def bitrix24_table(base_url: str) -> dict[str, Any]:
    # An OAuth app: an inbound webhook_url must be https, and the OAuth refresh is covered too.
    return {
        "type": "bitrix24",
        "base_url": base_url,
        "oauth_url": f"{base_url}/oauth/token/",
        "client_id": "local.reliability.1",
        "client_secret": B24_SECRET,
        "refresh_token": B24_REFRESH,
        "default_user": "1",
        **_CRM_COMMON,
    }


def retailcrm_table(base_url: str) -> dict[str, Any]:
    # A task needs a performer: the fake account's one user. Post-call jobs only: the harness
    # counts one job per (call, adapter), and `over` would add a second for every call_end.
    return dict(
        _CRM_COMMON,
        type="retailcrm",
        base_url=base_url,
        api_key=RETAILCRM_KEY,
        default_user="1",
        events=["log_call", "create_task"],
    )
