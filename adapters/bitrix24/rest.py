"""Bitrix24 REST calls: the ``{"result": …}`` / ``{"error": …, "error_description": …}``
envelope, webhook or OAuth (``auth`` in the body) authentication, and the error classes.

Error codes are the system errors of the official docs (``_includes/system-errors.md`` in
github.com/bitrix24/b24restdocs) plus each method's own ``ERROR_CORE`` etc.
"""

from __future__ import annotations

from typing import Any

import httpx

from bridge.adapter import AdapterContext, Permanent, RetryLater
from bridge.adapter.http import body_excerpt, json_body, raise_for_status, retry_after_of
from bridge.adapter.oauth import OAuthTokens, TokenPair

from .settings import Bitrix24Settings

OPERATION_LIMIT_FALLBACK = 60.0  # seconds, when a 429 names no reset time


class Bitrix24Error(Permanent):
    """A method refused the request for a reason retrying cannot fix."""

    def __init__(self, reason: str, *, method: str, code: str, description: str) -> None:
        super().__init__(reason)
        self.method = method
        self.code = code
        self.description = description


class TelephonyRefused(Bitrix24Error):
    """``WRONG_AUTH_TYPE``: this method needs an application context (not a webhook)."""


class _ExpiredToken(Exception):
    pass


def _scopes(settings: Bitrix24Settings) -> str:
    scopes = ["crm", "telephony", "user"]
    if settings.task_kind == "task":
        scopes.append("task")
    return ", ".join(scopes)


class Bitrix24Rest:
    def __init__(self, settings: Bitrix24Settings, ctx: AdapterContext) -> None:
        self.settings = settings
        self.ctx = ctx
        if settings.webhook_url is not None:
            self._prefix = ""
            self.client = ctx.http_client(settings, settings.webhook_url.get_secret_value())
            self.tokens: OAuthTokens | None = None
        else:
            self._prefix = "/rest/"
            self.client = ctx.http_client(settings, settings.base_url or "")
            self.tokens = OAuthTokens.from_context(ctx, self._refresh, settings.refresh_token)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one method; the whole envelope (``result``, ``time``, ``total``, ``next``)."""
        body = dict(params or {})
        token = None
        if self.tokens is not None:
            token = await self.tokens.access_token()
            body["auth"] = token
        try:
            return await self._send(method, body)
        except _ExpiredToken:
            if self.tokens is None or token is None:
                raise Permanent(f"{method}: expired_token on an inbound webhook") from None
            body["auth"] = await self.tokens.refresh_after_401(token)
            try:
                return await self._send(method, body)
            except _ExpiredToken:
                raise Permanent(
                    f"{method}: Bitrix24 keeps refusing a freshly refreshed access token"
                    " (expired_token): check the portal's clock and re-install the app"
                ) from None

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.call(method, params)).get("result")

    async def _send(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.request("POST", self._prefix + method, json=body)
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error") is not None:
            raise self._error(response, method, data)
        raise_for_status(response, method)
        if data is None:
            json_body(response, method)  # an HTML page or garbage: retried, named "not JSON"
        if not isinstance(data, dict) or "result" not in data:
            raise RetryLater(
                f"{method}: HTTP {response.status_code} without a Bitrix24 result:"
                f" {body_excerpt(response, 120)}"
            )
        return data

    def _error(self, response: httpx.Response, method: str, data: dict[str, Any]) -> Exception:
        code = str(data.get("error") or "")
        desc = " ".join(str(data.get("error_description") or "").split())
        status = response.status_code
        said = f"{method}: {code or 'error'}" + (f" ({desc})" if desc else "")
        webhook = self.settings.webhook_url is not None
        if code == "expired_token":
            return _ExpiredToken()
        if code == "QUERY_LIMIT_EXCEEDED":
            return RetryLater(
                f"{said}: over the portal's request rate; lower rate_limit if this repeats",
                retry_after_of(response),
            )
        if code == "OPERATION_TIME_LIMIT":
            return RetryLater(
                f"{said}: method blocked until its time limit resets",
                self._operation_reset(response, data),
            )
        if code in ("NO_AUTH_FOUND", "INVALID_CREDENTIALS"):
            fix = (
                "the inbound webhook was deleted or its URL is wrong: create one in Developer"
                f" resources (scopes {_scopes(self.settings)}) and set webhook_url"
                if webhook
                else "the app's access token is refused: re-install the app and set a fresh"
                " refresh_token"
            )
            return Permanent(f"{said}: {fix}")
        if code == "insufficient_scope":
            who = "webhook" if webhook else "app"
            return Permanent(
                f"{said}: the {who} lacks a permission for {method}; give it the scopes"
                f" {_scopes(self.settings)}"
            )
        if code == "ACCESS_DENIED":
            return Permanent(
                f"{said}: REST API access is denied; the portal's plan must include the REST"
                " API and the webhook's/app's user must be active"
            )
        if code == "user_access_error":
            return Permanent(f"{said}: give the app's user access to the app in Bitrix24")
        if code == "WRONG_AUTH_TYPE":
            return TelephonyRefused(
                f"{said}: the portal allows {method} only to an application (OAuth app), not"
                ' to an inbound webhook; use an OAuth app or set call_log = "activity"',
                method=method,
                code=code,
                description=desc,
            )
        if code == "ERROR_METHOD_NOT_FOUND":
            return Permanent(
                f"{said}: the method is not available; give the scopes"
                f" {_scopes(self.settings)} (or the module is not installed)"
            )
        if code in ("INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER") or status >= 500:
            return RetryLater(
                f"{said} (HTTP {status})",
                retry_after_of(response),
            )
        if status in (408, 429):
            return RetryLater(f"{said} (HTTP {status})")
        hint = ""
        low = desc.lower()
        if "access denied" in low:
            hint = ": the webhook's/app's user lacks CRM permission for this"
        elif "user is not found" in low:
            hint = ": check the users map and default_user (Bitrix24 user ids, active users)"
        return Bitrix24Error(said + hint, method=method, code=code, description=desc)

    def _operation_reset(self, response: httpx.Response, data: dict[str, Any]) -> float:
        timing = data.get("time")
        if isinstance(timing, dict):
            reset = timing.get("operating_reset_at")
            if isinstance(reset, int | float):
                return max(1.0, float(reset) - self.ctx.clock())
        after = retry_after_of(response)
        return after if after is not None else OPERATION_LIMIT_FALLBACK

    async def _refresh(self, refresh_token: str) -> TokenPair:
        s = self.settings
        params = {
            "grant_type": "refresh_token",
            "client_id": s.client_id or "",
            "client_secret": s.client_secret.get_secret_value() if s.client_secret else "",
            "refresh_token": refresh_token,
        }
        response = await self.client.request("GET", s.oauth_url, params=params)
        what = "OAuth refresh"
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error"):
            code = str(data["error"])
            if response.status_code >= 500 or response.status_code in (408, 429):
                # The OAuth server is busy or down: a refresh token is not refused by that.
                raise RetryLater(
                    f"{what}: {code} (HTTP {response.status_code})", retry_after_of(response)
                )
            fixes = {
                "invalid_grant": "the refresh token expired (180 days unused) or was already"
                " used; re-authorize the app and set a new refresh_token",
                "invalid_client": "client_id / client_secret are wrong or the app is not"
                " installed on the portal",
                "PAYMENT_REQUIRED": "the app's trial or paid period ended",
            }
            raise Permanent(f"{what}: {code}: " + fixes.get(code, "check the OAuth app keys"))
        raise_for_status(response, what)
        if data is None:
            json_body(response, what)
        if not isinstance(data, dict) or not data.get("access_token"):
            raise RetryLater(f"{what}: answer without access_token")
        expires_in = data.get("expires_in")
        return TokenPair(
            access_token=str(data["access_token"]),
            refresh_token=str(data.get("refresh_token") or refresh_token),
            expires_at=(
                self.ctx.clock() + float(expires_in)
                if isinstance(expires_in, int | float)
                else None
            ),
            extra={k: data[k] for k in ("client_endpoint", "member_id") if k in data},
        )

    async def aclose(self) -> None:
        await self.client.aclose()
