"""Loopback fakes still waiting to move into their adapter folders (amoCRM, RetailCRM), and
the names of ``bridge.fakecrm`` they use. Every other adapter's fake is its
``adapters/<crm>/fake.py``, named by its manifest; this file goes once these two have moved.

amo's answers are built by the respx helpers in ``tests/fakes``. amoCRM carries the call uuid
itself (``uniq`` of a call, ``request_id`` of a task).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

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
from tests.fakes import amocrm as amo

__all__ = ["DOMAIN", "TEMPLATES", "key", "marked"]

AMO_TOKEN = "amo-long-lived-token-6b0f1e2d3c4a5968"

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


def retailcrm_table(base_url: str) -> dict[str, Any]:
    # A task needs a performer: the fake account's one user.
    return dict(
        _CRM_COMMON, type="retailcrm", base_url=base_url, api_key=RETAILCRM_KEY, default_user="1"
    )
