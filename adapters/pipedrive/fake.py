"""Pipedrive as its API writes its answers, and a loopback Pipedrive built from them.

The answer builders (``ok``, ``error``, ``person``, ``search_answer``…) are Pipedrive's own
shapes (v1 and v2 envelopes: ``success``, ``data``, ``additional_data``; errors with
``error_info``); the unit tests serve them through respx, and :class:`FakePipedrive` serves them
on loopback for the contract suite and the reliability harness. It refuses what the live API
refuses although the OpenAPI files declare it: API v2 treats an activity's ``person_id`` as
read-only (the v2 migration guide: a primary participant sets it). The OpenAPI check of every
request the unit tests send is ``tests/adapters/pipedrive/contract.py``.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from bridge.fakecrm import CALL, CRM_COMMON, TASK, FakeCRM, Recorded, marked, relay

TOKEN = "pd-api-token-3c2b1a09f8e7d6c5b4a3"  # the loopback fake's table
READ_ONLY_MESSAGE = (
    "'{field}' is a read-only field. Add a primary participant to set '{field}' instead."
)
_RECORDINGS = re.compile(r"^/v1/callLogs/[^/]+/recordings$")


# -- Pipedrive's answers, as its API writes them --------------------------------------------


def ok(data: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data, **extra})


def error(status: int, message: str, **extra: Any) -> httpx.Response:
    body = {
        "success": False,
        "error": message,
        "error_info": "Please check developers.pipedrive.com for more information about"
        " Pipedrive API.",
        "data": None,
        "additional_data": None,
    }
    return httpx.Response(status, json={**body, **extra})


def search_item(person_id: int, name: str, phones: list[str], owner: int) -> dict[str, Any]:
    return {
        "result_score": 0.5092,
        "item": {
            "id": person_id,
            "type": "person",
            "name": name,
            "phones": phones,
            "emails": [],
            "visible_to": 3,
            "owner": {"id": owner},
            "organization": None,
            "custom_fields": [],
            "notes": [],
        },
    }


def search_answer(*items: dict[str, Any]) -> httpx.Response:
    return ok({"items": list(items)}, additional_data={"next_cursor": None})


def person(person_id: int, name: str, phone: str, owner: int) -> httpx.Response:
    return ok(
        {
            "id": person_id,
            "name": name,
            "owner_id": owner,
            "org_id": None,
            "add_time": "2026-05-28T20:26:41Z",
            "update_time": None,
            "emails": [],
            "phones": [{"value": phone, "primary": True, "label": "work"}],
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
        }
    )


def activity(activity_id: int, **fields: Any) -> httpx.Response:
    return ok(
        {
            "id": activity_id,
            "creator_user_id": 1,
            "is_deleted": False,
            "add_time": "2026-05-28T20:26:41Z",
            "update_time": "2026-05-28T20:26:41Z",
            **fields,
        }
    )


def call_log(log_id: str, **fields: Any) -> httpx.Response:
    return ok({"id": log_id, "activity_id": 7007, "has_recording": False, **fields})


# -- on loopback ----------------------------------------------------------------------------


class FakePipedrive(FakeCRM):
    """Pipedrive API v1 (call logs) and v2 (persons, activities) with an API token. Call logs
    and activities name their call in the note (``TEMPLATES``): Pipedrive has no field for it."""

    def answer(self, seen: Recorded) -> Any:
        path = seen.path
        if _RECORDINGS.match(path):  # a multipart upload of the audio file
            return relay(httpx.Response(200, json={"success": True}))
        body = self.json(seen)
        if path == "/api/v2/persons/search":
            term = seen.query.get("term", "")
            found = self.records.find(term)
            hits = [] if found is None else [search_item(found, "Client", ["+7" + term], 1)]
            return relay(search_answer(*hits))
        if path == "/api/v2/persons":
            phone = body["phones"][0]["value"]
            person_id = self.records.new(phone)
            return relay(person(person_id, body["name"], phone, body.get("owner_id") or 1))
        if path == "/v1/callLogs":
            return relay(call_log(f"call-{self.records.new()}", **body))
        if path == "/api/v2/activities":
            if "person_id" in body:  # read-only in v2, as the live API answers
                return relay(error(400, READ_ONLY_MESSAGE.format(field="person_id")))
            return relay(activity(self.records.new(), **body))
        if path == "/api/v2/deals":  # a person's open deals: none here
            return relay(ok([], additional_data={"next_cursor": None}))
        if path == "/v1/users/me":
            me = {"id": 1, "name": "Admin", "company_name": "Rel", "company_domain": "rel"}
            return relay(ok(me))
        if path == "/v1/users":
            return relay(ok([{"id": 1, "name": "Admin", "email": "admin@example.com"}]))
        return relay(error(404, "Not found"))

    def error_json(self, status: int) -> Any:
        message = {
            401: "unauthorized access",
            403: "You do not have permission to perform this action",
            429: "Too many requests",
            500: "Internal server error",
        }[status]
        return error(status, message, errorCode=status).json()

    def call_key(self, seen: Recorded) -> str | None:
        kind = {"/v1/callLogs": CALL, "/api/v2/activities": TASK}.get(seen.path)
        if seen.method != "POST" or kind is None:
            return None
        return marked((self.json(seen) or {}).get("note"), kind)


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.pipedrive]`` pointed at a :class:`FakePipedrive`. No search limit either (as
    no rate limit): it spaces searches in real time, 0.2 s each, which only slows the harness
    (the limit itself is tested in tests/adapters/pipedrive/)."""
    return {
        "type": "pipedrive",
        "base_url": base_url,
        "api_token": TOKEN,
        "search_rate_limit": 0,
        **CRM_COMMON,
    }
