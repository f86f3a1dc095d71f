"""HubSpot's HTTP side: private-app token or persisted OAuth, the search limit, errors.

Error envelope (every 4xx/5xx of the v3 APIs)::

    {"status": "error", "message": "...", "correlationId": "...", "category": "VALIDATION_ERROR"}

429 answers also carry ``policyName`` (``TEN_SECONDLY_ROLLING``, ``SECONDLY`` for search,
``DAILY``) and usually no ``Retry-After``: the wait is derived from the policy when missing.
"""

from __future__ import annotations

from typing import Any

import httpx

from bridge.adapter import (
    AdapterContext,
    CRMClient,
    Permanent,
    TokenBucket,
    json_body,
    json_object,
    raise_for_status,
)
from bridge.adapter.oauth import OAuthTokens, TokenPair, bearer_request

DEFAULT_BASE_URL = "https://api.hubapi.com"
TOKEN_PATH = "/oauth/v1/token"
SEARCH_SUFFIX = "/search"

# Seconds to wait on a 429 without Retry-After, by HubSpot's policyName.
POLICY_WAIT = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}

HINTS = {
    401: " (the access token is wrong, revoked or expired: check access_token, or the"
    " OAuth client_id/client_secret/refresh_token)",
    403: " (the private app or OAuth app lacks a scope: it needs crm.objects.contacts.read,"
    " crm.objects.contacts.write and crm.objects.owners.read)",
}


def envelope(response: httpx.Response) -> dict[str, Any] | None:
    body = json_object(response)
    return body if body is not None and "message" in body else None


def raise_for_hubspot(response: httpx.Response, what: str) -> None:
    """HubSpot's own envelope first (its message, its rate-limit policy), then the toolkit rules."""
    if response.is_success:
        return
    body = envelope(response)
    if body is None:
        raise_for_status(response, what)
        return
    category = body.get("category") or body.get("errorType")
    detail = f"{category}: {body['message']}" if category else str(body["message"])
    policy = str(body.get("policyName") or "")
    if response.status_code == 429:
        detail += f" (policy {policy or 'unknown'})"
    raise_for_status(
        response, what, detail=detail, hints=HINTS, retry_after=POLICY_WAIT.get(policy, 10.0)
    )


class HubSpotAPI:
    """One HubSpot account: authenticated JSON requests under both HubSpot limits."""

    def __init__(self, settings: Any, ctx: AdapterContext) -> None:
        self._client: CRMClient = ctx.http_client(settings, DEFAULT_BASE_URL)
        # CRM search has its own, lower limit (per token), on top of the general one.
        self._search_limiter = TokenBucket(settings.search_rate_limit)
        self._settings = settings
        self._static = settings.access_token.get_secret_value() if settings.access_token else None
        self.tokens: OAuthTokens | None = None
        if self._static is None:
            self.tokens = OAuthTokens.from_context(ctx, self._refresh, settings.refresh_token)
        self._clock = ctx.clock

    async def _refresh(self, refresh_token: str) -> TokenPair:
        """``POST /oauth/v1/token`` (form-encoded, grant_type=refresh_token)."""
        s = self._settings
        response = await self._client.request(
            "POST",
            TOKEN_PATH,
            data={
                "grant_type": "refresh_token",
                "client_id": s.client_id,
                "client_secret": s.client_secret.get_secret_value(),
                "refresh_token": refresh_token,
            },
        )
        if response.status_code in (400, 401):
            # BAD_REFRESH_TOKEN / BAD_CLIENT_ID...: the app must be reinstalled or reconfigured.
            body = envelope(response) or {}
            raise Permanent(
                f"HubSpot refused the OAuth refresh: HTTP {response.status_code}"
                f" {body.get('status', '')} {body.get('message', '')}".rstrip()
                + " (reinstall the app and set a new refresh_token)"
            )
        raise_for_hubspot(response, "POST /oauth/v1/token")
        data = json_body(response, "POST /oauth/v1/token")
        return TokenPair(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token") or refresh_token,
            expires_at=self._clock() + float(data.get("expires_in") or 1800),
        )

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        """Send one request; the JSON of a 2xx answer, or the delivery error it means."""
        if path.endswith(SEARCH_SUFFIX):
            await self._search_limiter.acquire()
        response = await bearer_request(
            self._client, self.tokens, self._static, method, path, **kwargs
        )
        raise_for_hubspot(response, what or f"{method} {path}")
        return json_body(response, what or f"{method} {path}")

    async def aclose(self) -> None:
        await self._client.aclose()
