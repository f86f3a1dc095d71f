"""RetailCRM's HTTP side: API v5, the ``X-API-KEY`` header, form bodies, its error envelope.

POST bodies are ``application/x-www-form-urlencoded``; a structured parameter (``customer``,
``task``, ``calls``, ``integrationModule``…) is one form field whose value is a JSON string,
as RetailCRM's official clients send it. GET filters are bracketed query keys
(``filter[name]=…``).

Error envelope (any status)::

    {"success": false, "errorMsg": "Wrong \\"apiKey\\" value.", "errors": {"field": "why"}}

A 2xx answer with ``success: false`` is a refusal too. Above its request rate RetailCRM
answers 503 (the official PHP client retries those after a second); a 429 is treated alike.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from bridge.adapter import (
    AdapterContext,
    CRMClient,
    Permanent,
    json_body,
    json_object,
    raise_for_status,
)

API = "/api/v5"
RATE_LIMIT_WAIT = 1.0  # seconds, when a 503/429 names no Retry-After

# errorMsg → what the admin should fix (the messages the official PHP client maps).
FIXES = {
    '"apiKey" is missing.': "set api_key",
    'Wrong "apiKey" value.': "the API key is wrong or was deleted: check api_key",
    "Access denied.": "the API key lacks a permission: in RetailCRM, Settings → Integration →"
    " API access keys, allow the telephony, customers, tasks, users and integration-modules"
    " methods (and the store)",
    "Account does not exist.": "check base_url (https://ACCOUNT.retailcrm.ru)",
}


def form(**params: Any) -> dict[str, str]:
    """A RetailCRM form body: structured values as JSON strings, ``None`` left out."""
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v)
        for k, v in params.items()
        if v is not None
    }


def refusal(response: httpx.Response) -> str | None:
    """RetailCRM's refusal in this answer (its errorMsg and field errors), or None."""
    body = json_object(response)
    if body is None or body.get("success") is not False:
        return None
    message = str(body.get("errorMsg") or "refused")
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        message += " (" + "; ".join(f"{k}: {v}" for k, v in errors.items()) + ")"
    elif isinstance(errors, list) and errors:
        message += " (" + "; ".join(str(e) for e in errors) + ")"
    fix = FIXES.get(str(body.get("errorMsg") or ""))
    if fix is None and "'site'" in message:
        fix = "the API key sees several stores: set site"
    return f"{message} — {fix}" if fix else message


def raise_for_retailcrm(response: httpx.Response, what: str) -> None:
    detail = refusal(response)
    if response.is_success:
        if detail is not None:
            raise Permanent(f"{what}: HTTP {response.status_code} {detail}")
        return
    raise_for_status(
        response,
        what,
        detail=detail,
        hints={} if detail else None,
        retry_after=RATE_LIMIT_WAIT if response.status_code in (429, 503) else None,
    )


class RetailCRMAPI:
    """One RetailCRM account reached with one API key."""

    def __init__(self, settings: Any, ctx: AdapterContext) -> None:
        self._client: CRMClient = ctx.http_client(
            settings,
            settings.base_url,
            headers={"X-API-KEY": settings.api_key.get_secret_value()},
        )

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        """One request to ``/api/v5{path}`` (or ``/api{path}`` for unversioned methods)."""
        url = path if path.startswith("/api/") else f"{API}{path}"
        label = what or f"{method} {url}"
        response = await self._client.request(method, url, **kwargs)
        raise_for_retailcrm(response, label)
        return json_body(response, label)

    async def get(self, path: str, what: str = "", **params: Any) -> Any:
        return await self.call("GET", path, what, params=params)

    async def post(self, path: str, what: str = "", **params: Any) -> Any:
        return await self.call("POST", path, what, data=form(**params))

    async def aclose(self) -> None:
        await self._client.aclose()
