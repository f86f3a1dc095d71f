"""Loopback fakes of amoCRM, Bitrix24, HubSpot and Pipedrive for the reliability harness.

Each answers every endpoint its adapter uses with the vendor's own success and error shapes
(amo's and Bitrix24's are built by the respx helpers in ``tests/fakes``), remembers the numbers
it created records for (so a later search finds them, as the real CRM would), and says which
call a request writes (``call_key``).

Call keys are ``domain/uuid/kind``. No CRM is told the onlinePBX domain, so the fakes use the
sample events' (every event of the harness comes from ``bridge.samples``). amoCRM carries the
call uuid itself (``uniq`` of a call, ``request_id`` of a task), Bitrix24 in a registration's
``EXTERNAL_CALL_ID``. HubSpot and Pipedrive objects and Bitrix24's to-dos have no field for it:
the harness sets the ``call_note`` and ``task_description`` templates to ``TEMPLATES`` (``{uuid}``
is a documented placeholder) and the fakes read the uuid from the note / description written.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import parse_qs

from aiohttp import web

from adapters.zoho import fake as zf
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
from tests.fakes import pipedrive as pd

__all__ = ["DOMAIN", "TEMPLATES", "key", "marked"]

AMO_TOKEN = "amo-long-lived-token-6b0f1e2d3c4a5968"
HUBSPOT_TOKEN = "pat-eu1-reliability-7e6d5c4b-3a29-1807"
PIPEDRIVE_TOKEN = "pd-api-token-3c2b1a09f8e7d6c5b4a3"
ZOHO_SECRET = zf.CLIENT_SECRET
ZOHO_REFRESH = zf.REFRESH_TOKEN
ZOHO_CALL_ID = "PBX_Call_ID"  # a custom unique field: the adapter upserts by it

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


def _hs_object(object_id: int, **properties: Any) -> dict[str, Any]:
    """A CRM v3 object as HubSpot answers a create or a search hit."""
    return {
        "id": str(object_id),
        "properties": {
            "hs_object_id": str(object_id),
            "createdate": "2026-05-28T20:26:41.000Z",
            "lastmodifieddate": "2026-05-28T20:26:41.000Z",
            **properties,
        },
        "createdAt": "2026-05-28T20:26:41.000Z",
        "updatedAt": "2026-05-28T20:26:41.000Z",
        "archived": False,
    }


class FakeHubSpot(_Fake):
    """HubSpot CRM v3 with a private app token."""

    def answer(self, seen: Recorded) -> Any:
        path, body = seen.path, self.json(seen)
        if path == "/crm/v3/objects/contacts/search":
            values = body["filterGroups"][0]["filters"][0]["values"]
            found = self.records.find(values[0])
            hits = [] if found is None else [_hs_object(found, phone=values[0])]
            return {"total": len(hits), "results": hits}
        if seen.method == "GET" and path.startswith("/crm/v3/objects/contacts/"):
            # A contact read with its associations: no company, no deal here.
            return {"id": path.rsplit("/", 1)[1], "properties": {}, "associations": {}}
        if path == "/calling/v1/dispositions":
            return [{"id": "f240bbac-87c9-4f6e-bf70-924b57d47db7", "label": "Connected"}]
        if path.startswith("/crm/v3/objects/"):
            phone = body["properties"].get("phone") if path.endswith("/contacts") else None
            created = _hs_object(self.records.new(phone), **body["properties"])
            return web.json_response(created, status=201)
        if path == "/account-info/v3/details":
            return {"portalId": 62515, "accountType": "STANDARD", "timeZone": "Europe/Moscow"}
        if path == "/crm/v3/owners":
            return {"results": [{"id": "7001", "firstName": "Anna", "email": "a@example.com"}]}
        return web.json_response(self.error_json(404), status=404)

    def error_json(self, status: int) -> Any:
        category, message = {
            401: (
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0"
                " authentication and you can find more details at"
                " https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ),
            403: ("MISSING_SCOPES", "This app hasn't been granted all required scopes."),
            404: ("OBJECT_NOT_FOUND", "resource not found"),
            429: ("RATE_LIMITS", "You have reached your ten_secondly_rolling limit."),
            500: ("INTERNAL_ERROR", "internal error"),
        }[status]
        body = {
            "status": "error",
            "message": message,
            "correlationId": "0e1f2a3b",
            "category": category,
        }
        if status == 429:
            body.update(errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
        return body

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST":
            return None
        props = (self.json(seen) or {}).get("properties") or {}
        if seen.path == "/crm/v3/objects/calls":
            return marked(props.get("hs_call_body"), CALL)
        if seen.path == "/crm/v3/objects/tasks":
            return marked(props.get("hs_task_body"), TASK)
        return None


class FakePipedrive(_Fake):
    """Pipedrive API v1 (call logs) and v2 (persons, activities) with an API token."""

    def answer(self, seen: Recorded) -> Any:
        path, body = seen.path, self.json(seen)
        if path == "/api/v2/persons/search":
            term = seen.query.get("term", "")
            found = self.records.find(term)
            hits = [] if found is None else [pd.search_item(found, "Client", ["+7" + term], 1)]
            return relay(pd.search_answer(*hits))
        if path == "/api/v2/persons":
            phone = body["phones"][0]["value"]
            person_id = self.records.new(phone)
            return relay(pd.person(person_id, body["name"], phone, body.get("owner_id") or 1))
        if path == "/v1/callLogs":
            return relay(pd.call_log(f"call-{self.records.new()}", **body))
        if path == "/api/v2/activities":
            if "person_id" in body:  # read-only in v2, as the live API answers
                return relay(pd.error(400, pd.READ_ONLY_MESSAGE.format(field="person_id")))
            return relay(pd.activity(self.records.new(), **body))
        if path == "/api/v2/deals":  # a person's open deals: none here
            return relay(pd.ok([], additional_data={"next_cursor": None}))
        if path == "/v1/users/me":
            me = {"id": 1, "name": "Admin", "company_name": "Rel", "company_domain": "rel"}
            return relay(pd.ok(me))
        if path == "/v1/users":
            return relay(pd.ok([{"id": 1, "name": "Admin", "email": "admin@example.com"}]))
        return relay(pd.error(404, "Not found"))

    def error_json(self, status: int) -> Any:
        message = {
            401: "unauthorized access",
            403: "You do not have permission to perform this action",
            429: "Too many requests",
            500: "Internal server error",
        }[status]
        return pd.error(status, message, errorCode=status).json()

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST":
            return None
        note = (self.json(seen) or {}).get("note")
        if seen.path == "/v1/callLogs":
            return marked(note, CALL)
        if seen.path == "/api/v2/activities":
            return marked(note, TASK)
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


SALESFORCE_SECRET = "sf-consumer-secret-reliability-5e4d3c2b1a"


class FakeSalesforce(_Fake):
    """A Salesforce org (``adapters.salesforce.fake``) and its token endpoint behind aiohttp,
    its instance URL this server. A Task carries the call uuid in ``CallObject``."""

    @cached_property
    def org(self) -> Any:
        from adapters.salesforce.fake import FakeSalesforce as Org

        return Org(instance_url=self.base_url, client_secret=SALESFORCE_SECRET)

    def answer(self, seen: Recorded) -> Any:
        return relay(self.org(_as_httpx(self.base_url, seen)))

    def error_json(self, status: int) -> Any:
        code, message = {
            401: ("INVALID_SESSION_ID", "Session expired or invalid"),
            403: ("INSUFFICIENT_ACCESS", "insufficient access rights on object id"),
            429: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            500: ("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
        }[status]
        return [{"message": message, "errorCode": code}]

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or not seen.path.endswith("/sobjects/Task/"):
            return None
        task = json.loads(seen.body)
        return key(task["CallObject"], CALL if task.get("TaskSubtype") == "Call" else TASK)


class FakeZoho(_Fake):
    """A Zoho org and its accounts server on one loopback address: ``adapters.zoho.fake``'s
    ``ZohoOrg`` (its refusals and shapes), with a unique ``PBX_Call_ID`` field in Calls and
    Tasks so the adapter's upserts by the PBX call id are exercised."""

    causes: ClassVar[dict[str, str]] = {}

    @cached_property
    def org(self) -> zf.ZohoOrg:
        org = zf.ZohoOrg(accounts_url=self.base_url, api_domain=self.base_url, clock=self.clock)
        for module in ("Calls", "Tasks"):
            org.fields[module].append(zf._f(ZOHO_CALL_ID, custom_field=True))
            org.unique[module] = {ZOHO_CALL_ID}
        return org

    def answer(self, seen: Recorded) -> Any:
        query = "&".join(f"{k}={v}" for k, v in seen.query.items())
        url = f"{self.base_url}{seen.path}" + (f"?{query}" if query else "")
        headers = {k.lower(): v for k, v in seen.headers.items()}
        found = self.org.handle(seen.method, url, headers, seen.body)
        if found.body is None:
            return web.Response(status=found.status)
        return web.json_response(found.body, status=found.status)

    def error_json(self, status: int) -> Any:
        code, message = {
            401: ("INVALID_TOKEN", "invalid oauth token"),
            403: ("NO_PERMISSION", "permission denied"),
            429: ("TOO_MANY_REQUESTS", "The number of API requests has exceeded the limit."),
            500: ("INTERNAL_ERROR", "Internal server error occurred."),
        }[status]
        return {"code": code, "details": {}, "message": message, "status": "error"}

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or seen.path.removesuffix("/upsert") not in (
            "/crm/v8/Calls",
            "/crm/v8/Tasks",
        ):
            return None
        kind = CALL if seen.path.startswith("/crm/v8/Calls") else TASK
        record = ((self.json(seen) or {}).get("data") or [{}])[0]
        return marked(record.get("Description"), kind)


# --- [adapters.<name>] tables pointed at the fakes (named by each manifest's fake_table) ---

# Shared by the CRM tables: no client-side rate limit and 4 requests at a time (the fakes are
# on loopback; the big crash run drains 4000 calls through each), and unknown numbers always
# get a record, so searching, creating and then finding are all exercised.
_CRM_COMMON = {"rate_limit": 0, "concurrency": 4, "create_contacts": "always"}


def amocrm_table(base_url: str) -> dict[str, Any]:
    return {"type": "amocrm", "base_url": base_url, "access_token": AMO_TOKEN, **_CRM_COMMON}


def hubspot_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "hubspot",
        "base_url": base_url,
        "access_token": HUBSPOT_TOKEN,
        "search_rate_limit": 0,
        **_CRM_COMMON,
    }


def pipedrive_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "pipedrive",
        "base_url": base_url,
        "api_token": PIPEDRIVE_TOKEN,
        **_CRM_COMMON,
    }


def retailcrm_table(base_url: str) -> dict[str, Any]:
    # A task needs a performer: the fake account's one user.
    return dict(
        _CRM_COMMON, type="retailcrm", base_url=base_url, api_key=RETAILCRM_KEY, default_user="1"
    )


def zoho_table(base_url: str) -> dict[str, Any]:
    # The accounts server and the org's API on the fake; the PBX call id field makes every
    # write an upsert (Zoho's duplicate check: a repeated write updates the same record).
    return {
        "type": "zoho",
        "accounts_url": base_url,
        "base_url": base_url,
        "client_id": zf.CLIENT_ID,
        "client_secret": ZOHO_SECRET,
        "refresh_token": ZOHO_REFRESH,
        "call_id_field": ZOHO_CALL_ID,
        "default_user": zf.ADMIN_ID,
        **_CRM_COMMON,
    }


def salesforce_table(base_url: str) -> dict[str, Any]:
    # The fake is both the token endpoint (login_url) and the instance it names.
    app = {"client_id": "3MVG9fakeConsumerKey.onlinepbx.bridge"}
    return dict(_CRM_COMMON, type="salesforce", login_url=base_url, **app) | {
        "client_secret": SALESFORCE_SECRET
    }
