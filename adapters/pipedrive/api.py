"""Pipedrive's HTTP side: API token or persisted OAuth (on the token's ``api_domain``), errors.

Error envelope (v1 and v2)::

    {"success": false, "error": "...", "error_info": "...", "data": null, "errorCode": 401}

Limits: a per-company daily token budget (each operation's ``x-token-cost`` is in the
vendor's OpenAPI files: search 20, add person / activity 5, add call log 10) and a burst
limit per 2-second window. A 429 carries ``Retry-After`` and/or ``x-ratelimit-reset``.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from bridge.adapter import (
    AdapterContext,
    CRMClient,
    Permanent,
    json_body,
    json_object,
    parse_retry_after,
    raise_for_status,
)
from bridge.adapter.oauth import OAuthTokens, TokenPair, bearer_request

DEFAULT_BASE_URL = "https://api.pipedrive.com"
OAUTH_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"
API_DOMAIN = "api_domain"

HINTS = {
    401: " (the API token is wrong or was regenerated: check api_token, or the OAuth app)",
    402: " (the Pipedrive plan does not include this feature)",
    403: " (the user behind the token lacks a permission; a user without account-settings"
    " access cannot log calls for other users: fix the `users` map or the permission set)",
}


def envelope(response: httpx.Response) -> dict[str, Any] | None:
    body = json_object(response)
    return body if body and body.get("success") is False and body.get("error") else None


def raise_for_pipedrive(response: httpx.Response, what: str) -> None:
    """Pipedrive's envelope first (its message, its rate-limit headers), then the toolkit."""
    if response.is_success:
        body = envelope(response)  # a 2xx with success=false is a refusal too
        if body is None:
            return
        raise Permanent(f"{what}: HTTP {response.status_code} {body['error']}")
    body = envelope(response)
    detail = body["error"] if body else None
    retry_after = None
    if response.status_code == 429:
        retry_after = parse_retry_after(response.headers.get("x-ratelimit-reset"))
        detail = f"{detail or 'Too Many Requests'} (rate limit or daily token budget)"
    raise_for_status(response, what, detail=detail, hints=HINTS, retry_after=retry_after)


class PipedriveAPI:
    """One Pipedrive company: authenticated JSON requests to API v1 and v2."""

    def __init__(self, settings: Any, ctx: AdapterContext) -> None:
        self._client: CRMClient = ctx.http_client(settings, DEFAULT_BASE_URL)
        self._settings = settings
        self._static = settings.api_token.get_secret_value() if settings.api_token else None
        self.tokens: OAuthTokens | None = None
        if self._static is None:
            self.tokens = OAuthTokens.from_context(ctx, self._refresh, settings.refresh_token)
        self._clock = ctx.clock

    async def _refresh(self, refresh_token: str) -> TokenPair:
        """``POST https://oauth.pipedrive.com/oauth/token`` with HTTP Basic client auth."""
        s = self._settings
        basic = f"{s.client_id}:{s.client_secret.get_secret_value()}".encode()
        response = await self._client.request(
            "POST",
            OAUTH_TOKEN_URL,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"Authorization": "Basic " + base64.b64encode(basic).decode("ascii")},
        )
        if response.status_code in (400, 401):
            raise Permanent(
                f"Pipedrive refused the OAuth refresh: HTTP {response.status_code}"
                " (reinstall the app and set a new refresh_token)"
            )
        raise_for_pipedrive(response, "POST oauth/token")
        data = json_body(response, "POST oauth/token")
        return TokenPair(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token") or refresh_token,
            expires_at=self._clock() + float(data.get("expires_in") or 3600),
            extra={API_DOMAIN: data.get(API_DOMAIN)} if data.get(API_DOMAIN) else {},
        )

    async def _url(self, path: str) -> str:
        """OAuth requests go to the company's own ``api_domain`` unless base_url is set."""
        if self.tokens is None or self._settings.base_url:
            return path
        domain = (await self.tokens.current()).extra.get(API_DOMAIN)
        return f"{str(domain).rstrip('/')}{path}" if domain else path

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        """Send one request; the ``data`` of a 2xx answer, or the delivery error it means."""
        label = what or f"{method} {path}"
        url = await self._url(path)
        if self.tokens is None:
            headers = {"x-api-token": self._static or ""}
            response = await self._client.request(method, url, headers=headers, **kwargs)
        else:
            response = await bearer_request(self._client, self.tokens, None, method, url, **kwargs)
        raise_for_pipedrive(response, label)
        body = json_body(response, label)
        return body if not isinstance(body, dict) else body.get("data", body)

    async def aclose(self) -> None:
        await self._client.aclose()
