"""RetailCRM's HTTP side: API v5, the ``X-API-KEY`` header, form bodies, its error envelope.

POST bodies are ``application/x-www-form-urlencoded``; a structured parameter (``customer``,
``task``, ``calls``, ``integrationModule``…) is one form field whose value is a JSON string,
as RetailCRM's official clients send it. GET filters are bracketed query keys
(``filter[name]=…``).

Error envelope (any status)::

    {"success": false, "errorMsg": "Wrong \\"apiKey\\" value.", "errors": {"field": "why"}}

A 2xx answer with ``success: false`` is a refusal too. Above its request rate RetailCRM
answers 503 (the official PHP client's examples wait a second and retry); a 429 is alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import Answer, ApiKeyHeader, Auth, JsonAPI

API = "/api/v5"
RATE_LIMIT_WAIT = 1.0  # seconds, when a 503/429 names no Retry-After

# errorMsg → what the admin should fix, beyond the status's hint.
FIXES = {
    "Access denied.": "the API key lacks a permission: in RetailCRM, Settings → Integration →"
    " API access keys, allow the telephony, customers, tasks, users, settings and"
    " integration-modules methods (and the store)",
    "Account does not exist.": "check base_url (https://ACCOUNT.retailcrm.ru)",
    # A call event while the telephony integration module is missing or inactive.
    "Telephony not enabled": "the telephony integration module is not active in RetailCRM:"
    " run `pbx-bridge check` (with register_integration = true) or switch the module on under"
    " Settings → Integration",
}


def form(**params: Any) -> dict[str, str]:
    """A RetailCRM form body: structured values as JSON strings, ``None`` left out."""
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v)
        for k, v in params.items()
        if v is not None
    }


class RetailCRMAPI(JsonAPI):
    """One RetailCRM account reached with one API key."""

    VENDOR = "RetailCRM"
    AUTH = Auth(token=ApiKeyHeader("X-API-KEY"))
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (check api_key)",
        403: " (check api_key and the key's permissions: Settings → Integration → API access keys)",
        404: " (check base_url: https://ACCOUNT.retailcrm.ru)",
    }

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx, base_url=settings.base_url)

    async def url(self, path: str) -> str:
        # Unversioned methods (``/api/credentials``) are given whole; the rest are v5.
        return path if path.startswith("/api/") else f"{API}{path}"

    def refusal(self, answer: Answer, what: str) -> str | None:
        body = answer.object
        if body.get("success") is not False:
            return None
        message = str(body.get("errorMsg") or "refused")
        errors = body.get("errors")
        if isinstance(errors, dict) and errors:
            message += " (" + "; ".join(f"{k}: {v}" for k, v in errors.items()) + ")"
        elif isinstance(errors, list) and errors:
            message += " (" + "; ".join(map(str, errors)) + ")"
        fix = FIXES.get(str(body.get("errorMsg") or ""))
        if fix is None and "'site'" in message:
            fix = "the API key sees several stores: set site"
        return f"{message} — {fix}" if fix else message

    def retry_after(self, answer: Answer) -> float | None:
        return RATE_LIMIT_WAIT if answer.status in (429, 503) else None

    async def get(self, path: str, what: str = "", **params: Any) -> Any:
        return await self.call("GET", path, what, params=params)

    async def post(self, path: str, what: str = "", **params: Any) -> Any:
        return await self.call("POST", path, what, data=form(**params))
