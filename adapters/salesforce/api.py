"""Salesforce's HTTP side: the client credentials token, the instance URL, the error arrays.

Token (declared, the SDK requests it): ``POST {login_url}/services/oauth2/token`` with the form
``grant_type=client_credentials``, ``client_id``, ``client_secret``. The answer carries
``access_token`` and ``instance_url`` (where every API call goes) but no ``expires_in`` and no
refresh token: the token lives as long as the org's session timeout, and a new one is
requested after Salesforce answers 401 ``INVALID_SESSION_ID`` (then the request is resent
once).

Errors are a JSON array::

    [{"message": "Required fields are missing: [Company]", "errorCode": "REQUIRED_FIELD_MISSING",
      "fields": ["Company"]}]

``REQUEST_LIMIT_EXCEEDED`` (403, the org's rolling 24-hour API request allowance) → retried
after a long pause; ``UNABLE_TO_LOCK_ROW`` / ``SERVER_UNAVAILABLE`` → retried; field errors →
dead, naming the fields. Token refusals are OAuth's ``{"error", "error_description"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    Answer,
    Auth,
    DeliveryError,
    JsonAPI,
    OAuth2,
    RetryLater,
    retry_after_of,
)

TOKEN_PATH = "/services/oauth2/token"
INSTANCE_URL = "instance_url"
#: REQUEST_LIMIT_EXCEEDED: the allowance is a rolling 24 h; an hour frees a 24th of it.
REQUEST_LIMIT_PAUSE = 3600.0
RETRY_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"})


def describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        text = f"{e.get('errorCode')}: {e.get('message', '')}".rstrip()
        if e.get("fields"):
            text += f" (fields: {', '.join(map(str, e['fields']))})"
        parts.append(text)
    return "; ".join(parts)


class SalesforceAPI(JsonAPI):
    """One org: a token from the client credentials flow, JSON requests to its instance."""

    VENDOR = "Salesforce"
    HINTS: ClassVar[Mapping[int, str]] = {
        401: " (Salesforce refused a fresh token too: check the connected app's client"
        " credentials flow and its Run As user)",
        403: " (the Run As user lacks a permission: it needs API Enabled, and create/read on"
        " Task, Lead and Contact with field access to the Call fields)",
        404: " (check api_version and that the object exists in this org)",
    }
    AUTH = Auth(
        oauth=OAuth2(
            token_url=TOKEN_PATH,  # on login_url
            grant="client_credentials",
            client_auth="body",
            extra_fields=(INSTANCE_URL,),
            api_domain_field=INSTANCE_URL,  # every API request goes to the org's instance
            fixes={
                "invalid_client_id": "check client_id (the connected app's consumer key)",
                "invalid_client": "check client_id and client_secret",
                "unsupported_grant_type": "enable the client credentials flow on the connected"
                " app, and set login_url to the org's My Domain URL"
                " (https://ACME.my.salesforce.com)",
                "invalid_grant": "set a Run As user for the client credentials flow (connected"
                " app → Manage → Edit Policies)",
            },
            reauthorize="check the connected app's client credentials flow",
        )
    )

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx, base_url=settings.login_url)

    @property
    def data(self) -> str:
        return f"/services/data/v{self.settings.api_version}"

    def refusal(self, answer: Answer, what: str) -> str | DeliveryError | None:
        body = answer.body if isinstance(answer.body, list) else [answer.object]
        errors = [e for e in body if isinstance(e, dict) and "errorCode" in e]
        if not errors:
            return None
        codes = {str(e["errorCode"]) for e in errors}
        detail = describe(errors)
        if "REQUEST_LIMIT_EXCEEDED" in codes:
            return RetryLater(
                f"{what}: HTTP {answer.status} {detail} (the org's 24-hour API request"
                " allowance is spent; Setup → Company Information shows it)",
                retry_after_of(answer.response, fallback=REQUEST_LIMIT_PAUSE),
            )
        if codes & RETRY_CODES:
            return RetryLater(f"{what}: HTTP {answer.status} {detail}")
        return detail

    async def instance(self) -> str | None:
        return await self.auth.base_url() if self.auth is not None else None

    async def query(self, soql: str, what: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, following ``nextRecordsUrl``."""
        page = await self.call("GET", f"{self.data}/query/", what, params={"q": soql})
        records = list(page.get("records") or [])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = await self.call("GET", str(page["nextRecordsUrl"]), what)
            records.extend(page.get("records") or [])
        return records
