"""Pipedrive's HTTP side: API token or OAuth (on the token's ``api_domain``), its envelope.

Error envelope (v1 and v2)::

    {"success": false, "error": "...", "error_info": "...", "data": null, "errorCode": 401}

Limits: a per-company daily token budget (each operation's ``x-token-cost`` is in the
vendor's OpenAPI files: search 20, add person / activity 5, add call log 10) and a burst
limit per 2-second window. A 429 carries ``Retry-After`` and/or ``x-ratelimit-reset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    Answer,
    ApiKeyHeader,
    Auth,
    JsonAPI,
    OAuth2,
    parse_retry_after,
)

API_DOMAIN = "api_domain"


class PipedriveAPI(JsonAPI):
    """One Pipedrive company: authenticated JSON requests to API v1 and v2."""

    VENDOR = "Pipedrive"
    DEFAULT_BASE_URL = "https://api.pipedrive.com"
    AUTH = Auth(
        token=ApiKeyHeader("x-api-token"),
        oauth=OAuth2(
            token_url="https://oauth.pipedrive.com/oauth/token",
            client_auth="basic",
            extra_fields=(API_DOMAIN,),
            api_domain_field=API_DOMAIN,  # an OAuth token works on the company's own domain
            default_expires_in=3600,
            reauthorize="reinstall the app and set a new refresh_token",
        ),
    )
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (the API token is wrong or was regenerated: check api_token, or the OAuth app)",
        402: " (the Pipedrive plan does not include this feature)",
        403: " (the user behind the token lacks a permission; a user without account-settings"
        " access cannot log calls for other users: fix the `users` map or the permission set)",
    }

    def refusal(self, answer: Answer, what: str) -> str | None:
        body = answer.object  # a 2xx with success=false is a refusal too
        refused = body.get("success") is False and body.get("error")
        if answer.status == 429:
            return f"{refused or 'Too Many Requests'} (rate limit or daily token budget)"
        return str(body["error"]) if refused else None

    def retry_after(self, answer: Answer) -> float | None:
        return parse_retry_after(answer.response.headers.get("x-ratelimit-reset"))

    def unwrap(self, answer: Answer) -> Any:
        body = answer.body
        return body.get("data", body) if isinstance(body, dict) else body
