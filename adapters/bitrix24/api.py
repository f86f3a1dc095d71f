"""Bitrix24 REST calls: the ``{"result": …}`` / ``{"error": …, "error_description": …}``
envelope, webhook or OAuth (``auth`` in the body) authentication, and the error classes.

Error codes are the system errors of the official docs (``_includes/system-errors.md`` in
github.com/bitrix24/b24restdocs) plus each method's own ``ERROR_CORE`` etc.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from bridge.adapter import (
    AdapterContext,
    Answer,
    Auth,
    BodyField,
    DeliveryError,
    JsonAPI,
    NoToken,
    OAuth2,
    Permanent,
    RetryLater,
    retry_after_of,
)
from bridge.adapter.http import RETRYABLE_STATUS, body_excerpt

from .settings import OAUTH_TOKEN_URL, Bitrix24Settings

OPERATION_LIMIT_FALLBACK = 60.0  # seconds, when a 429 names no reset time
REDIRECTS = (301, 302, 303, 307, 308)
MOVED_KEY = "portal_moved"  # AdapterState: {"from": configured origin, "to": new origin}
ALERT = "ALERT: "  # the reason of a job that only the portal's admin or Bitrix24 can unblock


class Bitrix24Error(Permanent):
    """A method refused the request for a reason retrying cannot fix."""

    def __init__(self, reason: str, *, method: str, code: str, description: str) -> None:
        super().__init__(reason)
        self.method = method
        self.code = code
        self.description = description


class TelephonyRefused(Bitrix24Error):
    """``WRONG_AUTH_TYPE``: this method needs an application context (not a webhook)."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _scopes(settings: Bitrix24Settings) -> str:
    scopes = ["crm", "telephony", "user"]
    if settings.task_kind == "task":
        scopes.append("task")
    return ", ".join(scopes)


class Bitrix24API(JsonAPI):
    """One portal: an inbound webhook (the secret is in its URL) or an OAuth app."""

    VENDOR = "Bitrix24"
    AUTH = Auth(
        token=NoToken(),  # the webhook URL is the credential
        oauth=OAuth2(
            token_url=OAUTH_TOKEN_URL,
            token_url_key="oauth_url",
            method="GET",
            encoding="query",
            send_as=BodyField("auth"),
            extra_fields=("client_endpoint", "member_id"),
            fixes={
                "invalid_grant": "the refresh token expired (180 days unused) or was already"
                " used; re-authorize the app and set a new refresh_token",
                "invalid_client": "client_id / client_secret are wrong or the app is not"
                " installed on the portal",
                "PAYMENT_REQUIRED": "the app's trial or paid period ended",
            },
            reauthorize="re-authorize the app and set a new refresh_token",
        ),
    )

    def __init__(self, settings: Bitrix24Settings, ctx: AdapterContext) -> None:
        webhook = settings.webhook_url
        base = webhook.get_secret_value() if webhook is not None else settings.base_url or ""
        super().__init__(settings, ctx, base_url=base)
        self.settings: Bitrix24Settings = settings
        self._configured = _origin(base)
        self._moved: str | None = None  # the portal's new origin, after a redirect
        self._moved_read = False

    async def url(self, path: str) -> str:
        """``path`` (a method name) on the portal's REST address: the webhook URL, else the
        OAuth token's ``client_endpoint`` ("all method calls start with it"), else
        ``base_url/rest/``; on the portal's new origin once it redirected there."""
        if self.settings.webhook_url is not None:
            base = self.settings.webhook_url.get_secret_value()
        else:
            endpoint = await self.auth.extra("client_endpoint") if self.auth else None
            base = str(endpoint) if endpoint else f"{self.settings.base_url}/rest/"
        base = base if base.endswith("/") else base + "/"
        moved = await self._moved_origin()
        if moved and _origin(base) == self._configured:
            base = moved + urlsplit(base).path
        return base + path

    async def _moved_origin(self) -> str | None:
        if not self._moved_read:
            raw = await self.ctx.state.get(MOVED_KEY)
            stored = json.loads(raw) if raw else {}
            # Kept only while the settings name the old address: a new one replaces it.
            if stored.get("from") == self._configured:
                self._moved = stored.get("to")
            self._moved_read = True
        return self._moved

    async def _follow(self, answer: Answer, method: str) -> None:
        """The portal changed its address and redirects (Bitrix24's docs: "disable redirects,
        receive the 302, extract the new address and repeat the POST there")."""
        location = answer.response.headers.get("location") or ""
        new = _origin(location) if "://" in location else ""
        scheme = urlsplit(self._configured).scheme
        if not new or urlsplit(new).scheme not in ("https", scheme):
            raise Permanent(
                f"{method}: HTTP {answer.status} to {location or 'nowhere'}: the portal moved;"
                " set its new address in webhook_url / base_url"
            )
        self._moved, self._moved_read = new, True
        await self.ctx.state.put(MOVED_KEY, json.dumps({"from": self._configured, "to": new}))
        self.ctx.log.warning(
            "Bitrix24 portal changed its address: requests go to the new one; update"
            " webhook_url / base_url in the settings",
            old=self._configured,
            new=new,
        )

    async def envelope(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one method; the whole envelope (``result``, ``time``, ``total``, ``next``)."""
        body = dict(params or {})
        answer = await self.request("POST", method, what=method, json=body, allow=REDIRECTS)
        if answer.status in REDIRECTS:
            await self._follow(answer, method)
            answer = await self.request("POST", method, what=method, json=body, allow=REDIRECTS)
            if answer.status in REDIRECTS:
                raise Permanent(
                    f"{method}: the portal redirects again (HTTP {answer.status}): set its"
                    " current address in webhook_url / base_url"
                )
        return answer.object

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.envelope(method, params)).get("result")

    def token_refused(self, answer: Answer) -> bool:
        return answer.object.get("error") == "expired_token"

    def refusal(self, answer: Answer, what: str) -> str | DeliveryError | None:
        body = answer.object
        if body.get("error") is not None:
            return self._error(answer, what, body)
        if answer.ok and answer.parsed and "result" not in body:
            return RetryLater(
                f"{what}: HTTP {answer.status} without a Bitrix24 result:"
                f" {body_excerpt(answer.response, 120)}"
            )
        return None

    def _error(self, answer: Answer, method: str, data: dict[str, Any]) -> str | DeliveryError:
        response = answer.response
        code = str(data.get("error") or "")
        desc = " ".join(str(data.get("error_description") or "").split())
        status = response.status_code
        words = f"{code or 'error'}" + (f" ({desc})" if desc else "")
        said = f"{method}: {words}"
        webhook = self.settings.webhook_url is not None
        if code == "expired_token":
            # Only reached after the one refresh and resend (or with a webhook).
            if webhook:
                return Permanent(f"{method}: expired_token on an inbound webhook")
            return Permanent(
                f"{method}: Bitrix24 keeps refusing a freshly refreshed access token"
                " (expired_token): check the portal's clock and re-install the app"
            )
        if code == "QUERY_LIMIT_EXCEEDED":
            return RetryLater(
                f"{said}: over the portal's request rate; lower rate_limit if this repeats",
                retry_after_of(response),
            )
        if code == "OPERATION_TIME_LIMIT":
            return RetryLater(
                f"{said}: method blocked until its time limit resets",
                self._operation_reset(answer, data),
            )
        if code == "OVERLOAD_LIMIT":
            return Permanent(
                f"{ALERT}{said}: Bitrix24 blocked this portal's REST API for overload, by hand;"
                " only Bitrix24 support lifts it: ask them, then requeue the dead jobs"
            )
        if code == "PORTAL_DELETED":
            return Permanent(
                f"{ALERT}{said}: the portal was deleted or its public part is closed: check"
                f" {self.settings.portal()} (on-premise: turn off Settings → Module settings →"
                ' Main module → "Temporary closure of the public part of the site"), then'
                " requeue the dead jobs"
            )
        if code == "NO_AUTH_FOUND":
            fix = (
                "the inbound webhook was deleted or its URL is wrong: create one in Developer"
                f" resources (scopes {_scopes(self.settings)}) and set webhook_url"
                if webhook
                else "the app's access token is refused: re-install the app and set a fresh"
                " refresh_token"
            )
            return Permanent(f"{said}: {fix}")
        if code == "INVALID_CREDENTIALS":
            # System errors: "the user associated with the access token or webhook lacks the
            # necessary permissions" (the credentials themselves are fine).
            who = "inbound webhook" if webhook else "app"
            return Permanent(
                f"{said}: the user the {who} acts as lacks the rights for {method}: a portal"
                " admin must give that user those rights (CRM and telephony access"
                f" permissions), or create the {who} as a user who has them"
            )
        if code == "insufficient_scope":
            who = "webhook" if webhook else "app"
            return Bitrix24Error(
                f"{said}: the {who} lacks a permission for {method}; give it the scopes"
                f" {_scopes(self.settings)}",
                method=method,
                code=code,
                description=desc,
            )
        if code == "ACCESS_DENIED":
            if method == "voximplant.statistic.get":
                return Permanent(
                    f"{said}: the user the bridge acts as may not read call statistics: give"
                    ' that user the telephony permission "Call statistics — View" (Telephony →'
                    " Permissions)"
                )
            return Permanent(
                f"{said}: the portal refuses the REST API: its plan must include it (REST is"
                " only on commercial plans: the portal admin must renew or upgrade the plan),"
                " and the webhook's/app's user must be active"
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
            return Bitrix24Error(
                f"{said}: the method is not available; give the scopes"
                f" {_scopes(self.settings)} (or the module is not installed)",
                method=method,
                code=code,
                description=desc,
            )
        if status in RETRYABLE_STATUS or status >= 500:
            return words  # the common rules: retried, after its Retry-After when it names one
        if code in ("INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"):
            return RetryLater(f"{said} (HTTP {status})", retry_after_of(response))
        hint = ""
        low = desc.lower()
        if "access denied" in low:
            hint = ": the webhook's/app's user lacks CRM permission for this"
        elif "user is not found" in low:
            hint = ": check the users map and default_user (Bitrix24 user ids, active users)"
        return Bitrix24Error(said + hint, method=method, code=code, description=desc)

    def _operation_reset(self, answer: Answer, data: dict[str, Any]) -> float:
        timing = data.get("time")
        if isinstance(timing, dict):
            reset = timing.get("operating_reset_at")
            if isinstance(reset, int | float):
                return max(1.0, float(reset) - self.ctx.clock())
        after = retry_after_of(answer.response)
        return after if after is not None else OPERATION_LIMIT_FALLBACK
