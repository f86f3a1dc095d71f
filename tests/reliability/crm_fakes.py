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
import re
from functools import cached_property
from itertools import count
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
from aiohttp import web

from adapters.amocrm import fake as amo
from adapters.zoho import fake as zf
from bridge.samples import SAMPLES
from tests.fakes import bitrix24 as b24
from tests.fakes import pipedrive as pd
from tests.reliability import fakes
from tests.reliability.fakes import FakeCRM, Recorded

DOMAIN = SAMPLES["call_end"]["domain"]
CALL, TASK = "call.logged", "task.created"
TEMPLATES = {
    "call_note": "Line {line}, talked {talk} s of {total} s, hangup: {hangup_cause}. pbx:{uuid}",
    "task_description": "Missed call from {client} at {time} to line {line}. pbx:{uuid}",
}
_MARK = re.compile(r"pbx:([\w.-]+)")

AMO_TOKEN = "amo-long-lived-token-6b0f1e2d3c4a5968"
B24_SECRET = "b24-client-secret-5a4b3c2d1e0f"
B24_REFRESH = "b24-refresh-token-0f9e8d7c6b5a"
B24_ACCESS = "b24-access-token-1a2b3c4d5e6f"  # what the fake's OAuth server issues
HUBSPOT_TOKEN = "pat-eu1-reliability-7e6d5c4b-3a29-1807"
PIPEDRIVE_TOKEN = "pd-api-token-3c2b1a09f8e7d6c5b4a3"
ZOHO_SECRET = zf.CLIENT_SECRET
ZOHO_REFRESH = zf.REFRESH_TOKEN
ZOHO_CALL_ID = "PBX_Call_ID"  # a custom unique field: the adapter upserts by it


def key(uuid: str, kind: str) -> str:
    return f"{DOMAIN}/{uuid}/{kind}"


def marked(text: Any, kind: str) -> str | None:
    """The call key of a note or description written from ``TEMPLATES``."""
    m = _MARK.search(str(text or ""))
    return key(m.group(1), kind) if m else None


def _last10(value: Any) -> str:
    return re.sub(r"\D", "", str(value))[-10:]


def relay(response: httpx.Response) -> web.Response:
    """An answer built with the respx helpers of ``tests/fakes``, served by aiohttp."""
    if response.status_code == 204:
        return web.Response(status=204)
    kind = response.headers.get("content-type", "application/json").split(";")[0]
    return web.Response(body=response.content, status=response.status_code, content_type=kind)


class _Records:
    """New record ids, and the number each record was created for."""

    def __init__(self) -> None:
        self._ids = count(1001)
        self.by_phone: dict[str, int] = {}  # last 10 digits → record id

    def new(self, phone: Any = None) -> int:
        record = next(self._ids)
        if phone is not None:
            self.by_phone.setdefault(_last10(phone), record)
        return record

    def find(self, phone: Any) -> int | None:
        return self.by_phone.get(_last10(phone))


class _Fake(FakeCRM):
    @cached_property
    def records(self) -> _Records:
        return _Records()

    @staticmethod
    def json(seen: Recorded) -> Any:
        return json.loads(seen.body) if seen.body else None


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


def _as_httpx(base_url: str, seen: Recorded) -> httpx.Request:
    """A request recorded by aiohttp, as the httpx request the vendor fakes answer."""
    return httpx.Request(
        seen.method,
        httpx.URL(base_url + seen.path, params=seen.query),
        headers=seen.headers,
        content=seen.body,
    )


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
