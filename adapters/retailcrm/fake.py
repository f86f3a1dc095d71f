"""A RetailCRM account in memory, answering httpx requests as RetailCRM API v5 does.

Used as a respx side effect by the unit tests (``respx.route(host=...).mock(side_effect=fake)``)
and, behind aiohttp (:class:`LoopbackRetailCRM`, with :func:`reliability_table`), by the
contract suite and the reliability harness. It refuses what RetailCRM
refuses: a missing or wrong key, a JSON body (RetailCRM reads form fields only, so every
parameter is "missing"), a structured field that is not a JSON string, bad enum values and
date formats, a task without a performer, an unknown user or customer, and a missing ``site``
for a key that sees several stores, and a call event without an active telephony module
(``Telephony not enabled``). Answers have RetailCRM's shapes (``success``, ``pagination``,
``processedCallsCount``/``duplicateCalls``, ``notExistUsers``/``notExistCodes``…). Call events
open and close each manager's popup (``popups``) when the module declares that event type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

import httpx

from bridge.fakecrm import (
    CALL,
    CRM_COMMON,
    TASK,
    FakeCRM,
    Recorded,
    as_httpx,
    digits,
    key,
    marked,
    relay,
)

CALL_TYPES = {"in", "out", "hangup"}
# Telephony\CallEventHangupStatus of the official client.
HANGUP_STATUSES = {"answered", "busy", "cancel", "failed", "no answered"}
# Which module flag declares each call event type (TelephonyConfiguration).
EVENT_FLAGS = {
    "in": "inputEventSupported",
    "out": "outputEventSupported",
    "hangup": "hangupEventSupported",
}
CALL_RESULTS = {"answered", "busy", "failed", "no answer", "not allowed", "unknown"}
DEFAULT_KEY = "retailcrm-api-key-0123456789abcdefABCDEF"


class Refused(Exception):
    def __init__(self, status: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def error(status: int, message: str, errors: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"success": False, "errorMsg": message}
    if errors:
        body["errors"] = errors
    return httpx.Response(status, json=body)


@dataclass
class FakeRetailCRM:
    api_key: str = DEFAULT_KEY
    sites: list[str] = field(default_factory=lambda: ["main-store"])
    timezone: str = "Europe/Moscow"
    users: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"id": 7, "firstName": "Anna", "lastName": "Petrova", "email": "anna@example.com"},
            {"id": 9, "firstName": "Ivan", "lastName": "Orlov", "email": "ivan@example.com"},
        ]
    )
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: every call event accepted, and the call popup each manager (user id) has open now
    events: list[dict[str, Any]] = field(default_factory=list)
    popups: dict[int, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    #: path → a canned answer that replaces the account's own (a refusal, a 503…)
    canned: dict[str, httpx.Response] = field(default_factory=dict)
    next_id: int = 101

    # -- state helpers for tests ----------------------------------------------------------

    def add_customer(self, phone: str, manager: int | None = None, **fields: Any) -> int:
        cid = self._new_id()
        self.customers[cid] = {
            "type": "customer",
            "id": cid,
            "site": self.sites[0],
            "createdAt": "2026-05-01 10:00:00",
            "phones": [{"number": phone}],
            **({"managerId": manager} if manager else {}),
            **fields,
        }
        return cid

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def external_ids(self) -> list[str]:
        return [str(c.get("externalId")) for c in self.calls]

    # -- the HTTP side --------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path in self.canned:
            return self.canned[request.url.path]
        try:
            return self.handle(request)
        except Refused as exc:
            return error(exc.status, exc.message, exc.errors)

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        key = request.headers.get("x-api-key") or query.get("apiKey")
        if not key:
            raise Refused(403, '"apiKey" is missing.')
        if key != self.api_key:
            raise Refused(403, 'Wrong "apiKey" value.')
        path = request.url.path
        if request.method == "GET":
            return self._get(path, query)
        params = self._form(request)
        return self._post(path, params)

    @staticmethod
    def _form(request: httpx.Request) -> dict[str, str]:
        kind = request.headers.get("content-type", "")
        if not kind.startswith("application/x-www-form-urlencoded"):
            return {}  # RetailCRM reads form fields only: every parameter is then missing
        return {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}

    @staticmethod
    def _json_param(params: dict[str, str], name: str) -> Any:
        if name not in params:
            raise Refused(400, f"Parameter '{name}' is missing")
        try:
            return json.loads(params[name])
        except ValueError:
            raise Refused(400, f"Parameter '{name}' must be a JSON string") from None

    def _site(self, params: dict[str, str]) -> str:
        site = params.get("site")
        if site is None:
            if len(self.sites) > 1:
                raise Refused(400, "Parameter 'site' is missing")
            return self.sites[0]
        if site not in self.sites:
            raise Refused(403, "Access denied.")  # a store the key may not see
        return site

    # GET ----------------------------------------------------------------------------------

    def _get(self, path: str, q: dict[str, str]) -> httpx.Response:
        if path == "/api/credentials":
            return httpx.Response(
                200,
                json={
                    "success": True,
                    "scopes": ["customer_read", "customer_write", "task_write", "telephony_write"],
                    "siteAccess": "access_full",
                    "sitesAvailable": self.sites,
                },
            )
        if path == "/api/v5/settings":
            tz = {"value": self.timezone, "updated_at": "2026-01-01 00:00:00"}
            return httpx.Response(200, json={"success": True, "settings": {"timezone": tz}})
        if path == "/api/v5/users":
            limit = int(q.get("limit", 20))
            page = int(q.get("page", 1))
            users = [u for u in self.users if u.get("active", True)]
            chunk = users[(page - 1) * limit : page * limit]
            pages = max(1, -(-len(users) // limit))
            return httpx.Response(
                200,
                json={
                    "success": True,
                    "pagination": {
                        "limit": limit,
                        "totalCount": len(users),
                        "currentPage": page,
                        "totalPageCount": pages,
                    },
                    "users": chunk,
                },
            )
        if path == "/api/v5/telephony/manager":
            if "phone" not in q:
                raise Refused(400, "Parameter 'phone' is missing")
            customer = self._by_phone(q["phone"])
            body: dict[str, Any] = {"success": True, "links": {}}
            if customer:
                manager = customer.get("managerId")
                if manager:
                    body["manager"] = self._manager(manager)
                if q.get("details") in ("1", "true"):
                    body["customer"] = {
                        k: customer[k]
                        for k in ("id", "externalId", "firstName", "lastName", "phones", "site")
                        if k in customer
                    }
            return httpx.Response(200, json=body)
        if path == "/api/v5/customers":
            name = digits(q.get("filter[name]"))
            hits = [
                c
                for c in self.customers.values()
                if name and any(name in digits(p["number"]) for p in c.get("phones") or [])
            ]
            hits.sort(key=lambda c: -c["id"])  # newest first, as the list is sorted
            return httpx.Response(
                200,
                json={
                    "success": True,
                    "pagination": {
                        "limit": int(q.get("limit", 20)),
                        "totalCount": len(hits),
                        "currentPage": 1,
                        "totalPageCount": 1,
                    },
                    "customers": hits,
                },
            )
        if path.startswith("/api/v5/integration-modules/"):
            code = path.rsplit("/", 1)[-1]
            if code not in self.modules:
                raise Refused(404, "Not found")
            return httpx.Response(
                200, json={"success": True, "integrationModule": self.modules[code]}
            )
        raise Refused(404, "API method not found")

    def _by_phone(self, phone: str) -> dict[str, Any] | None:
        want = digits(phone)[-10:]
        for c in sorted(self.customers.values(), key=lambda c: c["id"]):
            if any(digits(p["number"])[-10:] == want for p in c.get("phones") or []):
                return c
        return None

    def _manager(self, uid: int) -> dict[str, Any]:
        u = next(u for u in self.users if u["id"] == uid)
        return {k: u[k] for k in ("id", "firstName", "lastName", "email") if k in u}

    def _user(self, uid: Any, field_name: str) -> None:
        if not any(u["id"] == uid for u in self.users):
            raise Refused(400, "Errors in the entity format", {field_name: "User not found"})

    # POST ---------------------------------------------------------------------------------

    def _post(self, path: str, params: dict[str, str]) -> httpx.Response:
        if path == "/api/v5/customers/create":
            customer = self._json_param(params, "customer")
            site = self._site(params)
            if not isinstance(customer, dict):
                raise Refused(400, "Errors in the entity format", {"customer": "not an object"})
            if "managerId" in customer:
                self._user(customer["managerId"], "managerId")
            cid = self.add_customer("", **{**customer, "site": site})
            self.customers[cid]["phones"] = customer.get("phones") or []
            return httpx.Response(201, json={"success": True, "id": cid})
        if path == "/api/v5/telephony/calls/upload":
            return self._upload(self._json_param(params, "calls"))
        if path == "/api/v5/tasks/create":
            task = self._json_param(params, "task")
            self._site(params)
            return self._task(task)
        m = re.fullmatch(r"/api/v5/integration-modules/([^/]+)/edit", path)
        if m:
            module = self._json_param(params, "integrationModule")
            return self._module(m.group(1), module)
        if path == "/api/v5/telephony/call/event":
            return self._call_event(self._json_param(params, "event"))
        raise Refused(404, "API method not found")

    def _upload(self, calls: Any) -> httpx.Response:
        if not isinstance(calls, list) or not calls:
            raise Refused(400, "Errors in the entity format", {"calls": "must be a list"})
        errors: dict[str, str] = {}
        for i, c in enumerate(calls):
            try:
                datetime.strptime(str(c.get("date")), "%Y-%m-%d %H:%M:%S")
            except ValueError:
                errors[f"calls[{i}][date]"] = "This value is not a valid datetime."
            if c.get("type") not in ("in", "out"):
                errors[f"calls[{i}][type]"] = "The value you selected is not a valid choice."
            if c.get("result") not in CALL_RESULTS:
                errors[f"calls[{i}][result]"] = "The value you selected is not a valid choice."
            if not c.get("phone"):
                errors[f"calls[{i}][phone]"] = "This value should not be blank."
            if "userId" in c and not any(u["id"] == c["userId"] for u in self.users):
                errors[f"calls[{i}][userId]"] = "User not found"
            if self._telephony() is None:
                errors[f"calls[{i}]"] = "Telephony integration is not registered"
        if errors:
            raise Refused(400, "Errors in the entity format", errors)
        known = set(self.external_ids())
        duplicates = [str(c["externalId"]) for c in calls if str(c.get("externalId")) in known]
        fresh = [c for c in calls if str(c.get("externalId")) not in known]
        self.calls.extend(fresh)
        body: dict[str, Any] = {"success": True, "processedCallsCount": len(fresh)}
        if duplicates:
            body["duplicateCalls"] = duplicates
        return httpx.Response(200, json=body)

    def _call_event(self, event: Any) -> httpx.Response:
        """A call event (Telephony\\CallEvent): validated, refused without an active telephony
        module, and shown to the managers it names when the module declares that event type.
        Unknown managers come back in ``notExistUsers`` / ``notExistCodes``."""
        if not isinstance(event, dict):
            raise Refused(400, "Errors in the entity format", {"event": "not an object"})
        errors: dict[str, str] = {}
        if not event.get("phone"):
            errors["phone"] = "This value should not be blank."
        if event.get("type") not in CALL_TYPES:
            errors["type"] = "The value you selected is not a valid choice."
        if "hangupStatus" in event and event["hangupStatus"] not in HANGUP_STATUSES:
            errors["hangupStatus"] = "The value you selected is not a valid choice."
        for name, kind in (("userIds", int), ("codes", str)):
            value = event.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
                errors[name] = "This value is not valid."
        if errors:
            raise Refused(400, "Errors in the entity format", errors)
        module = self._telephony()
        if module is None:
            raise Refused(400, "Telephony not enabled")
        telephony = module["integrations"]["telephony"]
        by_code = {
            str(e.get("code")): e.get("userId") for e in telephony.get("additionalCodes") or []
        }
        known = {u["id"] for u in self.users}
        ids = [u for u in event.get("userIds") or [] if u in known]
        codes = [c for c in event.get("codes") or [] if c in by_code]
        self.events.append(event)
        if telephony.get(EVENT_FLAGS[event["type"]]):
            for uid in {*ids, *(by_code[c] for c in codes)}:
                if event["type"] == "hangup":
                    self.popups.pop(uid, None)
                else:
                    self.popups[uid] = str(event["phone"])
        body: dict[str, Any] = {"success": True}
        missing_ids = [u for u in event.get("userIds") or [] if u not in known]
        missing_codes = [c for c in event.get("codes") or [] if c not in by_code]
        if missing_ids:
            body["notExistUsers"] = missing_ids
        if missing_codes:
            body["notExistCodes"] = missing_codes
        return httpx.Response(200, json=body)

    def _telephony(self) -> dict[str, Any] | None:
        for module in self.modules.values():
            if module.get("active") and "telephony" in (module.get("integrations") or {}):
                return module
        return None

    def _task(self, task: Any) -> httpx.Response:
        if not isinstance(task, dict):
            raise Refused(400, "Errors in the entity format", {"task": "not an object"})
        errors: dict[str, str] = {}
        if not task.get("text"):
            errors["text"] = "This value should not be blank."
        if "performerId" not in task:
            errors["performerId"] = "This value should not be blank."
        elif not any(u["id"] == task["performerId"] for u in self.users):
            errors["performerId"] = "User not found"
        if "datetime" in task:
            try:
                datetime.strptime(str(task["datetime"]), "%Y-%m-%d %H:%M")
            except ValueError:
                errors["datetime"] = "This value is not a valid datetime."
        customer = task.get("customer")
        if customer is not None and int(customer.get("id", 0)) not in self.customers:
            errors["customer"] = "Customer not found"
        if errors:
            raise Refused(400, "Errors in the entity format", errors)
        tid = self._new_id()
        self.tasks[tid] = task
        return httpx.Response(201, json={"success": True, "id": tid})

    def _module(self, code: str, module: Any) -> httpx.Response:
        if not isinstance(module, dict) or module.get("code") != code:
            raise Refused(400, "Errors in the entity format", {"code": "does not match the URL"})
        missing = [k for k in ("integrationCode", "name", "clientId") if not module.get(k)]
        if missing:
            raise Refused(
                400,
                "Errors in the entity format",
                {k: "This value should not be blank." for k in missing},
            )
        for entry in ((module.get("integrations") or {}).get("telephony") or {}).get(
            "additionalCodes"
        ) or []:
            self._user(entry.get("userId"), "additionalCodes.userId")
        created = code not in self.modules
        self.modules[code] = module
        return httpx.Response(201 if created else 200, json={"success": True, "info": {}})


# -- on loopback (the contract suite and the reliability harness) ---------------------------

LOOPBACK_KEY = "retailcrm-reliability-key-9f8e7d6c5b4a"


class LoopbackRetailCRM(FakeCRM):
    """A :class:`FakeRetailCRM` account behind aiohttp. A call carries its uuid as
    ``externalId``; a task names it in its ``commentary`` (the harness's ``TEMPLATES``)."""

    @cached_property
    def account(self) -> FakeRetailCRM:
        return FakeRetailCRM(api_key=LOOPBACK_KEY, users=[{"id": 1, "firstName": "Manager"}])

    def answer(self, seen: Recorded) -> Any:
        return relay(self.account(as_httpx(self.base_url, seen)))

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


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.retailcrm]`` pointed at a :class:`LoopbackRetailCRM`. A task needs a
    performer: the account's one user."""
    return dict(
        CRM_COMMON, type="retailcrm", base_url=base_url, api_key=LOOPBACK_KEY, default_user="1"
    )
