"""Salesforce's HTTP side: the client credentials token, the instance URL, the error arrays.

Token: ``POST {login_url}/services/oauth2/token`` (form: ``grant_type=client_credentials``,
``client_id``, ``client_secret``). The answer carries ``access_token`` and ``instance_url``
(where every API call goes) but no ``expires_in`` and no refresh token: the token lives as
long as the org's session timeout, and a new one is simply requested after Salesforce
answers ``INVALID_SESSION_ID``.

Errors are a JSON array::

    [{"message": "Required fields are missing: [Company]", "errorCode": "REQUIRED_FIELD_MISSING",
      "fields": ["Company"]}]

``INVALID_SESSION_ID`` (401) → a new token and one resend; ``REQUEST_LIMIT_EXCEEDED`` (403,
the org's rolling 24-hour API request allowance) → retried after a long pause;
``UNABLE_TO_LOCK_ROW`` / ``SERVER_UNAVAILABLE`` → retried; field errors → dead, naming the
fields. Token refusals are OAuth's ``{"error": …, "error_description": …}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bridge.adapter import (
    AdapterContext,
    CRMClient,
    Permanent,
    RetryLater,
    json_body,
    json_object,
    raise_for_status,
)
from bridge.adapter.http import retry_after_of

TOKEN_PATH = "/services/oauth2/token"
#: REQUEST_LIMIT_EXCEEDED: the allowance is a rolling 24 h; an hour frees a 24th of it.
REQUEST_LIMIT_PAUSE = 3600.0
RETRY_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"})
HINTS = {
    401: " (Salesforce refused a fresh token too: check the connected app's client"
    " credentials flow and its Run As user)",
    403: " (the Run As user lacks a permission: it needs API Enabled, and create/read on"
    " Task, Lead and Contact with field access to the Call fields)",
    404: " (check api_version and that the object exists in this org)",
}
TOKEN_FIXES = {
    "invalid_client_id": "check client_id (the connected app's consumer key)",
    "invalid_client": "check client_id and client_secret",
    "unsupported_grant_type": "enable the client credentials flow on the connected app",
    "invalid_grant": "set a Run As user for the client credentials flow (connected app →"
    " Manage → Edit Policies)",
}


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    """Salesforce's error array (``[]`` when the body is something else)."""
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict):
        body = [body]
    return (
        [e for e in body if isinstance(e, dict) and "errorCode" in e]
        if isinstance(body, list)
        else []
    )


def describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        text = f"{e.get('errorCode')}: {e.get('message', '')}".rstrip()
        if e.get("fields"):
            text += f" (fields: {', '.join(map(str, e['fields']))})"
        parts.append(text)
    return "; ".join(parts)


def raise_for_salesforce(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    errors = errors_of(response)
    if not errors:
        raise_for_status(response, what)
        return
    codes = {str(e.get("errorCode")) for e in errors}
    detail = describe(errors)
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        raise RetryLater(
            f"{what}: HTTP {response.status_code} {detail} (the org's 24-hour API request"
            " allowance is spent; Setup → Company Information shows it)",
            retry_after_of(response, fallback=REQUEST_LIMIT_PAUSE),
        )
    if codes & RETRY_CODES:
        raise RetryLater(f"{what}: HTTP {response.status_code} {detail}")
    raise_for_status(response, what, detail=detail, hints=HINTS)


class SalesforceAPI:
    """One org: a token from the client credentials flow, JSON requests to its instance."""

    def __init__(self, settings: Any, ctx: AdapterContext) -> None:
        self._settings = settings
        self._client: CRMClient = ctx.http_client(settings, settings.login_url)
        self._redact = ctx.redactor.add
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self.instance_url: str | None = None
        self.identity: str | None = None

    @property
    def data(self) -> str:
        return f"/services/data/v{self._settings.api_version}"

    async def _fetch_token(self) -> None:
        s = self._settings
        response = await self._client.request(
            "POST",
            f"{s.login_url}{TOKEN_PATH}",
            data={
                "grant_type": "client_credentials",
                "client_id": s.client_id,
                "client_secret": s.client_secret.get_secret_value(),
            },
        )
        body = json_object(response) or {}
        if response.status_code in (400, 401) and "error" in body:
            code = str(body.get("error"))
            why = str(body.get("error_description") or "")
            fix = TOKEN_FIXES.get(code, "check the connected app")
            if "domain" in why:
                fix = "set login_url to the org's My Domain URL (https://ACME.my.salesforce.com)"
            raise Permanent(
                f"Salesforce refused the client credentials: HTTP {response.status_code}"
                f" {code}: {why} ({fix})"
            )
        raise_for_salesforce(response, f"POST {TOKEN_PATH}")
        data = json_body(response, f"POST {TOKEN_PATH}")
        token, instance = data.get("access_token"), data.get("instance_url")
        if not token or not instance:
            raise RetryLater(f"POST {TOKEN_PATH}: answer without access_token/instance_url")
        self._redact(str(token))
        self._token = str(token)
        self.instance_url = str(s.base_url or instance).rstrip("/")
        self.identity = data.get("id")

    async def _current(self, rejected: str | None = None) -> str:
        async with self._lock:  # one token request at a time, however many jobs wait
            if self._token is None or self._token == rejected:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = await self._current()
        url = path if path.startswith("http") else f"{self.instance_url}{path}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        response = await self._client.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:  # INVALID_SESSION_ID: a new token, one resend
            token = await self._current(rejected=token)
            headers["Authorization"] = f"Bearer {token}"
            response = await self._client.request(method, url, headers=headers, **kwargs)
        return response

    async def call(self, method: str, path: str, what: str = "", **kwargs: Any) -> Any:
        label = what or f"{method} {path}"
        response = await self.request(method, path, **kwargs)
        raise_for_salesforce(response, label)
        return json_body(response, label)

    async def query(self, soql: str, what: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, following ``nextRecordsUrl``."""
        page = await self.call("GET", f"{self.data}/query/", what, params={"q": soql})
        records = list(page.get("records") or [])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = await self.call("GET", str(page["nextRecordsUrl"]), what)
            records.extend(page.get("records") or [])
        return records

    async def aclose(self) -> None:
        await self._client.aclose()
