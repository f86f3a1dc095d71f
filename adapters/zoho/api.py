"""Zoho CRM's HTTP side on the SDK's JSON-API base: OAuth at the org's data centre, requests
with ``Authorization: Zoho-oauthtoken …`` to the token answer's ``api_domain``, and Zoho's
refusals mapped to retry or dead with a fix.

Token refresh (Zoho Accounts, ``POST {accounts_url}/oauth/v2/token``, form fields
``refresh_token``, ``client_id``, ``client_secret``, ``grant_type=refresh_token``) answers
``access_token``, ``expires_in`` (seconds), ``api_domain`` and ``token_type``; the refresh token
is long-lived and not rotated. A refused grant is HTTP 200 with ``{"error": "invalid_code"}``
(the official SDK, too, tests for a missing ``access_token``); more than ten refreshes of one
refresh token in ten minutes is HTTP 400 ``{"error": "Access Denied", ...}``: a wait.

Error envelope of the CRM API (top level, or per record inside ``data[]``)::

    {"code": "INVALID_DATA", "message": "invalid data", "status": "error",
     "details": {"api_name": "Call_Type", "json_path": "$.data[0].Call_Type"}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.zoho.settings import ZohoSettings, data_centre
from bridge.adapter import (
    AdapterContext,
    Answer,
    Auth,
    BearerToken,
    DeliveryError,
    JsonAPI,
    OAuth2,
    Permanent,
    RetryLater,
)

API_DOMAIN = "api_domain"
TOKEN_SECONDS = 3600.0  # Zoho: an access token lives one hour
# Zoho Accounts allows 10 access tokens per refresh token in 10 minutes, then blocks the rest.
TOKEN_BLOCK_SECONDS = 600.0
# Waits without a Retry-After: a concurrency refusal clears as calls finish; exhausted daily
# credits free up as the rolling 24-hour window moves on.
CONCURRENCY_WAIT = 30.0
CREDITS_WAIT = 3600.0
SCOPES = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ"
ZOHO_TOKEN = BearerToken(prefix="Zoho-oauthtoken ")

# What the admin can do about each refusal (Zoho's codes; the fix in our words).
FIXES = {
    "INVALID_TOKEN": "Zoho refused the access token even after a refresh: the refresh token was"
    " revoked, or accounts_url names another data centre than the org's: check accounts_url"
    " (accounts.zoho.eu for an EU org, .in, .com.au, .jp…) and re-authorize there",
    "AUTHENTICATION_FAILURE": "authentication failed: check client_id, client_secret and"
    " refresh_token",
    "OAUTH_SCOPE_MISMATCH": f"the refresh token lacks a scope: generate it again with {SCOPES}",
    "NO_PERMISSION": "the Zoho user behind the refresh token lacks a permission for this"
    " module: give their profile create/view rights or authorize as another user",
    "FEATURE_NOT_SUPPORTED": "the org's Zoho edition does not offer this",
    "INVALID_MODULE": "the module does not exist in this org (renamed or disabled?)",
    "MANDATORY_NOT_FOUND": "this org makes the field mandatory and the bridge does not fill it:"
    " make it optional in the layout or give it a default",
    "INVALID_DATA": "the org's field does not take this value (a user id that is not an"
    " active Zoho user, a renamed or restricted picklist value, a wrong type)",
    "DUPLICATE_DATA": "a unique field already holds this value",
    "INVALID_URL_PATTERN": "wrong API path or api_domain: check api_domain/base_url",
}
RATE_CODES = {"TOO_MANY_REQUESTS": CONCURRENCY_WAIT, "LIMIT_REACHED": CREDITS_WAIT}
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "RECORD_LOCKED"})
TOKEN_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE"})


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
        return f"{self.code}: {self.message}{where}" + (
            f", expected {expected}" if expected else ""
        )


def refusal_of(body: Any) -> Refusal | None:
    """The first error entry of a Zoho answer body (top level or in ``data[]``), if any."""
    if not isinstance(body, dict):
        return None
    records = body.get("data") if isinstance(body.get("data"), list) else []
    for entry in [body, *records]:
        if isinstance(entry, dict) and entry.get("status") == "error" and entry.get("code"):
            details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
            return Refusal(str(entry["code"]), str(entry.get("message") or ""), details)
    return None


def _oauth(settings: ZohoSettings) -> OAuth2:
    dc = data_centre(settings.accounts_url)
    where = f"{settings.accounts_url} ({dc[0]} data centre)" if dc else settings.accounts_url
    return OAuth2(
        token_url=settings.token_url,
        client_auth="body",
        encoding="form",
        send_as=ZOHO_TOKEN,
        extra_fields=(API_DOMAIN,),
        api_domain_field=API_DOMAIN,
        default_expires_in=TOKEN_SECONDS,
        fixes={
            "invalid_code": "re-authorize: the refresh token is revoked or expired, or was"
            f" issued by another data centre than {where}: set accounts_url to the org's data"
            " centre, or generate a new refresh token (self client) there",
            "invalid_client": "check client_id/client_secret: they are wrong, or the client was"
            f" registered in another data centre than {where}",
            "Access Denied": "Zoho allows 10 token refreshes per 10 minutes per refresh token;"
            " another program may be using the same refresh token",
        },
        waits={"Access Denied": TOKEN_BLOCK_SECONDS},  # 10 refreshes per 10 minutes
        reauthorize="re-authorize: generate a new refresh token in the Zoho API console (self"
        " client) and set refresh_token",
    )


class ZohoAPI(JsonAPI):
    """One Zoho org: ``Zoho-oauthtoken`` requests to its data centre's API domain."""

    VENDOR = "Zoho CRM"
    DEFAULT_BASE_URL = "https://www.zohoapis.com"

    def __init__(self, settings: ZohoSettings, ctx: AdapterContext) -> None:
        # The token endpoint (and its fixes) depend on the configured data centre.
        self.AUTH = Auth(token=ZOHO_TOKEN, oauth=_oauth(settings))
        super().__init__(settings, ctx, base_url=settings.default_api_domain)
        self.zoho = settings

    async def url(self, path: str) -> str:
        if self.zoho.api_domain and not self.zoho.base_url:
            return f"{self.zoho.api_domain}{path}"  # pinned by the admin
        return await super().url(path)

    async def api_domain(self) -> str:
        """Where the API calls go (for ``check``): the token's domain, pinned or configured."""
        url = await self.url("/")
        if url.startswith("http"):
            return url.rstrip("/")
        return (self.zoho.base_url or self.zoho.default_api_domain).rstrip("/")

    # -- the vendor's hooks -------------------------------------------------------------------

    def token_refused(self, answer: Answer) -> bool:
        if answer.status != 401:
            return False
        found = refusal_of(answer.body)
        return found is None or found.code in TOKEN_CODES  # a missing scope is not cured so

    def refusal(self, answer: Answer, what: str) -> str | DeliveryError | None:
        found = refusal_of(answer.body)
        if found is None:
            return None
        detail = found.describe()
        head = f"{what}: HTTP {answer.status} {detail}"
        if answer.status == 429:
            return detail  # retried by the common rules, Retry-After honoured
        if found.code in RATE_CODES:
            return RetryLater(head, RATE_CODES[found.code])
        if found.code in TRANSIENT_CODES or answer.status >= 500:
            return RetryLater(head)
        fix = FIXES.get(found.code)
        return Permanent(head + (f" ({fix})" if fix else ""))

    def retry_after(self, answer: Answer) -> float | None:
        found = refusal_of(answer.body)
        return RATE_CODES.get(found.code if found else "", CONCURRENCY_WAIT)
