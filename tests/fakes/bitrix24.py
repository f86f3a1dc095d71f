"""Bitrix24 REST envelopes as the official docs print them (github.com/bitrix24/b24restdocs),
for respx routes in the bitrix24 adapter tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

PORTAL = "https://example.bitrix24.ru"
CODE = "k3yS3cr3tC0de9x"
WEBHOOK = f"{PORTAL}/rest/1/{CODE}/"
OAUTH_URL = "https://oauth.example.test/oauth/token/"


def timing(now: float = 1_780_000_000.0, reset_in: float = 600) -> dict[str, Any]:
    return {
        "start": now,
        "finish": now + 0.3,
        "duration": 0.3,
        "processing": 0,
        "date_start": "2026-05-28T23:26:40+03:00",
        "date_finish": "2026-05-28T23:26:40+03:00",
        "operating_reset_at": int(now + reset_in),
        "operating": 0.22,
    }


def ok(result: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result, "time": timing(), **extra})


def error(status: int, code: str, description: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description, **extra})


def body(route: Any, index: int = -1) -> dict[str, Any]:
    """The JSON body of one call a respx route received."""
    return json.loads(route.calls[index].request.content)


REGISTERED = {
    "CALL_ID": "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779",
    "CRM_CREATED_LEAD": None,
    "CRM_CREATED_ENTITIES": [],
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": 651,
}

FINISHED = {
    "CALL_ID": REGISTERED["CALL_ID"],
    "EXTERNAL_CALL_ID": None,
    "PORTAL_USER_ID": 7,
    "PHONE_NUMBER": "79502222919",
    "PORTAL_NUMBER": "74991111282",
    "INCOMING": "1",
    "CALL_DURATION": 135,
    "CALL_START_DATE": {},
    "CALL_STATUS": 1,
    "CALL_VOTE": 0,
    "COST": 0,
    "COST_CURRENCY": "",
    "CALL_FAILED_CODE": "200",
    "CALL_FAILED_REASON": "",
    "REST_APP_ID": "3",
    "REST_APP_NAME": "pbx-bridge",
    "CRM_ACTIVITY_ID": 7943,
    "COMMENT": None,
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": 651,
    "ID": 77,
}


def crm_entity(entity: str = "CONTACT", entity_id: int = 651, owner: int = 99) -> dict[str, Any]:
    return {
        "CRM_ENTITY_TYPE": entity,
        "CRM_ENTITY_ID": entity_id,
        "ASSIGNED_BY_ID": owner,
        "NAME": "John Doe",
        "ASSIGNED_BY": {
            "ID": str(owner),
            "TIMEMAN_STATUS": "CLOSED",
            "USER_PHONE_INNER": None,
            "WORK_PHONE": None,
            "PERSONAL_PHONE": None,
            "PERSONAL_MOBILE": None,
        },
    }
