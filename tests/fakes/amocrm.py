"""amoCRM API v4 answers, shaped as the official reference prints them (HAL+JSON lists under
``_embedded``, ``application/problem+json`` errors, 204 with no body for an empty search)."""

from __future__ import annotations

import json
from typing import Any

import httpx

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
    for key in ("first_name", "last_name"):
        item.pop(key)
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
