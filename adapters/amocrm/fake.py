"""A fake of amoCRM / Kommo for the adapter's unit tests and the reliability harness.

The answer builders (``contact``, ``contacts_page``, ``created``, ``problem``…) are shaped as
the official API v4 reference prints them: HAL+JSON lists under ``_embedded``,
``application/problem+json`` errors, 204 with no body for an empty search. :class:`AmoAccount`
is an account in memory built on them that answers httpx requests (a respx side effect in the
unit tests; behind aiohttp in the reliability harness): contacts found by their number, calls
attached to the card that holds it, tasks, users, and the incoming-call notification
(``POST /api/v2/events``), refusing what amo refuses (no or a wrong token, a task without a
responsible user, a notification without a phone number or of another type).
:class:`LoopbackAmo` (with :func:`reliability_table`) is that account on loopback for the
contract suite and the reliability harness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from itertools import count
from typing import Any

import httpx
from aiohttp import web

from bridge.fakecrm import CALL, CRM_COMMON, TASK, FakeCRM, Recorded, as_httpx, key, last10, relay

BASE = "https://example.amocrm.ru"
HAL = {"content-type": "application/hal+json"}
PROBLEM = {"content-type": "application/problem+json"}


def _links(path: str) -> dict[str, Any]:
    return {"self": {"href": f"{BASE}{path}"}}


def contact(
    cid: int,
    phones: list[str],
    *,
    owner: int = 555,
    updated_at: int = 1_700_000_000,
    leads: list[int] = (),  # type: ignore[assignment]
    name: str = "Иван Иванов",
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "first_name": "",
        "last_name": "",
        "responsible_user_id": owner,
        "group_id": 0,
        "created_by": owner,
        "updated_by": owner,
        "created_at": 1_600_000_000,
        "updated_at": updated_at,
        "closest_task_at": None,
        "is_deleted": False,
        "is_unsorted": False,
        "custom_fields_values": [
            {
                "field_id": 3,
                "field_name": "Телефон",
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": [{"value": p, "enum_id": 1, "enum_code": "WORK"} for p in phones],
            }
        ],
        "account_id": 28805383,
        "_links": _links(f"/api/v4/contacts/{cid}"),
        "_embedded": {
            "tags": [],
            "leads": [{"id": lid, "_links": _links(f"/api/v4/leads/{lid}")} for lid in leads],
            "companies": [],
        },
    }


def contacts_page(*items: dict[str, Any], kind: str = "contacts") -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_page": 1,
            "_links": _links(f"/api/v4/{kind}?query=…&page=1&limit=50"),
            "_embedded": {kind: list(items)},
        },
    )


def company(cid: int, phones: list[str], **kwargs: Any) -> dict[str, Any]:
    """A company as GET /api/v4/companies answers it (the same PHONE multitext as contacts)."""
    item = contact(cid, phones, **kwargs)
    for name in ("first_name", "last_name"):
        item.pop(name)
    item["name"] = kwargs.get("name", "ООО Ромашка")
    item["_links"] = _links(f"/api/v4/companies/{cid}")
    item["_embedded"] = {"tags": [], "leads": item["_embedded"]["leads"], "contacts": []}
    return item


def companies_page(*items: dict[str, Any]) -> httpx.Response:
    return contacts_page(*items, kind="companies")


def task_without_responsible() -> httpx.Response:
    """amo's answer to a task with no ``responsible_user_id`` (a required field)."""
    return validation_error("responsible_user_id", "This value should not be blank.", "NotBlank")


def empty_search() -> httpx.Response:
    return httpx.Response(204)


def lead(lid: int, status_id: int, updated_at: int = 1_700_000_000) -> dict[str, Any]:
    return {
        "id": lid,
        "name": f"Сделка #{lid}",
        "price": 0,
        "responsible_user_id": 555,
        "group_id": 0,
        "status_id": status_id,
        "pipeline_id": 3177727,
        "loss_reason_id": None,
        "created_by": 555,
        "updated_by": 555,
        "created_at": 1_600_000_000,
        "updated_at": updated_at,
        "closed_at": 1_650_000_000 if status_id in (142, 143) else None,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "score": None,
        "account_id": 28805383,
        "_links": _links(f"/api/v4/leads/{lid}"),
        "_embedded": {"tags": [], "companies": []},
    }


def leads_page(*items: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={"_page": 1, "_links": _links("/api/v4/leads"), "_embedded": {"leads": list(items)}},
    )


def created(kind: str, new_id: int, request_id: str = "0") -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_links": _links(f"/api/v4/{kind}"),
            "_embedded": {
                kind: [
                    {
                        "id": new_id,
                        "request_id": request_id,
                        "_links": _links(f"/api/v4/{kind}/{new_id}"),
                    }
                ]
            },
        },
    )


def call_added(call_id: int, entity_id: int, entity_type: str = "contact") -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_total_items": 1,
            "errors": [],
            "_embedded": {
                "calls": [
                    {
                        "id": call_id,
                        "entity_id": entity_id,
                        "entity_type": entity_type,
                        "account_id": 28805383,
                        "request_id": "0",
                        "_embedded": {
                            "entity": {
                                "id": entity_id,
                                "_links": _links(f"/api/v4/{entity_type}s/{entity_id}"),
                            }
                        },
                    }
                ]
            },
        },
    )


def call_not_attached() -> httpx.Response:
    """No contact/company has the number: nothing is added."""
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_total_items": 0,
            "errors": [{"request_id": "0", "title": "Entity not found", "status": 263}],
            "_embedded": {"calls": []},
        },
    )


def complex_lead(lead_id: int, contact_id: int) -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json=[
            {
                "id": lead_id,
                "contact_id": contact_id,
                "company_id": None,
                "request_id": ["0"],
                "merged": False,
            }
        ],
    )


def unsorted_added(uid: str, lead_id: int, contact_id: int) -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_total_items": 1,
            "_embedded": {
                "unsorted": [
                    {
                        "uid": uid,
                        "account_id": 28805383,
                        "request_id": "0",
                        "_embedded": {
                            "leads": [
                                {"id": lead_id, "_links": _links(f"/api/v4/leads/{lead_id}")}
                            ],
                            "contacts": [
                                {
                                    "id": contact_id,
                                    "_links": _links(f"/api/v4/contacts/{contact_id}"),
                                }
                            ],
                            "companies": [],
                        },
                        "_links": _links(f"/api/v4/leads/unsorted/{uid}"),
                    }
                ]
            },
        },
    )


def validation_error(path: str, detail: str, code: str) -> httpx.Response:
    return httpx.Response(
        400,
        headers=PROBLEM,
        json={
            "validation-errors": [
                {"request_id": "0", "errors": [{"code": code, "path": path, "detail": detail}]}
            ],
            "title": "Bad Request",
            "type": "https://httpstatus.es/400",
            "status": 400,
            "detail": "Request validation failed",
        },
    )


def problem(status: int, title: str, detail: str = "") -> httpx.Response:
    body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status}
    if detail:
        body["detail"] = detail
    return httpx.Response(status, headers=PROBLEM, content=json.dumps(body).encode())


def too_many_requests(retry_after: str | None = None) -> httpx.Response:
    headers = {"content-type": "text/html"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return httpx.Response(429, headers=headers, text="Too Many Requests")


def token_pair(access: str, refresh: str, expires_in: int = 86400) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "token_type": "Bearer",
            "expires_in": expires_in,
            "access_token": access,
            "refresh_token": refresh,
        },
    )


def account() -> httpx.Response:
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "id": 28805383,
            "name": "ООО Ромашка",
            "subdomain": "example",
            "created_at": 1_585_840_134,
            "created_by": 0,
            "updated_at": 1_589_472_711,
            "updated_by": 0,
            "current_user_id": 555,
            "country": "RU",
            "currency": "RUB",
            "currency_symbol": "₽",
            "customers_mode": "disabled",
            "is_unsorted_on": True,
            "mobile_feature_version": 0,
            "is_loss_reason_enabled": True,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
            "_links": _links("/api/v4/account"),
        },
    )


def users_page(users: list[tuple[int, str]], has_next: bool = False) -> httpx.Response:
    links = _links("/api/v4/users?page=1&limit=250")
    if has_next:
        links["next"] = {"href": f"{BASE}/api/v4/users?page=2&limit=250"}
    return httpx.Response(
        200,
        headers=HAL,
        json={
            "_total_items": len(users),
            "_page": 1,
            "_page_count": 1,
            "_links": links,
            "_embedded": {
                "users": [
                    {"id": uid, "name": name, "email": f"u{uid}@example.ru", "lang": "ru"}
                    for uid, name in users
                ]
            },
        },
    )


# --- the incoming-call notification (API v2 "events") ----------------------------------------

EVENT_TYPES = {"phone_call"}  # the one documented notification type


def notification_accepted() -> httpx.Response:
    """What ``POST /api/v2/events`` answers (Kommo's reference: 202 Accepted, an empty object;
    amo documents no body for it)."""
    return httpx.Response(202, headers={"content-type": "application/json"}, json={})


@dataclass
class AmoAccount:
    """One amo account in memory: ``account(request) -> response`` for its API."""

    token: str = "amo-test-token"
    users: list[tuple[int, str]] = field(default_factory=lambda: [(555, "Manager")])
    account_id: int = 28805383
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    #: every notification shown: (phone_number as sent, the user ids it went to)
    notifications: list[tuple[str, list[int]]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    #: path → a canned answer that replaces the account's own (a refusal, a 403…)
    canned: dict[str, httpx.Response] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: count(1001), repr=False)

    def new_id(self) -> int:
        return next(self._ids)

    def add_contact(self, phone: str, owner: int = 555, **kwargs: Any) -> int:
        cid = self.new_id()
        self.contacts[cid] = contact(cid, [phone], owner=owner, **kwargs)
        return cid

    def find(self, phone: Any) -> dict[str, Any] | None:
        want = last10(phone)
        for c in self.contacts.values():
            for f in c.get("custom_fields_values") or []:
                if any(last10(v.get("value")) == want for v in f.get("values") or []):
                    return c
        return None

    # -- the HTTP side ----------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path in self.canned:
            return self.canned[request.url.path]
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return problem(401, "Unauthorized")
        return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path.rstrip("/"), request.method
        body = json.loads(request.content) if request.content else None
        if method == "GET" and path == "/api/v4/contacts":
            found = self.find(request.url.params.get("query", ""))
            return empty_search() if found is None else contacts_page(found)
        if method == "GET" and path == "/api/v4/companies":
            return empty_search()
        if method == "POST" and path == "/api/v4/contacts":
            phone = body[0]["custom_fields_values"][0]["values"][0]["value"]
            owner = body[0].get("responsible_user_id") or self.users[0][0]
            return created("contacts", self.add_contact(phone, owner=owner, name=body[0]["name"]))
        if method == "POST" and path == "/api/v4/calls":
            item = body[0]
            card = self.find(item.get("phone"))
            if card is None:
                return call_not_attached()
            self.calls.append(item)
            return call_added(self.new_id(), card["id"])
        if method == "POST" and path == "/api/v4/tasks":
            if not body[0].get("responsible_user_id"):
                return task_without_responsible()
            self.tasks.append(body[0])
            return created("tasks", self.new_id(), body[0].get("request_id", "0"))
        if method == "POST" and path == "/api/v2/events":
            return self._events(body)
        if method == "GET" and path == "/api/v4/account":
            return httpx.Response(
                200,
                headers=HAL,
                json={
                    "id": self.account_id,
                    "name": "Test account",
                    "subdomain": "example",
                    "current_user_id": self.users[0][0],
                },
            )
        if method == "GET" and path == "/api/v4/users":
            return users_page(self.users)
        return problem(404, "Not Found")

    def _events(self, body: Any) -> httpx.Response:
        """The call notification: ``{"add": [{"type": "phone_call", "phone_number": …,
        "users": [ids]}]}``; without ``users`` it goes to every user of the account (as amo
        documents)."""
        items = body.get("add") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return validation_error("add", "This value should not be blank.", "NotBlank")
        errors: list[tuple[str, str, str]] = []
        for i, item in enumerate(items):
            item = item if isinstance(item, dict) else {}
            if item.get("type") not in EVENT_TYPES:
                errors.append(
                    (f"add.{i}.type", "The value you selected is not a valid choice.", "Choice")
                )
            if not str(item.get("phone_number") or "").strip():
                errors.append(
                    (f"add.{i}.phone_number", "This value should not be blank.", "NotBlank")
                )
            users = item.get("users", [])
            if not isinstance(users, list) or not all(str(u).isdigit() for u in users):
                errors.append(
                    (f"add.{i}.users", "This value should be of type array.", "InvalidType")
                )
        if errors:
            path, detail, code = errors[0]
            return validation_error(path, detail, code)
        every = [uid for uid, _ in self.users]
        for item in items:
            wanted = [int(u) for u in item["users"]] if "users" in item else every
            # amo does not say what it does with an id that is no user of the account; the
            # fake shows the notification to the account's users among them.
            self.notifications.append((item["phone_number"], [u for u in wanted if u in every]))
        return notification_accepted()


# --- on loopback (the contract suite and the reliability harness) ---------------------------

LOOPBACK_TOKEN = "amo-long-lived-token-6b0f1e2d3c4a5968"


class LoopbackAmo(FakeCRM):
    """An :class:`AmoAccount` behind aiohttp, reached with a private integration's long-lived
    token. A call carries its uuid as ``uniq``, a task as ``request_id``."""

    @cached_property
    def account(self) -> AmoAccount:
        return AmoAccount(token=LOOPBACK_TOKEN, users=[(5550001, "Manager")])

    def answer(self, seen: Recorded) -> web.StreamResponse:
        return relay(self.account(as_httpx(self.base_url, seen)))

    def error_json(self, status: int) -> Any:
        titles = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}
        return problem(status, titles.get(status, "Internal Server Error")).json()

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or seen.path not in ("/api/v4/calls", "/api/v4/tasks"):
            return None
        item = self.json(seen)[0]
        if seen.path == "/api/v4/calls":
            return key(item["uniq"], CALL)
        return key(item["request_id"], TASK)


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.amocrm]`` pointed at a :class:`LoopbackAmo`."""
    return dict(CRM_COMMON, type="amocrm", base_url=base_url, access_token=LOOPBACK_TOKEN)
