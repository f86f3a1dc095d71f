"""HubSpot as its CRM v3 API writes its answers, and a loopback HubSpot built from them.

The answer builders (``hs_object``, ``search_answer``, ``created``, ``error``…) are HubSpot's own
shapes: CRM objects with ``properties``/``createdAt``/``archived``, searches with ``total`` and
``results``, and the error envelope every v3 API answers (``status``, ``message``,
``correlationId``, ``category``; a 429 adds ``errorType`` and ``policyName``). The unit tests
serve them through respx; :class:`FakeHubSpot` serves them on loopback for the contract suite
and the reliability harness.
"""

from __future__ import annotations

from typing import Any

import httpx
from aiohttp import web

from bridge.fakecrm import CALL, CRM_COMMON, TASK, FakeCRM, Recorded, marked, relay

TOKEN = "pat-eu1-reliability-7e6d5c4b-3a29-1807"  # the loopback fake's table
CREATED = "2025-02-01T10:00:00.000Z"
UPDATED = "2025-02-03T10:00:00.000Z"

# GET /calling/v1/dispositions of a portal with HubSpot's default call outcomes only.
DISPOSITIONS = [
    {"id": "9d9162e7-6cf3-4944-bf63-4dff82258764", "label": "Busy"},
    {"id": "f240bbac-87c9-4f6e-bf70-924b57d47db7", "label": "Connected"},
    {"id": "a4c4c377-d246-4b32-a13b-75a56a4cd0ff", "label": "Left live message"},
    {"id": "b2cf5968-551e-4856-9783-52b3da59a7d0", "label": "Left voicemail"},
    {"id": "73a0d17f-1163-4015-bdd5-ec830791da20", "label": "No answer"},
    {"id": "17b47fee-58de-441e-a44c-c6300d46f273", "label": "Wrong number"},
]

# The 429 of the 10-second burst window (HubSpot sends no Retry-After with it).
RATE_LIMITED = {
    "status": "error",
    "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c0ffee",
    "policyName": "TEN_SECONDLY_ROLLING",
    "groupName": "publicapi:private-app:burst:1234",
}

# category and message of the errors the loopback fake plays, as HubSpot words them.
ERRORS = {
    401: (
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0"
        " authentication and you can find more details at"
        " https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    ),
    403: ("MISSING_SCOPES", "This app hasn't been granted all required scopes."),
    404: ("OBJECT_NOT_FOUND", "resource not found"),
    500: ("INTERNAL_ERROR", "internal error"),
}


# -- HubSpot's answers, as its CRM v3 API writes them ---------------------------------------


def hs_object(object_id: str | int, **properties: Any) -> dict[str, Any]:
    """A CRM v3 object as HubSpot answers a create or a search hit."""
    return {
        "id": str(object_id),
        "properties": {
            "hs_object_id": str(object_id),
            "createdate": CREATED,
            "lastmodifieddate": UPDATED,
            **properties,
        },
        "createdAt": CREATED,
        "updatedAt": UPDATED,
        "archived": False,
    }


def search_answer(*contacts: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"total": len(contacts), "results": list(contacts)})


def created(object_id: str | int, **properties: Any) -> httpx.Response:
    return httpx.Response(201, json=hs_object(object_id, **properties))


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    body = {"status": "error", "message": message, "correlationId": "c0ffee", "category": category}
    return {**body, **extra}


def error(status: int, message: str, category: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json=error_body(message, category, **extra))


def no_links(object_id: str) -> dict[str, Any]:
    """A contact read with its associations, when it has no company and no deal."""
    return {"id": object_id, "properties": {}, "associations": {}}


# -- on loopback ----------------------------------------------------------------------------


class FakeHubSpot(FakeCRM):
    """HubSpot CRM v3 with a private app token. Calls and tasks name their call in the body
    (``TEMPLATES``): HubSpot has no field for it."""

    def answer(self, seen: Recorded) -> Any:
        path, body = seen.path, self.json(seen)
        if path == "/crm/v3/objects/contacts/search":
            values = body["filterGroups"][0]["filters"][0]["values"]
            found = self.records.find(values[0])
            hits = [] if found is None else [hs_object(found, phone=values[0])]
            return relay(search_answer(*hits))
        if seen.method == "GET" and path.startswith("/crm/v3/objects/contacts/"):
            return no_links(path.rsplit("/", 1)[1])  # no company, no deal here
        if path == "/calling/v1/dispositions":
            return DISPOSITIONS
        if path.startswith("/crm/v3/objects/"):
            phone = body["properties"].get("phone") if path.endswith("/contacts") else None
            return relay(created(self.records.new(phone), **body["properties"]))
        if path == "/account-info/v3/details":
            return {"portalId": 62515, "accountType": "STANDARD", "timeZone": "Europe/Moscow"}
        if path == "/crm/v3/owners":
            return {"results": [{"id": "7001", "firstName": "Anna", "email": "a@example.com"}]}
        return web.json_response(self.error_json(404), status=404)

    def error_json(self, status: int) -> Any:
        if status == 429:
            return {k: v for k, v in RATE_LIMITED.items() if k != "groupName"}
        category, message = ERRORS[status]
        return error_body(message, category)

    def call_key(self, seen: Recorded) -> str | None:
        kind = {"/crm/v3/objects/calls": CALL, "/crm/v3/objects/tasks": TASK}.get(seen.path)
        if seen.method != "POST" or kind is None:
            return None
        props = (self.json(seen) or {}).get("properties") or {}
        return marked(props.get("hs_call_body" if kind == CALL else "hs_task_body"), kind)


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.hubspot]`` pointed at a :class:`FakeHubSpot`."""
    return {
        "type": "hubspot",
        "base_url": base_url,
        "access_token": TOKEN,
        "search_rate_limit": 0,
        **CRM_COMMON,
    }
