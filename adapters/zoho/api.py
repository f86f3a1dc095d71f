"""Zoho CRM's HTTP side: the OAuth refresh at the org's data centre, ``Zoho-oauthtoken``
requests to the token's ``api_domain``, and Zoho's error answers mapped to retry or dead.

Token refresh (Zoho Accounts, ``POST {accounts_url}/oauth/v2/token``, form fields
``refresh_token``, ``client_id``, ``client_secret``, ``grant_type=refresh_token``) answers
``access_token``, ``expires_in`` (seconds), ``api_domain`` and ``token_type``; Zoho's refresh
token is long-lived and not rotated. A refused grant is HTTP 200 with ``{"error": "…"}``
(the official SDK checks for a missing ``access_token`` the same way).

Error envelope of the CRM API (top level, or per record inside ``data[]``)::

    {"code": "INVALID_DATA", "message": "invalid data", "status": "error",
     "details": {"api_name": "Call_Type", "json_path": "$.data[0].Call_Type"}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from adapters.zoho.settings import ZohoSettings, data_centre
from bridge.adapter import (
    AdapterContext,
    CRMClient,
    Permanent,
    RetryLater,
    json_body,
    json_object,
    raise_for_status,
)
from bridge.adapter.oauth import OAuthTokens, TokenPair

TOKEN_PATH = "/oauth/v2/token"
AUTH_PREFIX = "Zoho-oauthtoken "
API_DOMAIN = "api_domain"
TOKEN_SECONDS = 3600.0  # Zoho: an access token lives one hour
# Zoho Accounts allows 10 access tokens per refresh token in 10 minutes, then blocks the rest.
TOKEN_BLOCK_SECONDS = 600.0
# Waits without a Retry-After: a concurrency refusal clears as calls finish; exhausted daily
# credits free up as the rolling 24-hour window moves on.
CONCURRENCY_WAIT = 30.0
CREDITS_WAIT = 3600.0

SCOPES = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ"

# What the admin can do about each refusal (Zoho's codes; the fix in our words).
FIXES = {
    "INVALID_TOKEN": "Zoho refused the access token even after a refresh: the refresh token was"
    " revoked, or accounts_url names another data centre than the org's (accounts.zoho.eu for"
    " an EU org, .in, .com.au, .jp…); generate a new refresh token there",
    "AUTHENTICATION_FAILURE": "authentication failed: check client_id, client_secret and"
    " refresh_token",
    "OAUTH_SCOPE_MISMATCH": f"the refresh token lacks a scope: generate it again with {SCOPES}",
    "NO_PERMISSION": "the Zoho user behind the refresh token lacks a permission for this"
    " module: give their profile create/view rights or authorize as another user",
    "FEATURE_NOT_SUPPORTED": "the org's Zoho edition does not offer this",
    "INVALID_MODULE": "the module does not exist in this org (renamed or disabled?)",
    "MANDATORY_NOT_FOUND": "this org makes the field mandatory and the bridge does not fill it:"
    " make it optional in the layout or give it a default",
    "INVALID_DATA": "the org's field does not take this value (a renamed or restricted"
    " picklist value, a wrong type)",
    "DUPLICATE_DATA": "a unique field already holds this value",
    "REQUIRED_PARAM_MISSING": "a bug in the request: please report it",
    "INVALID_URL_PATTERN": "wrong API path or api_domain: check api_domain/base_url",
}
RATE_CODES = {"TOO_MANY_REQUESTS": CONCURRENCY_WAIT, "LIMIT_REACHED": CREDITS_WAIT}
TRANSIENT_CODES = {"INTERNAL_ERROR", "RECORD_LOCKED"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """One error entry of a Zoho answer."""

    code: str
    message: str
    details: dict[str, Any]

    @property
    def field(self) -> str | None:
        return self.details.get("api_name") or self.details.get("param") or None

    def describe(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        expected = self.details.get("expected_data_type")
        expected = f", expected {expected}" if expected else ""
        return f"{self.code}: {self.message}{where}{expected}"


def refusal(body: Any) -> Refusal | None:
    """The first error entry of a Zoho answer body (top level or in ``data[]``), if any."""
    if not isinstance(body, dict):
        return None
    entries = [body, *(body.get("data") or [] if isinstance(body.get("data"), list) else [])]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("status") == "error" and entry.get("code"):
            details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
            return Refusal(str(entry["code"]), str(entry.get("message") or ""), details)
    return None


def raise_for_zoho(response: httpx.Response, what: str) -> None:
    """Zoho's envelope first (its code, the field it names, a fix), then the toolkit rules."""
    found = refusal(json_object(response))
    if found is None:
        if not response.is_success:
            raise_for_status(response, what)
        return
    detail = found.describe()
    status = response.status_code
    if found.code in RATE_CODES or status == 429:
        wait = RATE_CODES.get(found.code, CONCURRENCY_WAIT)
        if status == 429:  # the toolkit honours Retry-After (HTTP date from Zoho's clock)
            raise_for_status(response, what, detail=detail, retry_after=wait)
        raise RetryLater(f"{what}: HTTP {status} {detail}", wait)
    if found.code in TRANSIENT_CODES or status >= 500:
        raise RetryLater(f"{what}: HTTP {status} {detail}")
    fix = FIXES.get(found.code)
    raise Permanent(f"{what}: HTTP {status} {detail}" + (f" ({fix})" if fix else ""))


class ZohoAPI:
    """One Zoho org: the token pair, the API domain, and JSON requests under the credit limit."""

    def __init__(self, settings: ZohoSettings, ctx: AdapterContext) -> None:
        self.settings = settings
        self._client: CRMClient = ctx.http_client(settings, settings.default_api_domain)
        self.tokens = OAuthTokens.from_context(ctx, self._refresh, settings.refresh_token)
        self._clock = ctx.clock

    async def _refresh(self, refresh_token: str) -> TokenPair:
        s = self.settings
        url = f"{s.accounts_url}{TOKEN_PATH}"
        response = await self._client.request(
            "POST",
            url,
            data={
                "refresh_token": refresh_token,
                "client_id": s.client_id,
                "client_secret": s.client_secret.get_secret_value(),
                "grant_type": "refresh_token",
            },
        )
        if response.is_success:
            body = json_body(response, f"POST {TOKEN_PATH}")  # garbage → retried later
        else:
            body = json_object(response) or {}
        problem = str(body.get("error") or body.get("code") or "") if isinstance(body, dict) else ""
        if problem == "Access Denied":
            raise RetryLater(
                "Zoho Accounts blocked the token refresh: too many refreshes (10 per 10 minutes"
                " per refresh token); another process may share this refresh token",
                TOKEN_BLOCK_SECONDS,
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise_for_status(response, f"POST {TOKEN_PATH}")
        if not isinstance(body, dict) or "access_token" not in body:
            raise Permanent(
                f"Zoho Accounts refused the refresh: HTTP {response.status_code}"
                f" {self._refresh_fix(problem)}"
            )
        domain = str(body.get(API_DOMAIN) or "") or s.default_api_domain
        return TokenPair(
            access_token=str(body["access_token"]),
            refresh_token=refresh_token,  # Zoho keeps the refresh token: not rotated
            expires_at=self._clock() + float(body.get("expires_in") or TOKEN_SECONDS),
            extra={API_DOMAIN: domain.rstrip("/")},
        )

    def _refresh_fix(self, problem: str) -> str:
        dc = data_centre(self.settings.accounts_url)
        where = (
            f"{self.settings.accounts_url} ({dc[0]} data centre)"
            if dc
            else (self.settings.accounts_url)
        )
        if problem == "invalid_client":
            return (
                f"invalid_client: client_id/client_secret are wrong, or the client was"
                f" registered in another data centre than {where}"
            )
        if problem == "invalid_code":
            return (
                f"invalid_code: the refresh token is revoked or expired, or was issued by"
                f" another data centre than {where}: set accounts_url to the org's data"
                " centre, or generate a new refresh token (self client) there"
            )
        return f"{problem or 'no access_token in the answer'} (check the OAuth settings)"

    async def api_domain(self) -> str:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        if self.settings.api_domain:
            return self.settings.api_domain
        pair = await self.tokens.current()
        return str(pair.extra.get(API_DOMAIN) or self.settings.default_api_domain)

    async def send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request with ``Zoho-oauthtoken``; a 401 refreshes once and resends."""
        headers = dict(kwargs.pop("headers", None) or {})
        token = await self.tokens.access_token()
        url = f"{await self.api_domain()}{path}"
        headers["Authorization"] = AUTH_PREFIX + token
        response = await self._client.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:
            found = refusal(json_object(response))
            if found is None or found.code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE"):
                headers["Authorization"] = AUTH_PREFIX + await self.tokens.refresh_after_401(token)
                url = f"{await self.api_domain()}{path}"
                response = await self._client.request(method, url, headers=headers, **kwargs)
        return response

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        """The JSON of a 2xx answer (None for 204), or the delivery error it means."""
        label = what or f"{method} {path}"
        response = await self.send(method, path, label, **kwargs)
        raise_for_zoho(response, label)
        if response.status_code == 204 or not response.content:
            return None
        return json_body(response, label)

    async def aclose(self) -> None:
        await self._client.aclose()
